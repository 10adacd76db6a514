"""python -m worldsim.generate: the CLI, determinism across workers, resume after a
kill, and refusing to mix configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldsim.data.episode import load_episode
from worldsim.data.generation import StreamConfig, generate_stream
from worldsim.data.manifest import REQUIRED_KEYS, read_manifest
from worldsim.sim.engines import EngineConfig
from worldsim.sim.scenes import ConfigError, scene_config

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd, check=True, **kw):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "-m", "worldsim.generate", *args], cwd=cwd, capture_output=True, text=True, env=env, check=check, **kw
    )


def stream(n=4, frames=6, engine="pybullet", **kw):
    return StreamConfig(scene=scene_config("bouncing_balls"), engine=EngineConfig(engine), episodes=n, frames=frames, resolution=(32, 32), **kw)


def test_cli_smoke_from_another_folder(tmp_path):
    out = tmp_path / "data"
    r = cli("engine=mujoco", "episodes=3", "frames=6", "resolution=32x48", f"out={out}", "progress=false", cwd=tmp_path)
    assert "3 episodes" in r.stderr + r.stdout
    rows = read_manifest(out)
    assert [r["id"] for r in rows] == [f"bouncing_balls-mujoco-train-{i:06d}" for i in range(3)]
    for row in rows:
        assert set(REQUIRED_KEYS) <= set(row)
        assert row["resolution"] == [32, 48] and row["num_frames"] == 6 and row["engine"] == "mujoco"
        ep = load_episode(out / row["path"])
        assert ep["frames"].shape == (6, 32, 48, 3)
        assert ep["meta"] == row
    assert (out / "preview.mp4").stat().st_size > 0
    assert not list(out.rglob("*.tmp"))


def test_output_is_byte_identical_whatever_the_workers(tmp_path):
    a = generate_stream(stream(6), tmp_path / "w1", workers=1, progress=False)
    b = generate_stream(stream(6), tmp_path / "w2", workers=2, progress=False)
    assert a == b
    for row in a:
        assert (tmp_path / "w1" / row["path"]).read_bytes() == (tmp_path / "w2" / row["path"]).read_bytes()
    assert (tmp_path / "w1/manifest.jsonl").read_bytes() == (tmp_path / "w2/manifest.jsonl").read_bytes()


def test_shards_together_make_the_same_stream(tmp_path):
    """Two shards through Hydra's multirun (-m shard=0,1 shards=2) write the same
    folder, byte for byte, as one process."""
    args = ("episodes=5", "frames=8", "resolution=32", "progress=false", "preview=false")
    cli(*args, f"out={tmp_path / 'one'}", cwd=tmp_path)
    cli("-m", *args, "shard=0,1", "shards=2", f"out={tmp_path / 'sharded'}", cwd=tmp_path)
    one, sharded = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "sharded")
    assert len(one) == 5 and one == sharded
    for row in one:
        assert (tmp_path / "one" / row["path"]).read_bytes() == (tmp_path / "sharded" / row["path"]).read_bytes()
    assert (tmp_path / "one/manifest.jsonl").read_bytes() == (tmp_path / "sharded/manifest.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"shard must be in \[0, shards\)"):
        generate_stream(stream(5), tmp_path / "bad", shard=2, shards=2, progress=False)


def test_killed_run_resumes_without_redoing_or_duplicating(tmp_path):
    out = tmp_path / "data"
    args = ("episodes=60", "frames=16", "resolution=32", f"out={out}", "progress=false", "preview=false")
    proc = subprocess.Popen([sys.executable, "-m", "worldsim.generate", *args], cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(read_manifest(out)) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["id"]: (out / r["path"]).stat().st_mtime_ns for r in read_manifest(out)}
    assert 5 <= len(before) < 60, "the run was not interrupted mid-way"
    for row in read_manifest(out):  # the manifest never names a file that is not there
        assert (out / row["path"]).is_file()
    cli(*args, cwd=tmp_path)
    rows = read_manifest(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == 60 == len(set(ids))
    assert all((out / r["path"]).stat().st_mtime_ns == before[r["id"]] for r in rows if r["id"] in before)  # not redone
    assert not list(out.rglob("*.tmp"))
    clean = generate_stream(stream(60, frames=16), tmp_path / "clean", progress=False)
    assert rows == clean
    for r in rows[::7]:
        assert (out / r["path"]).read_bytes() == (tmp_path / "clean" / r["path"]).read_bytes()


def test_an_episode_on_disk_but_missing_from_the_manifest_is_recovered(tmp_path):
    rows = generate_stream(stream(3), tmp_path, progress=False)
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines[:1]) + "\n")  # as if killed before appending
    mtime = (tmp_path / rows[2]["path"]).stat().st_mtime_ns
    assert generate_stream(stream(3), tmp_path, progress=False) == rows
    assert (tmp_path / rows[2]["path"]).stat().st_mtime_ns == mtime


def test_a_folder_made_with_another_config_is_refused(tmp_path):
    generate_stream(stream(2, frames=6), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="frames was 6, now 8"):
        generate_stream(stream(2, frames=8), tmp_path, progress=False)
    # more episodes of the same config extend the stream; another split is another stream
    assert len(generate_stream(stream(3, frames=6), tmp_path, progress=False)) == 3
    assert len(generate_stream(stream(1, frames=8, split="test"), tmp_path, progress=False)) == 1
    r = cli("episodes=2", "frames=7", "resolution=32", f"out={tmp_path}", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "another config" in r.stderr


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("scene=juggling", "bouncing_balls"),  # Hydra lists the options of the group
        ("engine=bullet", "pybullet"),
        ("frames=0", "frames must be at least 1"),
        ("episodes=-1", "episodes must be >= 0"),
        ("seed=-1", "seed must be >= 0"),
        ("scene.radius=[0.1,3.0]", "scene.radius"),
        ("resolution=64by64", "resolution"),
    ],
)
def test_bad_input_is_refused_with_the_valid_choices(tmp_path, arg, expected):
    r = cli(f"out={tmp_path / 'x'}", "episodes=1", "frames=2", arg, cwd=tmp_path, check=False)
    assert r.returncode != 0
    assert expected in r.stderr, r.stderr[-2000:]


def test_episodes_agree_with_their_manifest_lines(tmp_path):
    rows = generate_stream(stream(4, frames=10), tmp_path, progress=False)
    for row in rows:
        ep = load_episode(tmp_path / row["path"])
        n = row["num_objects"]
        assert ep["positions"].shape == (10, n, 2)
        assert np.all(ep["actions"] == 0)  # no agent in this scene
        for e in row["events"]:
            assert {"type", "frame"} <= set(e)
        assert json.loads(json.dumps(row["params"]))["scene"] == "bouncing_balls"


def test_a_suite_makes_every_scene_in_both_engines_and_every_split(tmp_path):
    out = tmp_path / "suite"
    cli("suite=smoke", "frames=6", f"out={out}", "progress=false", cwd=tmp_path)
    rows = read_manifest(out)
    streams = {(r["scene"], r["engine"], r["split"]) for r in rows}
    assert {s for s, _, _ in streams} == {"bouncing_balls", "shatter", "occlusion", "push"}
    assert {e for _, e, _ in streams} == {"pybullet", "mujoco"}
    assert {p for _, _, p in streams} == {"train", "test", "ood"}
    assert len(rows) == 4 * 2 * 4
    for r in rows:
        assert r["caption"] and r["caption_detailed"] and isinstance(r["events"], list)
    push = [r for r in rows if r["scene"] == "push"]
    assert any(np.abs(load_episode(out / r["path"], frames=False)["actions"]).max() > 0 for r in push)
    assert (out / "preview.mp4").is_file()


def test_benchmarks_print_one_json_line(tmp_path):
    for args in (
        ["generate", "--scenes", "bouncing_balls", "--engines", "mujoco", "--episodes", "1", "--frames", "4", "--workers-episodes", "0", "--repeats", "1"],
        ["agreement", "--scenes", "occlusion", "--episodes", "2", "--frames", "6"],
    ):
        r = subprocess.run([sys.executable, "-m", "worldsim.bench", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1
        out = json.loads(lines[0])
        assert out["bench"] == args[0] and out["results"]
