"""The DiT, the rectified-flow objective and the samplers."""

import warnings

import pytest
import torch

from worldsim.diffusion.flow import FlowConfig, context_masks, flow_loss, training_inputs
from worldsim.diffusion.sampling import SamplerConfig, guided, sample, time_grid
from worldsim.models.dit import DiT, DiTConfig, KVCache, Rope, apply_rope, rope_tables, warp, warp_frames
from worldsim.models.text import TextConfig, TextEncoder, Tokenizer
from worldsim.models.world import WorldModel


def model(patch=(1, 2, 2), seed=0, zero_init=False, **kw):
    torch.manual_seed(seed)
    cfg = DiTConfig(dim=32, depth=2, heads=2, patch=list(patch), latent_channels=4, text_dim=16, **kw)
    dit = DiT(cfg).eval()
    if not zero_init:  # adaLN-Zero starts every block as the identity: wake them up
        for p in dit.parameters():
            if p.abs().sum() == 0:
                torch.nn.init.normal_(p, std=0.05)
    return dit


def text(b=1, s=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, s, 16, generator=g), torch.ones(b, s, dtype=torch.bool), torch.randn(b, 16, generator=g)


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 2, 2), (2, 2, 2), (1, 4, 2)])
def test_shapes_for_each_patch(patch):
    dit = model(patch)
    x = torch.randn(2, 4, 4, 8, 8)
    with torch.no_grad():
        v = dit(x, torch.rand(2, 4), torch.randn(2, 4, 2), text(2), causal=False)
    assert v.shape == x.shape
    tokens = dit.patchify(x)
    assert tokens.shape == (2, 4 // patch[0], (8 // patch[1]) * (8 // patch[2]), patch[0] * patch[1] * patch[2] * 4)
    assert torch.equal(dit.unpatchify(tokens, 8, 8), x)


def test_runs_at_sizes_and_lengths_it_was_not_built_for():
    dit = model()
    for t, h, w in [(1, 4, 4), (9, 6, 10), (3, 16, 8)]:
        with torch.no_grad():
            assert dit(torch.randn(1, t, 4, h, w), torch.rand(1, t), torch.zeros(1, t, 2), text(), causal=True).shape == (1, t, 4, h, w)


def test_rotary_positions_are_the_textbook_rotation_and_relative():
    """apply_rope (a roll against a signed sin, tables cast once a dtype) is x cos +
    rotate_half(x) sin exactly, and a query-key product depends only on the offset
    between their positions, in each of time, row and column."""
    g = torch.Generator().manual_seed(0)
    pos = torch.tensor([[0, 0, 0], [3, 1, 2], [7, 4, 1], [2, 5, 6]])
    cos, sin = rope_tables(pos, 24, 10000.0)
    rope = Rope(cos, sin)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 3, 4, 24, generator=g).to(dtype)
        x1, x2 = x.chunk(2, dim=-1)
        textbook = x * cos.to(dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(dtype)
        assert torch.equal(apply_rope(x, rope), textbook)
        assert torch.equal(apply_rope(x[:, :, -2:], rope, 2), textbook[:, :, -2:])  # the last tokens' tables
        assert rope.tables(dtype)[0] is rope.tables(dtype)[0]  # cast once a dtype
    q, k = torch.randn(24, generator=g), torch.randn(24, generator=g)

    def score(pq, pk):
        (cq, sq), (ck, sk) = (rope_tables(torch.tensor([p]), 24, 10000.0) for p in (pq, pk))
        rq = apply_rope(q[None, None, None], Rope(cq, sq))[0, 0, 0]
        rk = apply_rope(k[None, None, None], Rope(ck, sk))[0, 0, 0]
        return float(rq @ rk)

    for shift in ([5, 0, 0], [0, 3, 0], [0, 0, 4], [2, 1, 3]):
        a, b = [1, 2, 3], [4, 0, 2]
        moved = [[p + s for p, s in zip(a, shift)], [p + s for p, s in zip(b, shift)]]
        assert score(a, b) == pytest.approx(score(*moved), abs=1e-4)
    assert abs(score([1, 2, 3], [4, 0, 2]) - score([1, 2, 3], [5, 0, 2])) > 1e-3  # and it does depend on the offset


def test_block_causal_attention_blocks_the_future():
    dit = model()
    x, t, a = torch.randn(1, 5, 4, 8, 8), torch.rand(1, 5), torch.randn(1, 5, 2)
    with torch.no_grad():
        v = dit(x, t, a, text(), causal=True)
        for f in range(4):
            x2, t2, a2 = x.clone(), t.clone(), a.clone()
            x2[:, f + 1 :] += 1.0
            t2[:, f + 1 :] = 0.5
            a2[:, f + 1 :] = -a2[:, f + 1 :]
            v2 = dit(x2, t2, a2, text(), causal=True)
            torch.testing.assert_close(v2[:, : f + 1], v[:, : f + 1])
            assert not torch.allclose(v2[:, f + 1 :], v[:, f + 1 :])
        # bidirectional attention does look ahead
        vb = dit(x, t, a, text(), causal=False)
        x2 = x.clone()
        x2[:, 4] += 1.0
        assert not torch.allclose(dit(x2, t, a, text(), causal=False)[:, 0], vb[:, 0])


@pytest.mark.parametrize("pixel_head", [0, 8])
def test_a_frame_not_anchored_ignores_its_anchor_rows_and_gets_the_bias(pixel_head):
    dit = model(anchor=True, anchor_frames=2, pixel_head=pixel_head)
    x, t, a = torch.randn(2, 2, 4, 8, 8), torch.rand(2, 2), torch.randn(2, 2, 2)
    anchor = torch.randn(2, 2, 8, 8, 8)
    anchored = torch.tensor([[False, True], [False, True]])
    garbage = anchor.clone()
    garbage[:, 0] = torch.randn(2, 8, 8, 8)
    zeros = anchor.clone()
    zeros[:, 0] = 0
    with torch.no_grad():
        outs = [dit(x, t, a, text(2), causal=True, anchor=y, anchored=anchored) for y in (garbage, zeros)]
        # zeros through the embedding give its bias exactly, in bf16 as in fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            e = dit.anchor_embed(torch.zeros(3, dit.anchor_embed.in_features))
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(e, dit.anchor_embed.bias.to(torch.bfloat16).expand_as(e))


def test_warp_moves_content_along_the_flow_and_zero_flow_is_the_identity():
    x = torch.rand(2, 3, 4, 8, 8)
    torch.testing.assert_close(warp(x, torch.zeros(2, 3, 2, 8, 8)), x)
    dot = torch.zeros(1, 1, 1, 8, 8)
    dot[..., 2, 3] = 1.0
    flow = torch.zeros(1, 1, 2, 8, 8)
    flow[:, :, 0], flow[:, :, 1] = 2.0, 1.0  # two columns right, one row down
    moved = warp(dot, flow)[0, 0, 0]
    assert moved[3, 5] == pytest.approx(1.0) and moved.sum() == pytest.approx(1.0)
    half = warp(dot, flow * 0.5)[0, 0, 0]  # between pixels: bilinear, nothing lost
    assert half.sum() == pytest.approx(1.0) and half.max() < 1.0


def test_compiled_inference_warps_inside_one_graph_with_the_eager_kernel():
    """On a CPU, a compiled graph without autograd (the simulator's steps) takes the warp's
    resampling as one opaque operator, PyTorch's own kernel: no graph break (fullgraph),
    the same result as eager; with autograd it still runs (outside the graph) and its
    gradients are eager's."""
    g = torch.Generator().manual_seed(0)
    x, flow = torch.rand(2, 3, 4, 8, 8, generator=g), 1.5 * torch.randn(2, 3, 2, 8, 8, generator=g)
    step = lambda x, flow: warp_frames(x, flow) * 2.0  # noqa: E731
    try:
        with torch.no_grad():
            compiled = torch.compile(step, fullgraph=True, dynamic=False)(x, flow)
    except torch._dynamo.exc.Unsupported:
        raise  # a graph break: what the opaque operator is there to prevent
    except Exception as e:  # no working compiler on this machine
        pytest.skip(f"torch.compile does not run here: {type(e).__name__}")
    torch.testing.assert_close(compiled, 2.0 * warp(x, flow), rtol=1e-5, atol=1e-5)
    flow_g = flow.clone().requires_grad_(True)
    loss = torch.compile(step, dynamic=False)(x, flow_g).square().sum()
    (grad,) = torch.autograd.grad(loss, flow_g)
    flow_e = flow.clone().requires_grad_(True)
    (want,) = torch.autograd.grad((2.0 * warp(x, flow_e)).square().sum(), flow_e)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-5)


