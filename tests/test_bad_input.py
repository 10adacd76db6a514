"""Every bad input gets a clear error naming the key or file, and loses nothing; metrics
cannot flatter a model that loses its objects (issue: "Every bad input a clear error")."""

import io
import os
import re
import subprocess
import sys
import zipfile

import gymnasium
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import worldsim  # noqa: F401  (registers the environments)
from worldsim.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoints,
    world_checkpoint,
)
from worldsim.data.episode import EpisodeError, load_episode, save_episode
from worldsim.data.generation import StreamConfig, generate_stream
from worldsim.data.manifest import QUARANTINE, append_manifest, compact_manifest, read_manifest
from worldsim.evaluate.metrics import lost_penalty_px, rollout_metrics
from worldsim.models.world import load_world
from worldsim.runtime import busy_cpus, choose_threads
from worldsim.sampler import SampleConfig, SampleError, Sampler
from worldsim.sim.engines import EngineConfig
from worldsim.sim.scenes import ConfigError, scene_config
from worldsim.sim.scenes.base import parse_resolution


def cli(module, *args, cwd):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def stream(n=2, frames=6, **kw):
    return StreamConfig(scene=scene_config("bouncing_balls"), engine=EngineConfig("pybullet"), episodes=n, frames=frames, resolution=(32, 32), **kw)


# -- generate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arg, expected", [
    ("scene.gravity.normal=[nan,nan]", "scene.gravity.normal holds nan"),
    ("episodes=lots", "episodes must be a whole number, got 'lots'"),
    ("scene.speed=[1,inf]", "scene.speed must be a range of two finite numbers, got [1, inf]"),
    ("resolution=64x64x3", "resolution must be an integer or HxW such as 48x64, got '64x64x3'"),
    ("resolution=100000", "resolution 100000x100000 is beyond 4096 pixels"),
])
def test_generate_refuses_bad_settings_naming_the_key(tmp_path, arg, expected):
    r = cli("worldsim.generate", arg, f"out={tmp_path / 'd'}", "episodes=1" if "episodes" not in arg else "frames=4", "progress=false", cwd=tmp_path)
    assert r.returncode != 0
    assert expected in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("module", ["worldsim.generate", "worldsim.sample", "worldsim.compare", "worldsim.train"])
def test_out_as_an_existing_file_is_refused_before_anything_runs(tmp_path, module):
    (tmp_path / "afile").write_text("keep me")
    r = cli(module, f"out={tmp_path / 'afile'}", cwd=tmp_path)
    assert r.returncode != 0 and f"out={tmp_path / 'afile'} is a file, not a folder" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_stream_too_large_for_memory_is_refused_first_and_leaves_the_folder_usable(tmp_path, monkeypatch):
    import worldsim.data.generation as generation

    monkeypatch.setattr(generation, "memory_available", lambda: 2**20)  # 1 MiB
    with pytest.raises(ConfigError, match="need about .* GiB with workers=1, and this machine has 0.0 GiB available"):
        generate_stream(stream(frames=400), tmp_path, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / ".worldsim").exists()  # nothing recorded: no config to refuse the folder with
    rows = generate_stream(stream(frames=4), tmp_path, progress=False)  # another config in the same folder works
    assert len(rows) == 2


def test_a_resumed_run_regenerates_a_truncated_episode_and_says_so(tmp_path, caplog):
    generate_stream(stream(n=3), tmp_path, progress=False)
    path = tmp_path / stream().episode_path(1)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # listed in the manifest, cut short
    with caplog.at_level("WARNING"):
        rows = generate_stream(stream(n=3), tmp_path, progress=False)
    assert "not whole" in caplog.text and "regenerating" in caplog.text
    assert path.read_bytes() == good  # remade, byte for byte
    assert [r["index"] for r in rows] == [0, 1, 2]
    load_episode(path)


def test_a_manifest_rewrite_never_drops_a_line_it_cannot_parse(tmp_path):
    generate_stream(stream(n=2), tmp_path, progress=False)
    manifest = tmp_path / "manifest.jsonl"
    with open(manifest, "a") as f:
        f.write('{"id": "another-stream-000000", "broken": \n')  # another stream's line, malformed
    with pytest.warns(UserWarning, match="moved to .*manifest.quarantine.jsonl"):
        compact_manifest(tmp_path)
    assert '"id": "another-stream-000000", "broken":' in (tmp_path / QUARANTINE).read_text()
    assert len(read_manifest(tmp_path)) == 2
    append_manifest(tmp_path, [])  # nothing lost on the next append either
    assert len(read_manifest(tmp_path)) == 2


