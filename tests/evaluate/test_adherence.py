"""Prompt adherence (issue 8): the readers on physics renderings, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from worldsim.evaluate.adherence import AdherenceConfig, Physics, broke, check_consistency, colours_seen, loop_seam, rebound_px
from worldsim.evaluate.adherence import run_adherence as run
from worldsim.sampler import Sampler


@pytest.fixture(scope="module")
def physics():
    p = Physics("pybullet", (64, 64), "test")
    yield p
    p.close()


def test_colours_seen_are_the_specs_colours(physics):
    for scene, seed in (("bouncing_balls", 0), ("occlusion", 1), ("push", 2)):
        spec = physics.spec(scene, seed, 16)
        frames = physics.run(spec)[0]["frames"]
        assert colours_seen(frames) == {o.colour for o in spec.objects}, scene
    assert colours_seen(np.zeros((4, 64, 64, 3), np.uint8)) == set()


def test_the_break_reader_tells_fragile_from_sturdy_panes(physics):
    spec = physics.spec("shatter", 3, 24)
    pane = next(o for o in spec.objects if o.shape == "pane")
    results = {}
    for strength in (0.5, 100.0):
        s = dataclasses.replace(spec, objects=tuple(
            dataclasses.replace(o, pane=dataclasses.replace(o.pane, strength=strength)) if o is pane else o for o in spec.objects))
        arrays, events = physics.run(s)
        results[strength] = (broke(arrays["frames"]), any(e["type"] == "break" for e in events))
    assert results[0.5] == (True, True) and results[100.0] == (False, False)


def test_rebound_height_follows_restitution(physics):
    spec = physics.spec("bouncing_balls", 4, 32, num_balls=[1, 1], ood={}, gravity={"high": [18.0, 18.0]})
    ball = spec.objects[0]
    ball = dataclasses.replace(ball, position=(1.0, 1.5), velocity=(0.0, 0.0))
    heights = {}
    for e in (0.95, 0.15):
        frames = physics.run(dataclasses.replace(spec, objects=(dataclasses.replace(ball, restitution=e),)))[0]["frames"]
        heights[e] = rebound_px(frames, ball.colour)
    assert heights[0.95] > 10 and heights[0.15] < 3, heights
    assert rebound_px(np.zeros((4, 64, 64, 3), np.uint8), ball.colour) is None


def test_the_loop_seam_counts_objects_it_cannot_measure():
    p = np.full((5, 3, 2), np.nan)
    p[:, 0] = [[10, 10], [12, 10], [14, 10], [16, 10], [18, 10]]  # steps of 2 px, a seam of 8
    p[0, 1], p[4, 1] = [30, 30], [31, 30]  # seen at the seam only: no step to compare with
    # object 2 never found
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "All-NaN slice" warnings
        r = loop_seam(p)
    assert r["seam_error_px"] == pytest.approx(6.0) and r["typical_step_px"] == pytest.approx(2.0)
    assert (r["objects"], r["objects_unmeasured"]) == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lost = loop_seam(np.full((4, 2, 2), np.nan))
    assert lost["seam_error_px"] is None and lost["objects_unmeasured"] == 2


def test_the_cli_writes_every_check(tiny_world, tmp_path):
    cfg = AdherenceConfig(checkpoint=str(tiny_world), samples=1, frames=6, context=2, steps=1, out=str(tmp_path), precision="fp32")
    result = run(cfg)
    saved = json.loads((tmp_path / "adherence.json").read_text())
    assert set(saved) == {"config", *cfg.checks} and saved["t2v"]["physics_adherence"] == 1.0
    assert result["pane_strength"]["physics_gap_points"] is not None
    assert "loop seam error" in (tmp_path / "adherence.md").read_text()
    assert saved["loop"]["objects"] >= 1 and 0 <= saved["loop"]["objects_unmeasured"] <= saved["loop"]["objects"]
    with pytest.raises(ValueError, match="unknown checks"):
        AdherenceConfig(checks=["t2v", "vibes"])
    with pytest.raises(ValueError, match="context"):
        AdherenceConfig(frames=4, context=2)


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