def test_a_warp_model_starts_as_a_copy_and_moves_its_anchor_by_its_flow():
    dit = model(anchor=True, anchor_frames=2, warp=True, zero_init=True)
    assert dit.final.out_features == 2 * 2 * (4 + 2)  # a patch's pixels, each with its residual and (dx, dy)
    x, t, a = torch.randn(1, 2, 4, 8, 8), torch.rand(1, 2), torch.randn(1, 2, 2)
    anchor, base = torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 8, 8)
    anchored = torch.tensor([[False, True]])
    with torch.no_grad():
        out = dit(x, t, a, text(), causal=True, anchor=anchor, anchored=anchored, anchor_base=base)
        assert out.abs().max() < 1e-5  # zero output, zero flow: a copy of the anchor
        bias = dit.final.bias.view(-1, 6)  # (pixels of a patch, residual channels + flow)
        bias[:, 4] = 0.5  # every pixel's content comes one column (half a patch) from the left
        out = dit(x, t, a, text(), causal=True, anchor=anchor, anchored=anchored, anchor_base=base)
        default = dit(x, t, a, text(), causal=True, anchor=anchor, anchored=anchored)
    torch.testing.assert_close(out[:, 1, :, :, 1:], base[:, 1, :, :, :-1] - base[:, 1, :, :, 1:])  # the base moved, as a difference
    assert out[:, 0].abs().max() == 0  # a frame not anchored: its residual (zero), no flow
    torch.testing.assert_close(default[:, 1, :, :, 1:], anchor[:, 1, :4, :, :-1] - anchor[:, 1, :4, :, 1:])  # base: the newest anchor frame
    with torch.no_grad():
        _, flow = dit(x, t, a, text(), causal=True, anchor=anchor, anchored=anchored, return_flow=True)
    assert flow.shape == (1, 2, 2, 8, 8) and torch.all(flow[:, :, 0] == 1.0)
    with pytest.raises(ValueError, match="return_flow"):
        model()(x, t, a, text(), causal=True, return_flow=True)
    with pytest.raises(ValueError, match="model.warp"):
        DiTConfig(warp=True)
    with pytest.raises(ValueError, match="model.warp"):
        DiTConfig(warp=True, anchor=True, pixel_head=8)


