"""FLOP counting: attention on a CPU counts what it computes, and a run begun before it
was counted resumes counting as it began."""

import json

import pytest
import torch
import torch.nn.functional as F

from tests.test_train import config
from worldsim.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from worldsim.runtime import CastWeights, flop_counter
from worldsim.training.loop import train


def _attention_flops(fn, cpu_attention=True):
    q = torch.randn(2, 3, 40, 16, requires_grad=True)
    k = torch.randn(2, 3, 56, 16, requires_grad=True)
    v = torch.randn(2, 3, 56, 16, requires_grad=True)
    mask = torch.rand(40, 56) < 0.7
    mask[:, 0] = True
    with flop_counter(cpu_attention=cpu_attention) as counter:
        fn(q, k, v, mask).sum().backward()
    return counter.get_total_flops()


def _by_hand(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_cpu_attention_counts_as_the_same_products_written_out():
    fused = _attention_flops(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m))
    written = _attention_flops(_by_hand)
    assert fused > 0
    # forward: QK^T and AV (4 B h L S d); backward: their four gradients (twice that) plus
    # the recomputed QK^T of a flash kernel (PyTorch's own formula for its CUDA kernels)
    b, h, lq, s, d = 2, 3, 40, 56, 16
    assert written == 3 * 4 * b * h * lq * s * d
    assert fused == written + 2 * b * h * lq * s * d


def test_a_prepacked_linear_counts_as_the_linear_it_computes():
    """The simulator's eager bf16 twin calls oneDNN's linear on prepacked weights
    (runtime.CastWeights): counted as ``F.linear``, in both ways of counting."""
    m = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.GELU(), torch.nn.Linear(40, 8, bias=False))
    cast = CastWeights(m, torch.bfloat16)
    if not cast.pack:
        pytest.skip("oneDNN's prepacked bf16 linear does not run here (the twin uses F.linear)")
    x = torch.randn(2, 5, 24)
    for cpu_attention in (True, False):
        counts = []
        for module in (m, cast.current()):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), flop_counter(cpu_attention=cpu_attention) as counter:
                module(x)
            counts.append(counter.get_total_flops())
        assert counts[0] == counts[1] == 2 * 10 * (24 * 40 + 40 * 8)
        assert torch.ops.mkldnn._linear_pointwise in counter.get_flop_counts()["Global"]  # the twin ran the packed kernel


def test_the_old_count_left_cpu_attention_out():
    assert _attention_flops(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m), cpu_attention=False) == 0


def test_a_run_begun_without_attention_counted_resumes_without_it(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path / "new", 2))
    train(config(tiny_data, tmp_path / "old", 2))
    path = checkpoint_path(tmp_path / "old", 2)
    ck = load_checkpoint(path)
    assert ck["compute"]["cpu_attention_counted"] is True
    # what a checkpoint of a run begun before the change holds: its own counts, no marker
    old = {k: [f / 2 for f in v] for k, v in ck["compute"]["flop_counts"].items()}
    ck["compute"] = {k: v for k, v in ck["compute"].items() if k != "cpu_attention_counted"} | {"flop_counts": old}
    save_checkpoint(path, ck)
    train(config(tiny_data, tmp_path / "old", 4))
    train(config(tiny_data, tmp_path / "new", 4))
    old_run = json.loads((tmp_path / "old" / "train_summary.json").read_text())
    new_run = json.loads((tmp_path / "new" / "train_summary.json").read_text())
    assert old_run["cpu_attention_counted"] is False and new_run["cpu_attention_counted"] is True
    for key, counts in old_run["flops_per_step"].items():
        assert counts[: len(old[key])] == old[key]  # what it had counted stays
        fresh = counts[len(old[key]):]
        assert fresh, key
        # what it counted after resuming left attention out: less than the same step counted whole
        assert all(0 < f < new_run["flops_per_step"][key][0] for f in fresh), (key, fresh)
    # and count_cpu_attention=false counts a new run that way (to reproduce a run of before)
    train(config(tiny_data, tmp_path / "asked", 2, count_cpu_attention=False))
    asked = json.loads((tmp_path / "asked" / "train_summary.json").read_text())
    assert asked["cpu_attention_counted"] is False
    for key, counts in asked["flops_per_step"].items():  # step 0 of both runs is the same batch: less by its attention
        assert 0 < counts[0] < new_run["flops_per_step"][key][0]
