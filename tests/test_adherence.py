"""Prompt adherence: each check measures the model against the physics it was given."""

import numpy as np
import pytest

from worldsim.evaluate.adherence import AdherenceConfig, Physics, check_consistency
from worldsim.sampler import Sampler


@pytest.mark.parametrize("mode", ["extend", "extend_backward", "connect"])
def test_a_consistency_check_gives_the_sampler_the_physics_frames_it_scores_against(tiny_world, mode):
    """The frames a clip is generated from are the physics' own at the places they are
    kept: extend from the clip's first frames, extend_backward from its last (the
    sampler keeps an input's last frames to extend and its first to extend backward)."""
    sampler = Sampler(str(tiny_world), precision="fp32")
    physics = Physics("pybullet", sampler.resolution, "test")
    seen = []
    run, generate = physics.run, sampler.generate

    def record_run(spec):
        out = run(spec)
        seen.append(out[0]["frames"])
        return out

    def record_generate(*args, **kwargs):
        frames, given = generate(*args, **kwargs)
        seen.append((frames, given))
        return frames, given

    physics.run, sampler.generate = record_run, record_generate
    cfg = AdherenceConfig(checkpoint=str(tiny_world), samples=1, frames=6, context=2, steps=1)
    try:
        out = check_consistency(mode, cfg, sampler, physics)
    finally:
        physics.close()
    true, (frames, given) = seen
    expected = {"extend": [0, 1], "extend_backward": [4, 5], "connect": [0, 1, 4, 5]}[mode]
    assert np.flatnonzero(given).tolist() == expected
    assert np.array_equal(frames[given], true[given])  # the physics' frames, where they belong
    assert out["samples"][0]["scene"] == "bouncing_balls" and out["count_violation_rate"] is not None
