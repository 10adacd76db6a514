"""The evaluation: the detector, per-step metrics, scores, and the compare CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from worldsim.evaluate.detect import connected_components, detect_objects
from worldsim.evaluate.metrics import psnr, rollout_metrics, ssim
from worldsim.evaluate.report import score
from worldsim.sim import palette

RED, BLUE = (230, 30, 30), (40, 90, 255)
COLOURS = np.array([RED, BLUE])


def disc(frame, cx, cy, r, colour):
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = colour


def moving(T=10, vx=1.5, size=48):
    """Two discs; the red one moves right vx px per frame."""
    frames = np.zeros((T, size, size, 3), np.uint8)
    for t in range(T):
        disc(frames[t], 10 + vx * t, 14, 4, RED)
        disc(frames[t], 30, 34, 5, BLUE)
    return frames


def test_the_detector_finds_known_positions():
    frames = moving()
    d = detect_objects(frames, COLOURS)
    assert d["present"].all()
    np.testing.assert_allclose(d["centroids"][:, 0, 0], 10 + 1.5 * np.arange(10), atol=0.2)
    np.testing.assert_allclose(d["centroids"][:, 1], np.tile([30.0, 34.0], (10, 1)), atol=0.1)
    frames[3, ...] = 0
    d = detect_objects(frames, COLOURS)
    assert not d["present"][3].any() and np.isnan(d["centroids"][3]).all()
    mask = np.zeros((6, 6), bool)
    mask[0, :2] = mask[4:, 4:] = mask[2, 2] = True
    labels, n = connected_components(mask)
    assert n == 3 and labels[0, 0] == 1 and labels[2, 2] == 2 and labels[5, 5] == 3


def test_a_screen_is_never_read_as_an_object():
    """A dark grey screen is 81 from brown in RGB, nearer than the black background:
    told the scene's fixtures, the detector never reads it as a brown ball (only the
    ball's own pixels count, and a ball wholly behind the screen is absent); told
    nothing, it would. A grey asked for is still found."""
    from worldsim.evaluate.detect import fixture_colours
    from worldsim.sim.spec import FixtureSpec

    brown = palette.rgb("brown")
    screens = [FixtureSpec(name="screen", kind="occluder", position=(0.0, 1.0), size=(0.2, 0.5), colour="dark grey")]
    dark = fixture_colours(screens)
    assert dark.tolist() == [list(palette.OCCLUDER_COLOURS["dark grey"])] and fixture_colours([{"colour": "dark grey"}]).tolist() == dark.tolist()
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[:, :, 8:] = palette.OCCLUDER_COLOURS["dark grey"]  # the screen
    frames[0, 2:4, 5:8] = brown  # the ball's visible part, left of the screen
    d = detect_objects(frames, np.array([brown]), others=dark)
    assert d["areas"][:, 0].tolist() == [6, 0] and not d["present"][1, 0]
    assert np.allclose(d["centroids"][0, 0], [6.5, 3.0])
    assert detect_objects(frames, np.array([brown]))["areas"][:, 0].tolist() == [134, 128]  # told nothing: the screen is "brown"
    assert detect_objects(frames, np.vstack([brown, dark]), others=dark)["areas"][0].tolist() == [6, 128]


def test_identical_rollouts_score_perfectly():
    frames = moving()
    m = rollout_metrics(frames[1:], frames[1:].copy(), COLOURS, prev_truth=frames[0])
    assert np.all(m["position_error_px"] == 0) and np.all(m["velocity_error"] == 0)
    assert np.all(m["count_violation_rate"] == 0) and np.all(m["ssim"] > 0.999) and np.all(m["psnr"] >= 99)
    assert m["spatial_iou"] == m["spatiotemporal_iou"] == m["weighted_spatial_iou"] == 1.0
    physical = {k: list(v) if isinstance(v, np.ndarray) else v for k, v in m.items()}
    assert score(physical, physical)["score"] == 100.0


def test_copy_last_scores_as_expected_on_a_known_motion():
    frames = moving(vx=1.5)
    truth, copy = frames[1:], np.repeat(frames[:1], 9, axis=0)
    m = rollout_metrics(truth, copy, COLOURS, prev_truth=frames[0])
    np.testing.assert_allclose(m["position_error_px"], [1.5 * s / 2 for s in range(1, 10)], atol=0.15)  # red off by 1.5 s, blue 0
    np.testing.assert_allclose(m["velocity_error"], [1.5 / 2] * 9, atol=0.15)  # red's 1.5 px/frame missing, averaged with blue
    assert np.all(m["count_violation_rate"] == 0)
    assert np.all(np.diff(m["psnr"][:4]) <= 0.5)  # it only gets worse as the truth moves away


def test_count_violations_are_caught_on_doctored_rollouts():
    frames = moving()
    painted_out = frames[1:].copy()
    painted_out[4:, 25:40, 24:40] = 0  # the blue disc is gone from step 5
    m = rollout_metrics(frames[1:], painted_out, COLOURS, prev_truth=frames[0])
    assert np.all(m["count_violation_rate"][:4] == 0) and np.all(m["count_violation_rate"][4:] == 0.5)
    truth = frames[1:].copy()
    truth[:, 25:40, 24:40] = 0  # the blue disc is not in the truth...
    painted_in = frames[1:].copy()  # ...but the rollout has it: spurious
    m = rollout_metrics(truth, painted_in, COLOURS, prev_truth=truth[0])
    assert np.all(m["count_violation_rate"] == 0.5)


def test_pixel_metrics():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = a.copy()
    b[:, :8] = 255
    assert np.allclose(psnr(a, b), 10 * np.log10(1 / 0.5))
    assert np.all(ssim(a, a) > 0.999) and np.all(ssim(a, b) < 0.6)


def test_the_compare_cli_writes_every_file_with_the_documented_keys(tiny_world, tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run(
        [sys.executable, "-m", "worldsim.compare", f"checkpoint={tiny_world}", "scene=bouncing_balls", "engine=pybullet",
         "episodes=2", "horizon=4", "context=2", "seed=3", f"out={out}", "videos=1"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("metrics.json", "episodes.jsonl", "report.md", "horizon.png", "compare.mp4"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["baselines"]) == {"copy_last", "constant_velocity", "autoencoder", "physical_variance", "other_engine"}
    for key in ("position_error_px", "velocity_error", "count_violation_rate", "psnr", "ssim"):
        assert len(m["model"][key]) == 4
        for b in m["baselines"].values():
            assert len(b[key]) == 4
    assert {"model", "baselines"} <= set(m["summary"]) and "reader_error_px" in m and "score" in m["scores"]["model"]
    assert m["reader_error_px"] < 0.3
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "model" in rows[0]
    assert rows[0]["scene"] == "bouncing_balls" and "ball" in rows[0]["prompt"]  # the prompt the model was given, not the scene's name
    # autoencoder=identity: its reconstruction is the truth itself
    assert all(v == 0 for v in m["baselines"]["autoencoder"]["position_error_px"])


def test_compare_refuses_bad_settings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "worldsim.compare", "engine=havok", "checkpoint=x", f"out={tmp_path}"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "pybullet" in r.stderr and "mujoco" in r.stderr  # the valid choices


def test_a_scene_left_out_of_a_mean_is_named():
    """A scene whose figure is undefined (every object lost) drops out of that mean
    over scenes; the headline names it instead of hiding it."""
    from worldsim.evaluate.runs import fidelity_headline

    def scene(err):
        return {"one_step": {"objects_lost": 0.0, "position_error_px": 1.0, "position_error_px_copy_last": 2.0, "latent_mse": 0.1,
                             "latent_mse_copy_last": 0.2},
                "autoregressive": {"position_error_px": {"at_1": err, "at_4": err, "at_16": err},
                                   "objects_lost": {"at_1": 0.0, "at_4": 0.0, "at_16": 1.0 if err is None else 0.0},
                                   "objects_lost_mean": 0.5 if err is None else 0.0, "count_violation_rate": 0.0, "break_agreement": None}}

    row = fidelity_headline({"scenes": {"a": scene(2.0), "b": scene(None)}, "gates": {"one_step": True, "autoregressive": False}})
    assert row["ar_err_px@16"] == 2.0 and row["ar_lost@16"] == 0.5
    assert row["undefined"] == {"ar_err_px@1": ["b"], "ar_err_px@4": ["b"], "ar_err_px@16": ["b"], "tf_object_mse": ["a", "b"],
                                "tf_object_mse_copy": ["a", "b"]}


def test_probing_a_run_without_checkpoints_says_so(tmp_path):
    from worldsim.evaluate.runs import Evaluation, judge_fidelity
    from worldsim.training.loop import TrainConfig

    with pytest.raises(ValueError, match="holds no checkpoint to probe"):
        judge_fidelity(TrainConfig(stage="dit", data=str(tmp_path), out=str(tmp_path / "run")), Evaluation(kind="fidelity"))


def test_a_reader_error_with_nothing_to_measure_is_undefined_not_perfect():
    from worldsim.evaluate.compare import reader_error

    assert reader_error([]) is None


def test_a_score_part_the_model_leaves_undefined_counts_zero():
    """A model that never finds an object twice running has no velocity error: that part
    counts 0 (named), never drops out of the mean and so raises the score."""
    physical = {"position_error_charged_px": [1.0, 1.0], "velocity_error": [0.2, 0.2], "psnr": [40.0, 40.0]}
    lost = {"position_error_charged_px": [45.0, 45.0], "velocity_error": [None, None], "psnr": [20.0, 20.0]}
    s = score(lost, physical)
    assert s["parts"]["velocity_error"] == 0.0 and s["undefined"] == ["velocity_error"]
    assert s["score"] == round((s["parts"]["position_error_charged_px"] + 0.0 + 50.0) / 3, 2)
    assert "undefined" not in score(physical, physical) and score(physical, physical)["score"] == 100.0
