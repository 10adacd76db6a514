"""The learned simulator: determinism, the KV cache, flat memory, bad input."""

import json
import warnings

import numpy as np
import pytest
import torch

from worldsim import bench, simulator
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.models.world import load_world
from worldsim.runtime import CastWeights, resident_bytes
from worldsim.simulator import RECOMPILE_LIMIT, LearnedSimulator, inference_compile_options


def context(seed=0, k=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (2, k, 32, 32, 3), dtype=np.uint8)


def rollout(sim, steps=4, seed=0, k=3, prompt="two balls bounce"):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(2)]
    frames = [sim.reset(context(seed, k), prompt, gens)]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        frames.append(sim.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32)))
    return np.stack(frames, 1)


def test_same_seed_same_rollout(tiny_world):
    sim = LearnedSimulator(str(tiny_world))
    a, b = rollout(sim, seed=1), rollout(sim, seed=1)
    assert a.shape == (2, 5, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, rollout(sim, seed=2))


def test_kv_cached_stepping_matches_full_recomputation(tiny_world):
    for sampler in (SamplerConfig(), SamplerConfig(method="heun", steps=2, text_scale=2.0, action_scale=1.5)):
        cached = rollout(LearnedSimulator(str(tiny_world), sampler=sampler, window=4), steps=6)
        full = rollout(LearnedSimulator(str(tiny_world), sampler=sampler, window=4, use_cache=False), steps=6)
        assert np.abs(cached.astype(int) - full).max() <= 1


def test_a_batch_equals_its_worlds_alone(tiny_world):
    sim = LearnedSimulator(str(tiny_world))
    both = rollout(sim, seed=3)
    ctx = context(3)
    for i in range(2):
        alone = [sim.reset(ctx[i : i + 1], "two balls bounce", [torch.Generator().manual_seed(3 + i)])]
        rng = np.random.default_rng(3)
        for _ in range(4):
            alone.append(sim.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32)[i : i + 1]))
        assert np.abs(np.stack(alone, 1)[0].astype(int) - both[i]).max() <= 1


def test_the_ring_buffer_wraps_and_still_matches_recomputation(tiny_world):
    """A rollout several windows long: the cache overwrites its oldest slots in place."""
    cached = rollout(LearnedSimulator(str(tiny_world), window=2), steps=9, k=3)
    full = rollout(LearnedSimulator(str(tiny_world), window=2, use_cache=False), steps=9, k=3)
    assert np.abs(cached.astype(int) - full).max() <= 1


def test_a_step_calls_the_dit_once_per_sampler_step(tiny_world):
    """The finished frame is stored in the next step's first DiT call, not a call of its own."""
    sim = LearnedSimulator(str(tiny_world), sampler=SamplerConfig(steps=2))
    frames, inner = [], sim._dit
    sim._dit = lambda *a, **k: (frames.append(a[0].shape[1]), inner(*a, **k))[1]
    rollout(sim, steps=3, k=3)
    # reset: the first two context frames stored one a call, the third left to the first step;
    # each step: two calls, the first of which also stores the frame before
    assert frames == [1, 1] + [2, 1] * 3


def test_a_rollouts_repeated_call_values_are_made_once_and_change_nothing(tiny_world):
    """Eager on a CPU, the rotary tables of a frame index and the time embedding of a set
    of noise levels are made once a rollout (KVCache.constant), not at every DiT call: a
    frame's sampler steps share its tables, every frame the levels. The cache keeps at
    most CONSTANTS of them, and a rollout that makes each anew is the same, bit for bit."""
    sim = LearnedSimulator(str(tiny_world), sampler=SamplerConfig(steps=4))
    steps, made = 40, []  # 2 + 2 * 40 rotary tables: many more than the cache keeps

    def counting(cache):
        constant = cache.constant
        cache.constant = lambda key, make: constant(key, lambda: (made.append(key[0]), make())[1])
        return cache

    new_cache = sim.model.dit.new_cache
    sim.model.dit.new_cache = lambda *a, **k: counting(new_cache(*a, **k))
    frames = rollout(sim, steps=steps, k=3)
    latents = sim.current_latents()
    # once a call at reset (two context frames stored alone), then twice a step (of its 4 calls):
    # the frame stored with the first call, and the new one
    assert made.count("rope") == 2 + 2 * steps
    # each set of levels once, not once a call: the context level, the sampler's, the anchor's (if any)
    assert made.count("levels") <= 7
    assert len(sim._state["cache"]._constants) <= sim._state["cache"].CONSTANTS < made.count("rope")

    def making_anew(cache):
        cache.constant = lambda key, make: make()
        return cache

    sim.model.dit.new_cache = lambda *a, **k: making_anew(new_cache(*a, **k))
    assert np.array_equal(rollout(sim, steps=steps, k=3), frames)
    assert np.array_equal(sim.current_latents(), latents)  # bit for bit