# -- episodes ---------------------------------------------------------------------------------------
def _episode_arrays(t=3, n=1, h=8, w=8):
    return {
        "frames": np.zeros((t, h, w, 3), np.uint8), "segmentation": np.zeros((t, h, w), np.uint8), "actions": np.zeros((t, 2), np.float32),
        "positions": np.zeros((t, n, 2), np.float32), "velocities": np.zeros((t, n, 2), np.float32), "angles": np.zeros((t, n), np.float32),
        "visible_pixels": np.zeros((t, n), np.int32),
    }


def _write_raw(path, arrays, meta_bytes):
    buf = io.BytesIO()
    np.savez(buf, **arrays, meta=np.frombuffer(meta_bytes, np.uint8))
    path.write_bytes(buf.getvalue())


def test_load_episode_refuses_a_null_meta_and_nan_states(tmp_path):
    _write_raw(tmp_path / "a.npz", _episode_arrays(), b"null")
    with pytest.raises(EpisodeError, match="a.npz: the meta record must be a JSON object"):
        load_episode(tmp_path / "a.npz")
    arrays = _episode_arrays()
    arrays["positions"][:] = np.nan
    _write_raw(tmp_path / "b.npz", arrays, b'{"id": "x"}')
    with pytest.raises(EpisodeError, match="b.npz: positions holds 6 NaN or infinite values"):
        load_episode(tmp_path / "b.npz")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_episode_files_raise_only_episode_errors(tmp_path, data):
    path = tmp_path / "fuzz.npz"
    save_episode(path, _episode_arrays(), {"id": "x"})
    raw = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "garbage", "meta"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[i] ^= 0xFF
    elif kind == "garbage":
        raw = bytearray(data.draw(st.binary(max_size=400)))
    else:
        arrays = _episode_arrays()
        _write_raw(path, arrays, data.draw(st.binary(max_size=60)))
        raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw))
    try:
        load_episode(path)
    except EpisodeError as e:
        assert "fuzz.npz" in str(e)


# -- checkpoints from outside --------------------------------------------------------------------
@pytest.fixture
def world_file(tiny_world, tmp_path):
    """A copy of tiny_world's checkpoint that a test may edit: (payload, path)."""
    payload = load_checkpoint(tiny_world, kind="dit")
    payload.pop("path")
    return payload, tmp_path / "edited" / "step_0000002.pt"


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.update(config={}), "its config lacks ['dit', 'text', 'ae', 'data']"),
    (lambda p: p["config"]["dit"].update(wings=3), "config.dit has unknown keys ['wings']"),
    (lambda p: p["config"]["dit"].update(dim=200000), "config.dit.dim = 200000 is outside (0, 8192]"),
    (lambda p: p["config"]["dit"].update(depth=120, dim=8192, heads=64), "parameters (over 4e+09); refusing to build it"),
    (lambda p: p["config"]["data"].update(resolution="big"), "config.data.resolution must be [H, W]"),
    (lambda p: [p["ema"].pop(k) for k in list(p["ema"])[::2]], "weights missing"),
    (lambda p: next(v.fill_(float("nan")) for k, v in p["ema"].items() if v.is_floating_point()), "hold NaN or inf"),
])
def test_a_checkpoint_from_outside_is_validated_before_anything_is_built(world_file, edit, expected):
    payload, path = world_file
    edit(payload)
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match=re.escape(expected)) as e:
        load_world(str(path))
    assert str(path) in str(e.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["dit", "text", "ae", "data", "flow", "dim", "depth",
                                                                                                         "heads", "patch", "resolution", "x"]),
                                                                                        inner, max_size=5), max_leaves=12))
def test_fuzzed_checkpoint_configs_raise_only_checkpoint_errors(world_file, config):
    payload, path = world_file
    payload["config"] = config
    save_checkpoint(path, payload)
    try:
        load_world(str(path))
    except CheckpointError as e:
        assert str(path) in str(e)


def test_an_empty_checkpoint_is_refused_not_replaced_by_the_bundled_model():
    with pytest.raises(CheckpointError, match="checkpoint is empty"):
        world_checkpoint("")


class Pickled:
    """An object a checkpoint must not make worldsim unpickle."""


