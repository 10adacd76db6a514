"""The learned simulator: determinism, the KV cache, flat memory, bad input."""

import resource

import numpy as np
import pytest
import torch

from worldsim.diffusion.sampling import SamplerConfig
from worldsim.simulator import LearnedSimulator


def context(seed=0, k=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (2, k, 32, 32, 3), dtype=np.uint8)


def rollout(sim, steps=4, seed=0, k=3):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(2)]
    frames = [sim.reset(context(seed, k), "two balls bounce", gens)]
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


def test_long_rollouts_stay_finite_in_flat_memory(tiny_world):
    sim = LearnedSimulator(str(tiny_world), window=4)
    sim.reset(None, "a ball bounces", torch.Generator().manual_seed(0), batch_size=1)
    peaks, sizes = [], []
    for i in range(200):
        frame = sim.step(np.zeros((1, 2), np.float32))
        assert frame.shape == (1, 32, 32, 3)
        if i % 50 == 49:
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            sizes.append(len(sim._state["cache"]))
    assert len(set(sizes)) == 1  # the cache holds the window, not the history
    assert peaks[-1] - peaks[0] < 20_000  # KiB
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
