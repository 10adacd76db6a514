"""python -m worldsim.play: the learned world driven beside its twin, headless here."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("pygame")


def test_play_runs_fifty_scripted_steps_headless_and_writes_its_frames(tiny_world, tmp_path):
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    r = subprocess.run(
        [sys.executable, "-m", "worldsim.play", f"checkpoint={tiny_world}", "scene=push", "context=2", "sampler_steps=1", "max_steps=50", "fps=1000",
         "scale=2", 'script="right*10,up+right*10,reset,left*10,scene,down*20"', f"out={tmp_path}", "threads=1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "played 50 steps of bouncing_balls" in r.stdout  # Tab ("scene") moved on from push
    for name in ("play.mp4", "play.gif", "play.png", "window.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_bad_scripts_are_refused():
    from worldsim.play import PlayError, parse_script

    assert parse_script("right*2,up+left,none") == [{"right"}, {"right"}, {"up", "left"}, set()]
    with pytest.raises(PlayError, match="script token 'jump'"):
        parse_script("right,jump")