def test_a_checkpoint_error_never_suggests_unpickling(tmp_path):
    torch.save({"model": Pickled(), "config": {}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(e.value) and "never unpickles" in str(e.value)


def test_training_resumes_from_the_newest_intact_checkpoint(tiny_data, tmp_path, caplog):
    from worldsim.training.loop import OptimConfig, TrainConfig, train

    def cfg(steps):
        return TrainConfig(stage="dit", data=str(tiny_data), out=str(tmp_path), max_steps=steps, batch_size=2, clip_frames=4, num_workers=0,
                           checkpoint_every=2, sample_every=1000, optim=OptimConfig(lr=1e-3, warmup_steps=1),
                           stage_options={"model": {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 8, 8]},
                                          "text": {"dim": 16, "depth": 1, "heads": 2}, "autoencoder": "identity"})

    train(cfg(4))
    latest = latest_checkpoint(tmp_path)
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    with caplog.at_level("WARNING"):
        train(cfg(6))
    assert "step_0000004.pt does not load" in caplog.text and "resuming from the checkpoint before it" in caplog.text
    assert (tmp_path / "checkpoints" / "broken" / "step_0000004.pt").is_file()  # kept aside
    assert load_checkpoint(tmp_path)["step"] == 6



def test_a_run_of_another_stage_is_refused_and_kept(tmp_path):
    """Resuming a folder that holds another stage's checkpoints (stage= left out, say)
    stops with the way out, and moves none of them aside."""
    from worldsim.training.loop import TrainingError, resume_state

    for step in (2, 4):
        save_checkpoint(checkpoint_path(tmp_path, step), {"kind": "dit", "step": step, "model": {}, "config": {}})
    with pytest.raises(TrainingError, match=r"another stage's run.*stage=autoencoder was asked for"):
        resume_state(tmp_path, "autoencoder")
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_0000002.pt", "step_0000004.pt"]
    assert not (tmp_path / "checkpoints" / "broken").exists()
    assert resume_state(tmp_path, "dit")["step"] == 4


def test_checkpoints_moved_aside_never_replace_one_another(tmp_path):
    """A broken checkpoint goes to checkpoints/broken/ under a name of its own, also
    when one of that name was moved there before; other ranks only skip it."""
    from worldsim.training.loop import resume_state

    save_checkpoint(checkpoint_path(tmp_path, 2), {"kind": "dit", "step": 2, "model": {}, "config": {}})
    for _ in range(2):
        checkpoint_path(tmp_path, 4).write_bytes(b"truncated")
        assert resume_state(tmp_path, "dit", move_broken=False)["step"] == 2 and checkpoint_path(tmp_path, 4).exists()
        assert resume_state(tmp_path, "dit")["step"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "broken").iterdir()) == ["step_0000004.1.pt", "step_0000004.pt"]

# -- sampling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, expected", [
    ({"mode": "v2v"}, "unknown mode 'v2v'"),
    ({"mode": "edit", "input": "x.npz", "strength": 5.0}, "strength must be in \\[0, 1\\]"),
    ({"mode": "i2v"}, "needs 1 input"),
    ({"mode": "i2v", "input": "missing.png"}, "no input file at missing.png"),
    ({"mode": "t2v", "prompt": ""}, "needs a prompt"),
])
def test_sample_requests_are_checked_before_the_model_loads(tmp_path, monkeypatch, kw, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.npz").write_bytes(b"")
    monkeypatch.setattr(Sampler, "__post_init__", lambda self: pytest.fail("the model was loaded"))
    with pytest.raises(SampleError, match=expected):
        SampleConfig(**{"prompt": "a ball", **kw})


def test_sample_out_as_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(SampleError, match="is a file, not a folder"):
        SampleConfig(prompt="a ball", out=str(tmp_path / "f"))


# -- the environments ---------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [123, "", "   "])
def test_learned_world_refuses_a_prompt_that_is_not_a_description(tiny_world, prompt):
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    with pytest.raises(ValueError, match="options\\['prompt'\\] must be a description"):
        env.reset(seed=0, options={"prompt": prompt})
    env.close()


def test_stepping_a_closed_world_says_it_is_closed(tiny_world):
    for env in (gymnasium.make("PhysicsWorld-v0"), gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)):
        env.reset(seed=0)
        env.close()
        with pytest.raises(gymnasium.error.ClosedEnvironmentError, match="is closed; make a new one"):
            env.step(np.zeros(2, np.float32))


def test_physics_world_refuses_the_learned_worlds_options():
    env = gymnasium.make("PhysicsWorld-v0")
    with pytest.raises(ValueError, match="take only 'scene'.*'prompt' and 'frames' are LearnedWorld-v0's"):
        env.reset(seed=0, options={"prompt": "a ball", "frames": None})
    env.close()


def test_actions_take_any_real_numbers_and_refuse_the_rest():
    env = gymnasium.make("PhysicsWorld-v0", scene="push")
    env.reset(seed=0)
    a, *_ = env.step(np.array([5, -7]))  # integers: taken, clipped into the box (README: Using a model)
    b, *_ = env.step(np.array([1.0, -1.0], np.float32))
    assert a.shape == b.shape
    for bad in (np.array([True, False]), np.array(["a", "b"])):
        with pytest.raises(ValueError, match="real numbers of shape \\(2,\\)"):
            env.step(bad)
    env.close()


def test_human_rendering_without_a_screen_says_so(monkeypatch):
    import matplotlib

    monkeypatch.setattr(matplotlib, "get_backend", lambda: "agg")
    env = gymnasium.make("PhysicsWorld-v0", render_mode="human")
    with pytest.warns(UserWarning, match="render_mode='human' has no screen to draw on here"):
        env.reset(seed=0)
    env.close()


