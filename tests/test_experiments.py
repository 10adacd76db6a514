"""Named experiments, sweeps and their report (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldsim.config import config_dir

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def train_cli(*args, cwd, check=True):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "worldsim.train", *args], cwd=cwd, capture_output=True, text=True, env=env, check=check)


def test_the_named_experiments_exist():
    assert {"tiny", "cpu_small", "reference"} <= set(EXPERIMENTS), EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_into_a_run(name):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from worldsim.evaluate.runs import Evaluation
    from worldsim.training.experiment import AETrain, DataRecipe
    from worldsim.training.loop import config_from_plain

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={name}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["name"] == name and plain["stage"] in ("autoencoder", "dit")
    Evaluation(**plain.pop("evaluation"))
    AETrain(**plain.pop("ae_train"))
    for k in ("eval", "threads", "name"):
        plain.pop(k)
    if isinstance(plain["data"], dict):
        recipe = DataRecipe(**plain["data"])
        assert recipe.content()["scenes"]
        plain["data"] = str(recipe.path())
    train_cfg = config_from_plain(plain)
    assert train_cfg.max_steps > 0 and "model" in train_cfg.stage_options


def test_a_data_recipe_names_its_content_and_refuses_nonsense(tmp_path):
    from worldsim.training.experiment import DataRecipe, ensure_data

    a = DataRecipe(suite="smoke", data_root=str(tmp_path))
    b = DataRecipe(suite="smoke", data_root=str(tmp_path), workers=2)
    assert a.path() == b.path()  # how many processes make it is not part of it
    assert DataRecipe(suite="smoke", data_root=str(tmp_path), episodes=3).path() != a.path()
    with pytest.raises(ValueError, match="unknown keys"):
        ensure_data({"suite": "smoke", "episode": 3})
    with pytest.raises(ValueError, match="unknown suite"):
        DataRecipe(suite="enormous").content()
    with pytest.raises(ValueError, match="scenes and engines"):
        DataRecipe(suite=None, scenes=["shatter"])
    with pytest.raises(ValueError, match="seed must be a whole number >= 0, got -1"):
        DataRecipe(suite="smoke", seed=-1)


def test_a_sweep_runs_reports_and_resumes(tmp_path):
    """A 2-run multirun of experiment=tiny with the joblib launcher, evaluated; the
    report's table and plot; launched again, nothing is redone."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    args = ("-m", "experiment=tiny", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "tag=v1/a", "eval=true", f"hydra.sweep.dir={sweep}")
    train_cli(*args, cwd=tmp_path)
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    # one folder a run, a / in a value included (tag=v1/a; data=/a/b alike), not nested folders
    assert [p.name for p in runs] == ["experiment=tiny,seed=0,tag=v1%2Fa", "experiment=tiny,seed=1,tag=v1%2Fa"]
    for run in runs:
        done = json.loads((run / "done.json").read_text())
        assert done["flops"] > 0 and done["compute"]["autoencoder"]["steps"] == 4 and done["compute"]["dit"]["steps"] == 4
        assert (run / "eval" / "bouncing_balls" / "metrics.json").is_file()
        assert set(done["eval"]["mean"]) == {"position_error_px", "objects_lost_rate", "position_error_charged_px", "psnr", "count_violation_rate", "score"}
    assert len(list((tmp_path / "data" / "experiments").iterdir())) == 2  # one recipe folder (and its lock), shared

    from worldsim.report_sweep import main as report_main

    report_main([str(sweep)])
    md = (sweep / "sweep.md").read_text()
    assert "| seed | finished | train FLOPs |" in md and md.count("| True |") == 2
    assert (sweep / "sweep.csv").read_text().count("\n") == 3
    assert (sweep / "sweep.png").stat().st_size > 1000

    stamps = {r: (r / "done.json").stat().st_mtime_ns for r in runs}
    again = train_cli(*args, cwd=tmp_path)
    assert (again.stdout + again.stderr).count("finished already") >= 2
    assert stamps == {r: (r / "done.json").stat().st_mtime_ns for r in runs}


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    train_cli("experiment=tiny", f"out={out}", "max_steps=2", "checkpoint_every=2", cwd=tmp_path)
    first = json.loads((out / "train_summary.json").read_text())
    train_cli("experiment=tiny", f"out={out}", cwd=tmp_path)  # max_steps back to 4: two more steps
    second = json.loads((out / "train_summary.json").read_text())
    assert (first["steps"], second["steps"]) == (2, 4)
    assert second["flops"] == pytest.approx(2 * first["flops"], rel=0.25)  # the same kind of steps again


def test_a_sweep_over_a_key_that_does_not_exist_fails_before_launching(tmp_path):
    sweep = tmp_path / "sweep"
    r = train_cli("-m", "experiment=tiny", "model.depthh=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "model.depthh" in r.stderr
    assert not [p for p in sweep.glob("*") if p.is_dir()]  # no run started


@pytest.mark.parametrize("bad, message", [
    (["model.warp_mode=cubic"], "model.warp_mode must be bicubic or bilinear"),
    (["model.anchor=true", "model.warp=true", "flow.prediction=velocity"], "needs flow.prediction=sample"),
])
def test_a_bad_model_value_is_refused_before_data_or_an_autoencoder_is_made(tmp_path, bad, message):
    """experiment=tiny trains an autoencoder first: a DiT setting it cannot build, or one
    its flow settings contradict, is refused at once, naming the key, with nothing
    generated or trained."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from worldsim.training.experiment import run_experiment

    overrides = ["experiment=tiny", *bad, f"out={tmp_path / 'run'}", f"+data.data_root={tmp_path / 'data'}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        plain = OmegaConf.to_container(compose(config_name="train", overrides=overrides), resolve=True)
    assert plain["autoencoder"] == "train"
    with pytest.raises(ValueError, match=message):
        run_experiment(plain, progress=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_the_fidelity_curves_of_runs_that_differ_only_in_experiment_are_all_kept(tmp_path):
    """Runs of a sweep are labelled by the overrides in which they differ: runs of two
    experiments (or two alike) never overwrite each other's curve."""
    from worldsim.evaluate.sweep import curves

    def run(name, overrides, err):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (tmp_path / name / "eval").mkdir()
        (tmp_path / name / "eval" / "fidelity_curve.json").write_text(json.dumps([{"step": 1, "tf_err_px": err}]))

    run("0", ["experiment=recipe_a", "threads=2", "lr=1e-3"], 1.0)
    run("1", ["experiment=recipe_b", "threads=2", "lr=1e-3"], 9.0)
    run("2", ["experiment=recipe_b", "threads=2", "lr=1e-3"], 5.0)
    got = curves(tmp_path)
    assert got == {"experiment=recipe_a": [{"step": 1, "tf_err_px": 1.0}], "experiment=recipe_b": [{"step": 1, "tf_err_px": 9.0}],
                   "experiment=recipe_b (2)": [{"step": 1, "tf_err_px": 5.0}]}