def test_eager_bf16_steps_cast_the_weights_once_and_follow_their_changes(tiny_world):
    """Eager bf16 steps call a twin of the DiT whose linear weights are held in bf16 (under
    inference mode autocast would cast each at every call): the same frames and latents,
    bit for bit, as the module itself under autocast, its other parameters shared, the
    weights cast once while they do not change, and a weight changed in place or
    replaced cast anew at the next step."""
    sim, plain = LearnedSimulator(str(tiny_world), precision="bf16"), LearnedSimulator(str(tiny_world), precision="bf16")
    plain._dit = plain.model.dit
    dit, twin = sim.model.dit, sim._cast.twin
    assert sim._dit is twin and twin is not dit
    assert twin.final.weight.dtype == twin.blocks[0].attn.qkv.bias.dtype == torch.bfloat16
    assert twin.null_action is dit.null_action and twin.blocks[0].norm2.weight is dit.blocks[0].norm2.weight
    assert dit.final.weight.dtype == torch.float32  # the module's own weights are left as they were
    cast = twin.blocks[0].attn.qkv.weight
    before = rollout(sim)
    assert twin.blocks[0].attn.qkv.weight is cast  # not cast again while unchanged
    assert np.array_equal(before, rollout(plain)) and np.array_equal(sim.current_latents(), plain.current_latents())
    change = 0.2 * torch.randn(dit.final.weight.shape, generator=torch.Generator().manual_seed(0))
    for s in (sim, plain):
        with torch.no_grad():
            s.model.dit.final.weight.add_(change)  # in place
            out = s.model.dit.blocks[0].attn.out
            out.weight = torch.nn.Parameter(1.5 * out.weight)  # replaced
    after = rollout(sim)
    assert np.abs(after.astype(int) - before).max() > 10  # the changes show in the frames
    assert np.array_equal(after, rollout(plain)) and np.array_equal(sim.current_latents(), plain.current_latents())