def test_overlapping_flow_windows_blend_tokens_smoothly_and_start_as_a_copy():
    """model.flow_overlap: a token's flow spans twice its patch under a tent window; flows
    constant per token become a smooth field (a ramp between token centres, not a step at
    the border), a flow the same everywhere stays that flow, and a zero output copies."""
    dit = model(patch=(1, 4, 4), anchor=True, warp=True, flow_overlap=True, zero_init=True)
    assert dit.final.out_features == 4 * 4 * 4 + 2 * 8 * 8  # the residual's patch, then (dx, dy) over an 8x8 window
    assert "flow_window" not in dit.state_dict()  # a fixed window, not a weight
    same = dit.overlap_flow(torch.full((1, 1, 4, 2 * 8 * 8), 0.25), 8, 8)
    torch.testing.assert_close(same, torch.full((1, 1, 2, 8, 8), 0.25))  # the window sums to one everywhere, edges included
    per_token = torch.tensor([0.0, 1.0, 0.0, 1.0])[None, None, :, None].expand(1, 1, 4, 2 * 8 * 8)  # a 2x2 token grid: left 0, right 1
    flow = dit.overlap_flow(per_token.contiguous(), 8, 8)[0, 0, 0]
    jumps = (flow[:, 1:] - flow[:, :-1]).abs()
    assert jumps.max() <= 1 / 4 + 1e-6  # a ramp over the 4 pixels between token centres (without overlap: a jump of 1)
    assert flow[0, 0] == 0 and flow[0, -1] == 1  # each token's own value at its outer edge
    tall = model(patch=(1, 2, 4), anchor=True, warp=True, flow_overlap=True, zero_init=True)  # rows, and ph != pw
    rows = torch.tensor([0.0, 0.0, 1.0, 1.0])[None, None, :, None].expand(1, 1, 4, 2 * 4 * 8)  # 2x2 tokens of 2x4: top 0, bottom 1
    flow = tall.overlap_flow(rows.contiguous(), 4, 8)[0, 0, 1]
    assert torch.all(flow[0] == 0) and torch.all(flow[-1] == 1) and (flow[1:] - flow[:-1]).abs().max() <= 1 / 2 + 1e-6
    x, t, a = torch.randn(1, 2, 4, 8, 8), torch.rand(1, 2), torch.randn(1, 2, 2)
    anchor = torch.randn(1, 2, 4, 8, 8)
    with torch.no_grad():
        out, flow = dit(x, t, a, text(), causal=True, anchor=anchor, anchored=torch.tensor([[False, True]]), return_flow=True)
    assert out.abs().max() < 1e-5 and flow.shape == (1, 2, 2, 8, 8) and flow.abs().max() == 0
    with pytest.raises(ValueError, match="model.flow_overlap"):
        DiTConfig(anchor=True, warp=False, flow_overlap=True)
    with pytest.raises(ValueError, match="model.flow_overlap"):
        DiTConfig(anchor=True, warp=True, flow_overlap=True, patch=[1, 3, 3], dim=32, heads=2)