def test_parse_resolution_is_strict():
    assert parse_resolution("48x64") == (48, 64) and parse_resolution(64) == (64, 64)
    for bad in ("64x64x3", "64x", True, [64.5, 64], "sixty"):
        with pytest.raises(ConfigError, match="resolution must be"):
            parse_resolution(bad)


# -- metrics that cannot flatter -----------------------------------------------------------------
def test_a_lost_object_is_charged_not_averaged_away():
    truth = np.zeros((3, 32, 32, 3), np.uint8)
    truth[:, 10:14, 10:14] = (230, 30, 30)  # a red object, still
    pred = truth.copy()
    pred[1:] = 0  # lost after the first step
    m = rollout_metrics(truth, pred, np.array([[230, 30, 30]]), prev_truth=truth[0])
    assert np.isnan(m["position_error_px"][1:]).all()  # the plain error has nothing to average
    np.testing.assert_allclose(m["position_error_charged_px"], [0.0, lost_penalty_px(32, 32), lost_penalty_px(32, 32)])
    np.testing.assert_allclose(m["objects_lost_rate"], [0.0, 1.0, 1.0])


def test_the_demo_summary_explains_its_columns():
    from worldsim.evaluate.demo import summary_table

    curves = {"position_error_charged_px": [1.0] * 16, "objects_lost_rate": [0.0] * 16, "psnr": [30.0] * 16, "count_violation_rate": [0.0] * 16}
    text = summary_table({"bouncing_balls": {"model": curves, "baselines": {"copy_last": curves}}}, 16)
    assert "count viol: share of (step, object) pairs" in text and "score: 0-100" in text and "charged half the frame's diagonal" in text


# -- shared machines ------------------------------------------------------------------------------
def test_threads_leave_a_busy_machines_cores_to_it(monkeypatch, capsys):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr("worldsim.runtime.busy_cpus", lambda: 1.0)
        monkeypatch.setattr("worldsim.runtime.cpu_count", lambda: 2)
        torch.set_num_threads(2)
        assert choose_threads(None) == 1
        assert "this machine is busy (other processes use 1.0 of 2 CPUs): running on 1 of 2 threads" in capsys.readouterr().err
        assert choose_threads(2) == 2  # asked for: given, whatever the load
        monkeypatch.setattr("worldsim.runtime.busy_cpus", lambda: 0.1)
        assert choose_threads(None) == 2 and capsys.readouterr().err == ""
    finally:
        torch.set_num_threads(before)


def test_busy_cpus_counts_the_machine_less_this_process(monkeypatch):
    """Over the interval: the machine busy 0.5 CPU-s, this process 0.1 of them, 0.2 s of
    wall time: other processes keep 2 CPUs busy."""
    import worldsim.runtime as runtime

    assert 0.0 <= busy_cpus(0.05) <= (os.cpu_count() or 1) + 1  # a real reading first: a sane number
    from itertools import chain, repeat

    machine, own, wall = (chain(v, repeat(v[-1])) for v in ([10.0, 10.5], [3.0, 3.1], [100.0, 100.2]))
    monkeypatch.setattr(runtime, "_machine_busy_seconds", lambda: next(machine))
    monkeypatch.setattr(runtime.time, "process_time", lambda: next(own))
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    assert busy_cpus() == pytest.approx(2.0)


def test_busy_cpus_falls_back_to_the_load_average_without_proc_stat(monkeypatch):
    import worldsim.runtime as runtime

    def missing():
        raise OSError("no /proc/stat")

    monkeypatch.setattr(runtime, "_machine_busy_seconds", missing)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert busy_cpus() == 1.5


def test_an_episode_file_cut_short_is_told_from_a_whole_one(tmp_path):
    from worldsim.data.generation import episode_intact

    save_episode(tmp_path / "e.npz", _episode_arrays(), {"id": "x"})
    assert episode_intact(tmp_path / "e.npz")
    raw = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "e.npz").write_bytes(raw[:-10])
    assert not episode_intact(tmp_path / "e.npz")
    with zipfile.ZipFile(tmp_path / "f.npz", "w") as z:
        z.writestr("frames.npy", b"")
    assert not episode_intact(tmp_path / "f.npz")


def test_a_mistake_found_in_a_dataloader_worker_is_told_without_its_traceback():
    from worldsim.cli import user_message

    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise EpisodeError("episode x.npz is truncated; regenerate it")

    with pytest.raises(EpisodeError) as e:
        next(iter(torch.utils.data.DataLoader(Bad(), num_workers=1)))
    assert "Traceback" in str(e.value)  # what PyTorch gives back
    assert user_message(e.value) == "episode x.npz is truncated; regenerate it"
    assert user_message(ValueError("plain")) == "plain"