def test_the_cast_twin_follows_every_kind_of_weight_change():
    """CastWeights against the module itself under bf16 autocast and inference mode, bit
    for bit, after each way a weight can change outside inference mode (in place, new
    data, a new parameter, a bias removed and put back, a shared norm weight or buffer
    replaced), then a parameter made under inference mode (no version counter); after an
    edit through ``.data``, which PyTorch does not count, ``current(force=True)``."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.LayerNorm(6), torch.nn.Conv1d(6, 4, 1))
    m.register_buffer("offset", torch.zeros(4, 1))
    cast = CastWeights(m, torch.bfloat16)
    x = torch.randn(3, 8)

    def run(f):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return f[2](f[1](f[0](x))[..., None]) + f.offset

    changes = [
        lambda: m[0].weight.mul_(2),
        lambda: setattr(m[0].weight, "data", torch.randn(6, 8)),
        lambda: setattr(m[2], "weight", torch.nn.Parameter(torch.randn(4, 6, 1))),
        lambda: setattr(m[0], "bias", None),
        lambda: setattr(m[0], "bias", torch.nn.Parameter(torch.randn(6))),
        lambda: setattr(m[1], "weight", torch.nn.Parameter(torch.randn(6))),  # shared, not cast
        lambda: setattr(m, "offset", torch.ones(4, 1)),  # a buffer replaced
    ]
    assert cast.twin[0].weight.dtype == cast.twin[2].bias.dtype == torch.bfloat16 and cast.twin[1].weight is m[1].weight
    if cast.pack:  # where oneDNN's prepacked linear runs (it gives F.linear's result bit for bit), the twin's linear uses it
        assert type(cast.twin[0]).__name__ == "_PackedLinear" and cast.twin[0].packed is not None
    outs = [run(m)]
    assert torch.equal(run(cast.current()), outs[-1])
    with torch.no_grad():
        for change in changes:
            change()
            outs.append(run(m))
            assert not torch.equal(outs[-1], outs[-2])  # each change changes the output...
            assert torch.equal(run(cast.current()), outs[-1])  # ...and the twin follows it
        m[0].bias.data.add_(1)  # through .data: PyTorch counts no change, so the twin is told to cast anew
        assert torch.equal(run(cast.current(force=True)), run(m))
    with torch.inference_mode():
        m[0].bias = torch.nn.Parameter(torch.randn(6))  # made under inference mode: cast at every call
        assert torch.equal(run(cast.current()), run(m))
        m[0].bias.add_(1)
        assert torch.equal(run(cast.current()), run(m))
    # without packing (pack=False, or where the check of it fails): plain linear layers, the same results
    plain = CastWeights(m, torch.bfloat16, pack=False)
    assert type(plain.twin[0]) is torch.nn.Linear and not plain.pack
    assert torch.equal(run(plain.current()), run(m))
    if cast.pack:
        with torch.no_grad():
            m[0].weight.mul_(-1)  # the packed weight follows the cast one
        assert torch.equal(run(cast.current()), run(m)) and torch.equal(run(cast.current()), run(plain.current()))
        x.requires_grad_(True)  # recording autograd: the plain layer, whose products have gradients
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast.current()[0](x).float().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_packed_linear_is_the_plain_one_bit_for_bit_for_any_input():
    """The twin's packed linear layers against the module under bf16 autocast: inputs of
    two to four dimensions, contiguous or not (a transposed batch: F.linear adds the bias
    apart there, so the layer takes the plain path), fp32 or bf16; outside autocast an
    fp32 input is refused, as the plain layer refuses it."""
    torch.manual_seed(0)
    m = torch.nn.Linear(96, 384)
    cast = CastWeights(m, torch.bfloat16)
    if not cast.pack:
        pytest.skip("oneDNN's prepacked bf16 linear does not run here (the twin uses F.linear)")
    inputs = [torch.randn(64, 96), torch.randn(2, 64, 96), torch.randn(64, 2, 96).transpose(0, 1), torch.randn(2, 64, 192)[..., ::2],
              torch.randn(1, 4, 64, 96), torch.randn(64, 192)[:, ::2], torch.randn(3, 64, 96).to(torch.bfloat16)]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for x in inputs:
            assert torch.equal(cast.current()(x), m(x)), (tuple(x.shape), x.stride(), x.dtype)
    with torch.inference_mode(), pytest.raises(RuntimeError):
        cast.current()(torch.randn(2, 96))  # fp32 into bf16 weights, no autocast: refused, not cast quietly


@pytest.mark.parametrize("warp", [False, True, "overlap"])
def test_anchored_stepping_matches_recomputation(tmp_path, warp):
    """An anchored model (the last two frames through its anchor embedding, the sample
    predicted; with warp, the last frame moved along its flow, per patch or blended over
    overlapping windows) steps the same with the cache as without it."""
    from worldsim.diffusion.flow import FlowConfig
    from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
    from worldsim.models.dit import DiTConfig
    from worldsim.models.text import TextConfig
    from worldsim.models.world import WorldModel, save_world

    torch.manual_seed(0)
    world = WorldModel(DiTConfig(dim=32, depth=2, heads=2, patch=[1, 8, 8], latent_channels=3, text_dim=16, anchor=True, anchor_frames=2,
                                 warp=bool(warp), flow_overlap=warp == "overlap", pixel_head=0 if warp else 8),
                       TextConfig(dim=16, depth=1, heads=2))
    for q in world.parameters():
        if q.abs().sum() == 0:
            torch.nn.init.normal_(q, std=0.05)
    if warp:  # flows of about a pixel: random flows of several make the rollout chaotic, so rounding alone would part the two
        with torch.no_grad():
            if warp == "overlap":  # the residual's patch (8 x 8 x 3), then the flow windows
                world.dit.final.weight[8 * 8 * 3 :] *= 0.1
                world.dit.final.bias[8 * 8 * 3 :] *= 0.1
            else:  # each pixel's residual and flow, interleaved
                world.dit.final.weight.view(-1, 3 + 2, 32)[:, 3:] *= 0.1
                world.dit.final.bias.view(-1, 3 + 2)[:, 3:] *= 0.1
    path = save_world(str(tmp_path / "w.pt"), world, Autoencoder(AutoencoderConfig(identity=True)), resolution=(32, 32), fps=20,
                      flow=FlowConfig(prediction="sample", simulator_share=1.0), clip_frames=4)
    sims = [LearnedSimulator(path, window=3, precision="fp32", use_cache=c) for c in (True, False)]
    bases = []
    for sim in sims:  # what each anchored call moves: the clean last frame, not the noisy one the anchor embedding sees
        inner = sim._dit
        sim._dit = lambda *a, _inner=inner, _sim=sim, **k: (bases.append(torch.equal(k["anchor_base"][:, -1:], _sim._rep(_sim._state["last_latent"])))
                                                             if k.get("anchor") is not None else None, _inner(*a, **k))[1]
    cached, full = (rollout(sim, steps=7) for sim in sims)
    assert np.abs(cached.astype(int) - full).max() <= 1
    assert len(bases) >= 2 * 7 and all(bases)
    assert LearnedSimulator(path).window == 3  # the history it was trained with: clip_frames - 1
    # eager bf16: the twin with its weights cast once (anchor embedding, flow or pixel head) steps as the module under autocast
    twin, plain = (LearnedSimulator(path, window=3, precision="bf16") for _ in range(2))
    plain._dit = plain.model.dit
    assert twin._cast is not None and twin._dit is twin._cast.twin
    assert np.array_equal(rollout(twin, steps=5), rollout(plain, steps=5))
    assert np.array_equal(twin.current_latents(), plain.current_latents())


def test_stepping_without_decoding_gives_latents_and_decodes_on_demand(tiny_world):
    sim = LearnedSimulator(str(tiny_world))
    decoded = rollout(sim, steps=3)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    sim.reset(context(0, 3), "two balls bounce", gens)
    rng = np.random.default_rng(0)
    for _ in range(3):
        z = sim.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32), decode=False)
    assert z.shape == (2, 3, 32, 32) and z.dtype == np.float32
    assert np.array_equal(sim.pictures(), decoded[:, -1])
    assert sim.timings["steps"] > 0 and sim.timings["dit_s"] > 0


def test_frames_handed_out_are_the_callers_own(tiny_world):
    """Editing a frame the simulator returned, or the context after reset, changes
    nothing it returns later."""
    sim = LearnedSimulator(str(tiny_world))
    ctx = context(0, 3)
    first = sim.reset(ctx, "two balls bounce", [torch.Generator().manual_seed(i) for i in range(2)])
    ctx[:] = 0
    first[:] = 0
    shown = sim.pictures()
    assert np.array_equal(shown, context(0, 3)[:, -1])
    shown[:] = 0
    assert np.array_equal(sim.pictures(), context(0, 3)[:, -1])
    frame = sim.step(np.zeros((2, 2), np.float32))
    kept = frame.copy()
    frame[:] = 0
    assert frame.sum() == 0 and np.array_equal(sim.pictures(), kept) and kept.any()


def test_compiled_steps_agree_with_eager_and_never_recompile(tiny_world, monkeypatch):
    """A compiled simulator traces one graph per kind of DiT call; as the ring fills and
    turns (a rollout past the window), for a new rollout and for a prompt of another
    length (captions are padded to a few lengths), nothing recompiles."""
    longer = "a red ball and a blue ball bounce in a box"  # 11 tokens against 3: the same bucket of 16
    eager_sim = LearnedSimulator(str(tiny_world), precision="fp32", window=3)
    eager, eager_longer = rollout(eager_sim, steps=8), rollout(eager_sim, steps=4, prompt=longer)
    sim = LearnedSimulator(str(tiny_world), precision="fp32", window=3, compile=True)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    # Dynamo's own limit on graphs a function, set below the simulator's three: other
    # compiled models of a process must not turn this one eager (the simulator raises it)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frames = [sim.reset(context(0, 3), "two balls bounce", gens)]
            rng = np.random.default_rng(0)
            frames.append(sim.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32)))  # compiles: store, store + compute, compute
        except Exception as e:  # no working compiler on this machine
            pytest.skip(f"torch.compile does not run here: {type(e).__name__}")
    # the simulator let Dynamo's limit turn it eager: a failure, not a missing compiler
    assert not [w for w in caught if "recompile limit" in str(w.message)]
    if not sim.compiled:
        pytest.skip("torch.compile does not run here (the simulator fell back to eager)")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(7):
            frames.append(sim.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32)))
        again = rollout(sim, steps=4)
        other = rollout(sim, steps=4, prompt=longer)
        # the compiled steps read the weights as they are now (no frozen copy), without recompiling
        change = 0.2 * torch.randn(sim.model.dit.final.weight.shape, generator=torch.Generator().manual_seed(0))
        for s in (sim, eager_sim):
            with torch.no_grad():
                s.model.dit.final.weight.add_(change)
        changed, eager_changed = rollout(sim, steps=4), rollout(eager_sim, steps=4)
    assert sim.compiled  # a recompile would have fallen back to eager, with a warning
    compiled = np.stack(frames, 1)
    assert np.abs(compiled.astype(int) - eager).max() <= 2
    assert np.abs(again.astype(int) - eager[:, :5]).max() <= 2
    assert np.abs(other.astype(int) - eager_longer).max() <= 2
    assert np.abs(eager_changed.astype(int) - eager[:, :5]).max() > 10  # the change shows in the frames
    assert np.abs(changed.astype(int) - eager_changed).max() <= 2


def test_dynamos_recompile_limit_turns_the_simulator_eager_openly(tiny_world, monkeypatch):
    """At Dynamo's recompile limit Dynamo itself would step the DiT eagerly without a word,
    leaving ``compiled`` True; the simulator warns, turns eager and says so, with the
    frames an eager simulator gives."""
    eager = rollout(LearnedSimulator(str(tiny_world), precision="fp32"), steps=3)
    monkeypatch.setattr(simulator, "RECOMPILE_LIMIT", 1)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    sim = LearnedSimulator(str(tiny_world), precision="fp32", compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frames = rollout(sim, steps=3)  # three kinds of call: a second graph is past the limit
        except Exception as e:  # no working compiler on this machine
            pytest.skip(f"torch.compile does not run here: {type(e).__name__}")
    said = [str(w.message) for w in caught]
    if any("torch.compile failed" in m or "unavailable" in m for m in said):
        pytest.skip("torch.compile does not run here")
    assert any("recompile limit (1 graphs" in m for m in said), said
    assert not sim.compiled
    assert np.abs(frames.astype(int) - eager).max() <= 2
    assert np.array_equal(rollout(sim, steps=3), frames)  # eager from then on: no warning, the same frames


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_compiler_that_fails_falls_back_to_eager(tiny_world, monkeypatch, precision):
    def broken(module, **kwargs):
        def call(*args, **kw):
            raise torch._dynamo.exc.TorchDynamoException("no C++ compiler")
        return call

    eager = rollout(LearnedSimulator(str(tiny_world), precision=precision), steps=2)
    monkeypatch.setattr(torch, "compile", broken)
    sim = LearnedSimulator(str(tiny_world), precision=precision, compile=True)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        frames = rollout(sim, steps=2)
    assert not sim.compiled
    # its caption was padded for the compiled graphs (the padding masked): the same frames in fp32, within a level in bf16
    assert np.abs(frames.astype(int) - eager).max() <= (0 if precision == "fp32" else 1)
    if precision == "bf16":  # eager, it steps the twin with the weights cast once: bit for bit what autocast's casts give
        assert sim._dit is sim._cast.twin
        monkeypatch.setattr(LearnedSimulator, "_eager", lambda self: self.model.dit)
        plain = LearnedSimulator(str(tiny_world), precision=precision, compile=True)
        with pytest.warns(UserWarning, match="torch.compile failed"):
            assert np.array_equal(rollout(plain, steps=2), frames)


def test_compiled_calls_run_under_the_inference_settings(tiny_world, monkeypatch):
    """Every compiled DiT call on a CPU runs with the C++ wrapper, unfrozen weights (so
    Inductor's on-disk cache keeps the graphs) and the raised recompile limit in force (Inductor reads them where it compiles: inside
    the call), and leaves the process's own settings as they were."""
    seen = []

    def recording(module, **kwargs):
        def call(*args, **kw):
            seen.append((torch._inductor.config.freezing, torch._inductor.config.cpp_wrapper, torch._dynamo.config.recompile_limit))
            return module(*args, **kw)
        return call

    monkeypatch.setattr(torch, "compile", recording)
    before = (torch._inductor.config.freezing, torch._inductor.config.cpp_wrapper, torch._dynamo.config.recompile_limit)
    sim = LearnedSimulator(str(tiny_world), precision="fp32", compile=True)
    frames = rollout(sim, steps=2)
    eager = rollout(LearnedSimulator(str(tiny_world), precision="fp32"), steps=2)
    assert sim.compiled and np.array_equal(frames, eager)
    options = inference_compile_options(sim.device)  # on a CPU: the C++ wrapper, freezing off (whatever the process set)
    assert sim.device.type != "cpu" or options == {"freezing": False, "cpp_wrapper": True}
    want = (options.get("freezing", before[0]), options.get("cpp_wrapper", before[1]), max(RECOMPILE_LIMIT, before[2]))
    assert len(seen) >= 3 and all(s == want for s in seen)
    assert (torch._inductor.config.freezing, torch._inductor.config.cpp_wrapper, torch._dynamo.config.recompile_limit) == before