def test_the_mlp_gelu_is_recorded_and_old_configs_keep_tanh():
    assert DiTConfig().gelu_approximate == "tanh"  # what checkpoints without the key were trained with
    exact, tanh = model(gelu_approximate="none"), model(gelu_approximate="tanh")
    assert exact.blocks[0].mlp[1].approximate == "none" and tanh.blocks[0].mlp[1].approximate == "tanh"
    x = torch.randn(1, 2, 4, 8, 8)
    with torch.no_grad():  # the same weights, two functions: close, not equal
        ve, vt = (m(x, torch.rand(1, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 2, 2), text(), causal=True) for m in (exact, tanh))
    assert not torch.equal(ve, vt) and torch.allclose(ve, vt, atol=1e-2)
    with pytest.raises(ValueError, match="gelu_approximate"):
        DiTConfig(gelu_approximate="erf")


def test_adaln_zero_model_outputs_zero_at_init():
    dit = model(zero_init=True)
    with torch.no_grad():
        v = dit(torch.randn(2, 3, 4, 8, 8), torch.rand(2, 3), torch.randn(2, 3, 2), text(2), causal=False)
    assert torch.count_nonzero(v) == 0


def test_kv_cached_stepping_matches_the_whole_sequence():
    dit = model()
    x, t, a = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 4), torch.randn(1, 4, 2)
    with torch.no_grad():
        full = dit(x, t, a, text(), causal=True)
        cache = KVCache(len(dit.blocks))
        for i in range(2):  # the context, a frame at a time (the cache takes one new frame a call)
            dit(x[:, i : i + 1], t[:, i : i + 1], a[:, i : i + 1], text(), causal=True, cache=cache, frame_offset=i, append=True)
        steps = [dit(x[:, 2:3], t[:, 2:3], a[:, 2:3], text(), causal=True, cache=cache, frame_offset=2)]  # look, don't store
        dit(x[:, 2:3], t[:, 2:3], a[:, 2:3], text(), causal=True, cache=cache, frame_offset=2, append=True)
        steps.append(dit(x[:, 3:4], t[:, 3:4], a[:, 3:4], text(), causal=True, cache=cache, frame_offset=3))
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 2:], atol=1e-5, rtol=1e-4)
    assert cache.num_frames() == 3
    window = KVCache(len(dit.blocks), window=2)
    with torch.no_grad():
        for i in range(4):
            dit(x[:, i : i + 1], t[:, i : i + 1], a[:, i : i + 1], text(), causal=True, cache=window, frame_offset=i, append=True)
        with pytest.raises(ValueError, match="one new frame a call"):
            dit(x[:, :2], t[:, :2], a[:, :2], text(), causal=True, cache=window, frame_offset=4)
        with pytest.raises(ValueError, match="one new frame a call"):
            dit(x[:, :3], t[:, :3], a[:, :3], text(), causal=True, cache=window, frame_offset=4, append=True)
    assert window.num_frames() == 2 and len(window) == 2 * 16  # the window's frames, preallocated once
    assert window.k[0].shape[2] == 3 * 16  # slot 0 for the frame being computed, two for the past