def test_long_rollouts_stay_finite_in_flat_memory(tiny_world):
    """1,000 steps in flat memory, read as the process's resident size at each mark (its
    peak, ``ru_maxrss``, would hide any growth under the peak earlier tests set). Eight
    worlds: a frame's own state (keys and values, latents, pictures: about 180 KiB a
    step here) kept every step would grow past the bound many times over."""
    if resident_bytes() is None:
        pytest.skip("the resident size is read from /proc/self/statm (Linux)")
    sim = LearnedSimulator(str(tiny_world), window=4, sampler=SamplerConfig(steps=1))
    sim.reset(None, "a ball bounces", [torch.Generator().manual_seed(i) for i in range(8)], batch_size=8)
    sizes, memory = [], []
    for i in range(1000):
        frame = sim.step(np.zeros((8, 2), np.float32))
        assert frame.shape == (8, 32, 32, 3)
        if i % 250 == 249:
            sizes.append(len(sim._state["cache"]))
            memory.append(resident_bytes())
    assert len(set(sizes)) == 1  # the cache holds the window, not the history
    assert max(memory) - memory[0] < 20 * 2**20, [m / 2**20 for m in memory]  # 750 steps, under 20 MiB: under 28 KiB a step
    z = sim._state["cache"].k[0]
    assert torch.isfinite(z).all()


def test_bad_actions_and_calls_are_refused(tiny_world):
    sim = LearnedSimulator(str(tiny_world))
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(np.zeros((1, 2), np.float32))
    sim.reset(context(0, 2)[:1], "a ball", [torch.Generator().manual_seed(0)])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        sim.step(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        sim.step(np.array([[np.nan, 0.0]], np.float32))
    assert sim.step(np.array([[5.0, -7.0]], np.float32)).shape == (1, 32, 32, 3)  # clipped, runs
    with pytest.raises(ValueError, match="context_frames must be"):
        sim.reset(np.zeros((1, 2, 16, 16, 3), np.uint8), "a ball", [torch.Generator()])
    sim.reset(None, "a zorgly ball", [torch.Generator()], batch_size=1)
    assert sim.unknown_words == [["zorgly"]]


def test_the_step_benchmark_says_where_the_time_goes(tiny_world, capsys):
    """bench step: per number of worlds, the attention FLOPs apart from the rest, the
    kernel limit and the share of it reached; for the batch, the time by kind of kernel;
    the cache against recomputing for one world and for 8, timed in alternating rounds."""
    bench.main(["--threads", "1", "step", "--checkpoint", str(tiny_world), "--no-compile", "--long-steps", "0",
                "--single-steps", "2", "--batched-steps", "1", "--worlds", "2", "--rounds", "3"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "step" and set(out["worlds"]) == {"1", "2", "8"}
    dit = load_world(str(tiny_world)).config.dit
    for n, r in out["worlds"].items():
        assert 0 < r["attention_flops_per_step"] < r["model_flops_per_step"]
        assert r["model_flops_per_step"] == pytest.approx(int(n) * out["worlds"]["1"]["model_flops_per_step"], rel=1e-6)
        assert 0 < r["kernel_limit_ms"] < r["ms_per_step"] * 5 and r["attention_kernel_flops_per_s"] > 0
        # the arithmetic limit: the FLOPs at the peak plus a softmax for each attention weight (a score of the head width)
        head_width = dit.dim // dit.heads
        assert r["attention_weights_per_step"] == pytest.approx(r["attention_flops_per_step"] / (4 * head_width))
        expect = 1000 * (r["model_flops_per_step"] / out["matmul_peak_flops_per_s"] + r["attention_weights_per_step"] / out["softmax_elements_per_s"])
        assert r["arithmetic_limit_ms"] == pytest.approx(expect, rel=0.01, abs=0.0006)  # (printed to the microsecond)
        assert r["of_arithmetic_limit"] == pytest.approx(expect / r["ms_per_step"], rel=0.02, abs=0.002)
        assert r["frames_per_s_at_arithmetic_limit"] == pytest.approx(1000 * int(n) / expect, rel=0.02)
    shares = out["worlds"]["2"]["time_shares"]
    assert set(shares) == {"attention", "matmul", "warp", "other"} and shares["attention"] > 0 and shares["matmul"] > 0
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    # ratios: the cached and the recomputing runs timed in the same alternating rounds, the ratio taken round by round
    for slow, fast, ratio in [(out["recomputed_window_8_worlds"], out["worlds"]["8"], out["kv_cache_speedup_8_worlds"]),
                              (out["recomputed_window_single"], out["worlds"]["1"], out["kv_cache_speedup"]),
                              (out["worlds"]["1"], out["latents_only_single"], out["latents_only_single"]["speedup_over_decoding"])]:
        assert len(slow["ms_per_step_rounds"]) == len(fast["ms_per_step_rounds"]) == out["rounds"] == 3
        assert fast["ms_per_step"] == pytest.approx(np.median(fast["ms_per_step_rounds"]), abs=0.01)
        assert ratio == pytest.approx(np.median(np.divide(slow["ms_per_step_rounds"], fast["ms_per_step_rounds"])), abs=0.01)
    assert out["latents_only_single"]["decode_ms"] == 0  # stepped without decoding: nothing decoded in the loop
    assert out["memory_mib_at_10_percent"] is None and out["memory_mib_at_end"] is None  # --long-steps 0
    assert (out["fp32_single"] is not None) == (out["precision"] == "bf16")
    if out["fp32_single"] is not None:  # timed in the same rounds as one world in bf16
        fp32 = out["fp32_single"]
        assert fp32["speedup_over_bf16"] == pytest.approx(np.median(np.divide(out["worlds"]["1"]["ms_per_step_rounds"], fp32["ms_per_step_rounds"])), abs=0.01)


def test_a_refused_reset_leaves_the_running_rollout_as_it_was(tiny_world):
    sim, twin = LearnedSimulator(str(tiny_world)), LearnedSimulator(str(tiny_world))
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    for s in (sim, twin):
        s.reset(context(0, 3), "two balls bounce", gens())
        s.step(np.zeros((2, 2), np.float32))
    for bad, message in (({"context_actions": np.zeros((2, 3, 5))}, "context_actions must be finite numbers of shape"),
                         ({"context_actions": np.full((2, 3, 2), np.nan)}, "context_actions"),
                         ({"prompt": 7}, "prompt must be a string")):
        kw = {"prompt": "two balls bounce", **bad}
        prompt = kw.pop("prompt")
        with pytest.raises(ValueError, match=message):
            sim.reset(context(1, 3), prompt, gens(), **kw)
    a = np.full((2, 2), 0.5, np.float32)
    assert np.array_equal(sim.step(a), twin.step(a))  # the same rollout goes on
    with pytest.raises(ValueError, match="window must be a whole number of frames, at least 1"):
        LearnedSimulator(str(tiny_world), window=0)


def test_a_diverged_model_raises_instead_of_stepping_black_frames(tiny_world):
    sim = LearnedSimulator(str(tiny_world), precision="fp32")
    sim.reset(context(0, 3), "two balls bounce", [torch.Generator().manual_seed(i) for i in range(2)])
    with torch.no_grad():
        sim.model.dit.final.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"not finite \(NaN or inf\) in worlds \[0, 1\]"):
        sim.step(np.zeros((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="call reset"):  # half a step was taken: the rollout has ended
        sim.step(np.zeros((2, 2), np.float32))


def test_stepping_on_latents_alone_keeps_memory_flat(tiny_world, tmp_path, monkeypatch):
    """Latents stepped without decoding wait for pictures(): in pixel space only the last
    is kept; behind a decoder with temporal layers the oldest are decoded once enough
    wait, and the pictures are those of a simulator that decoded every step."""
    from worldsim import simulator as simulator_module
    from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
    from worldsim.models.dit import DiTConfig
    from worldsim.models.text import TextConfig
    from worldsim.models.world import WorldModel, save_world

    sim = LearnedSimulator(str(tiny_world))
    sim.reset(context(0, 3), "two balls bounce", [torch.Generator().manual_seed(i) for i in range(2)])
    for _ in range(5):
        sim.step(np.zeros((2, 2), np.float32), decode=False)
    assert len(sim._state["undecoded"]) == 1

    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(spatial_factor=4, temporal_factor=1, latent_channels=4, channels=[8, 8, 16], temporal_kernel=2))
    world = WorldModel(DiTConfig(dim=32, depth=1, heads=2, patch=(1, 2, 2), latent_channels=4, text_dim=16), TextConfig(dim=16, depth=1, heads=2))
    path = save_world(str(tmp_path / "world.pt"), world, ae, resolution=(32, 32), fps=20)
    monkeypatch.setattr(simulator_module, "UNDECODED", 2)
    lazy, eager = LearnedSimulator(path, precision="fp32"), LearnedSimulator(path, precision="fp32")
    for s in (lazy, eager):
        s.reset(context(0, 3), "two balls bounce", [torch.Generator().manual_seed(i) for i in range(2)])
    for _ in range(6):
        a = np.full((2, 2), 0.3, np.float32)
        lazy.step(a, decode=False)
        shown = eager.step(a)
        assert len(lazy._state["undecoded"]) <= 2
    assert np.array_equal(lazy.pictures(), shown)