@pytest.mark.parametrize("config", [{}, {"pixel_head": 8}, {"noise_input": "signal"}])
def test_storing_a_frame_and_computing_the_next_in_one_call_is_two_calls(config):
    """The simulator stores a finished frame in the first denoising call of the next:
    the same keys and values, the same new frame, as a storing call and then a computing one
    (the call returns the computed frame alone: the stored one's output is never computed)."""
    dit = model(**config)
    x, t, a = torch.randn(2, 6, 4, 8, 8), torch.rand(2, 6), torch.randn(2, 6, 2)
    with torch.no_grad():
        apart, together = KVCache(len(dit.blocks), window=3), KVCache(len(dit.blocks), window=3)
        outs_apart, outs_together = [], []
        for i in range(5):  # past the window: the ring wraps
            dit(x[:, i : i + 1], t[:, i : i + 1], a[:, i : i + 1], text(2), causal=True, cache=apart, frame_offset=i, append=True)
            outs_apart.append(dit(x[:, i + 1 : i + 2], t[:, i + 1 : i + 2], a[:, i + 1 : i + 2], text(2), causal=True, cache=apart, frame_offset=i + 1))
            both = dit(x[:, i : i + 2], t[:, i : i + 2], a[:, i : i + 2], text(2), causal=True, cache=together, frame_offset=i, append=True)
            assert both.shape == (2, 1, 4, 8, 8)
            outs_together.append(both)
        torch.testing.assert_close(torch.cat(outs_together, 1), torch.cat(outs_apart, 1), atol=1e-5, rtol=1e-4)
        for ka, kt in zip(apart.k, together.k):
            torch.testing.assert_close(ka[:, :, 16:], kt[:, :, 16:], atol=1e-5, rtol=1e-4)
    assert apart.num_frames() == together.num_frames() == 3


def test_a_stored_frame_sees_the_window_before_it_as_a_history_frame_does_in_training():
    """With the ring full, a stored frame sees the window - 1 frames before it and
    itself, and a computed frame the window before it: the attention of a training clip
    of window + 1 frames (the simulator's task), so a long rollout never shows the
    model a longer history than it learnt on."""
    dit = model()
    w = 3
    x, t, a = torch.randn(1, 7, 4, 8, 8), torch.rand(1, 7), torch.randn(1, 7, 2)
    with torch.no_grad():
        cache = KVCache(len(dit.blocks), window=w)
        for i in range(6):
            dit(x[:, i : i + 1], t[:, i : i + 1], a[:, i : i + 1], text(), causal=True, cache=cache, frame_offset=i, append=True)
        stepped = dit(x[:, 6:7], t[:, 6:7], a[:, 6:7], text(), causal=True, cache=cache, frame_offset=6)
        # the same by a frame mask over the whole sequence: frame i sees frames i - (w - 1) .. i,
        # and the last (computed) frame sees the w before it
        idx = torch.arange(7)
        fm = (idx[:, None] - idx[None, :] >= 0) & (idx[:, None] - idx[None, :] <= w - 1)
        fm[6] = (6 - idx >= 0) & (6 - idx <= w)
        whole = dit(x, t, a, text(), causal=True, frame_index=idx, frame_mask=fm)
    torch.testing.assert_close(stepped, whole[:, 6:], atol=1e-5, rtol=1e-4)


def test_context_masks_and_loss_count_only_generated_frames():
    g = torch.Generator().manual_seed(0)
    cfg = FlowConfig()
    for causal in (True, False):
        m = context_masks(64, 8, cfg, g, causal=causal)
        assert not m.all(dim=1).any()
        if causal:
            first = m.float().argmin(dim=1)  # contexts are prefixes
            assert all(m[i, : first[i]].all() and not m[i, first[i] :].any() for i in range(64) if m[i].any())
    x0 = torch.randn(4, 6, 4, 8, 8)
    inp = training_inputs(x0, cfg, g)
    assert (inp["t"][inp["context"]] <= cfg.context_noise).all()
    v = inp["target"].clone()
    v[inp["context"]] += 100.0  # errors on context frames do not count
    assert flow_loss(v, inp["target"], inp["context"]) == 0


def test_sampling_returns_given_frames_untouched_and_guidance_one_is_unguided():
    dit = model()
    ctx = torch.randn(2, 4, 4, 8, 8)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[:, :2] = True
    mask[1, 3] = True
    tx = text(2)

    def velocity(x, t, text_drop, action_drop):
        k = x.shape[0] // 2
        return dit(x, t, torch.zeros(x.shape[0], 4, 2), tuple(torch.cat([p] * k) for p in tx), causal=False, text_drop=text_drop, action_drop=action_drop)

    with torch.no_grad():
        for method in ("euler", "heun"):
            out = sample(velocity, ctx.shape, SamplerConfig(method=method, steps=3), torch.Generator().manual_seed(0), context=ctx, context_mask=mask)
            assert torch.equal(out[mask], ctx[mask])
            assert not torch.allclose(out[~mask], ctx[~mask])
        x, t = torch.randn(2, 4, 4, 8, 8), torch.rand(2, 4)
        plain = velocity(x, t, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
        torch.testing.assert_close(guided(velocity, x, t, SamplerConfig(text_scale=1.0, action_scale=1.0)), plain)
        different = guided(velocity, x, t, SamplerConfig(text_scale=3.0, action_scale=1.0))
        assert not torch.allclose(different, plain)
        a = sample(velocity, ctx.shape, SamplerConfig(steps=4), torch.Generator().manual_seed(5))
        b = sample(velocity, ctx.shape, SamplerConfig(steps=4), torch.Generator().manual_seed(5))
        assert torch.equal(a, b)
        with pytest.raises(ValueError, match="steps=N"):  # the model's own steps: a world's to say, not sample()'s
            sample(velocity, ctx.shape, SamplerConfig(), torch.Generator().manual_seed(5))
    grid = time_grid(4, shift=3.0)
    assert grid[0] == 1 and grid[-1] == 0 and (grid[:-1] > grid[1:]).all()


def test_a_tiny_dit_overfits_one_clip():
    torch.manual_seed(0)
    world = WorldModel(DiTConfig(dim=64, depth=2, heads=2, latent_channels=4, text_dim=32), TextConfig(dim=32, depth=1, heads=2))
    x0 = torch.randn(1, 4, 4, 8, 8)
    acts = torch.zeros(1, 4, 2)
    opt = torch.optim.AdamW(world.parameters(), lr=2e-3)
    cfg = FlowConfig(text_drop=0.0, action_drop=0.0)
    losses = []
    for step in range(250):
        inp = training_inputs(x0, cfg, torch.Generator().manual_seed(step % 4))  # a few fixed draws
        v = world(inp["x_t"], inp["t"], acts, ["a red ball bounces"], causal=inp["causal"])
        loss = flow_loss(v, inp["target"], inp["context"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 / 10


def test_tokenizer_truncates_with_one_warning_and_knows_unknown_words():
    tok = Tokenizer(max_length=8)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ids, mask = tok(["a red ball hits the floor then the blue ball hits the wall"] * 2)
        tok(["two balls bounce in a box under low gravity and more"])
    assert ids.shape == (2, 8) and mask.all()
    assert len([x for x in w if "longer than" in str(x.message)]) == 1
    assert tok.unknown("a zorgly ball") == ["zorgly"]
    enc = TextEncoder(TextConfig(dim=16, depth=1, heads=2, max_length=8))
    tokens, m, pooled = enc.encode(["a ball", "two balls bounce"])
    assert tokens.shape[:2] == m.shape and pooled.shape == (2, 16)
