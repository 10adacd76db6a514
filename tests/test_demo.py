"""Exported models, the bundled reference model and the demo (issue 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture(scope="module")
def exported(tiny_world, tmp_path_factory):
    from worldsim.checkpoint import export_safetensors

    return export_safetensors(tiny_world, tmp_path_factory.mktemp("export") / "tiny.safetensors")


def test_an_export_loads_as_the_run_it_came_from(tiny_world, exported):
    from worldsim.models.world import load_world

    run, exp = load_world(str(tiny_world)), load_world(str(exported))
    assert exp.config == run.config and exp.step == run.step
    for (k, a), b in zip(run.model.state_dict().items(), exp.model.state_dict().values()):
        torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-3, msg=k)  # the EMA weights, in float16
    for (k, a), b in zip(run.autoencoder.state_dict().items(), exp.autoencoder.state_dict().values()):
        torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-3, msg=k)


def test_an_export_can_change_its_default_sampler_steps_and_says_so(tiny_world, exported, tmp_path):
    """Re-exporting with ``--sampler-steps`` changes what users of the file get by
    default, keeps the weights and the training config as they were, and records the
    change; the record survives a plain re-export, and going back to the trained value
    removes it."""
    from worldsim.checkpoint import export_safetensors
    from worldsim.diffusion.sampling import SamplerConfig
    from worldsim.export import main as export_main
    from worldsim.simulator import LearnedSimulator

    before = load_checkpoint(exported, kind="dit")
    trained = before["config"]["flow"]["sampler_steps"]
    assert before["revised"] == {} and load_checkpoint(tiny_world, kind="dit")["revised"] == {}
    two = tmp_path / "two.safetensors"
    export_main([str(exported), str(two), "--sampler-steps", str(trained + 1)])
    after = load_checkpoint(two, kind="dit")
    assert after["config"]["flow"]["sampler_steps"] == trained + 1
    assert after["revised"] == {"flow.sampler_steps": [trained, trained + 1]}
    assert after["train"] == before["train"] and after["compute"] == before["compute"] and after["step"] == before["step"]
    assert after["source"] == before["source"]  # provenance: the run, not the file re-exported
    for part in ("model", "autoencoder"):
        assert after[part].keys() == before[part].keys()
        for k, v in before[part].items():
            assert torch.equal(after[part][k], v), (part, k)
    sim = LearnedSimulator(str(two), device="cpu")
    assert sim.sampler.steps == trained + 1
    # other sampler settings given, steps left out: still the file's own steps (not SamplerConfig's 4 of old)
    guided = LearnedSimulator(str(two), device="cpu", sampler=SamplerConfig(text_scale=2.0))
    assert guided.sampler.steps == trained + 1 != 4 and guided.sampler.text_scale == 2.0
    again = export_safetensors(two, tmp_path / "again.safetensors")  # no change asked: the record stays
    assert load_checkpoint(again, kind="dit")["revised"] == after["revised"]
    back = tmp_path / "back.safetensors"
    export_main([str(two), str(back), "--sampler-steps", str(trained)])
    assert load_checkpoint(back, kind="dit")["revised"] == {} and load_checkpoint(back, kind="dit")["config"] == before["config"]
    from safetensors import safe_open

    with safe_open(str(back), framework="pt") as f:
        assert "revised" not in json.loads(f.metadata()["worldsim"])  # going back leaves no record at all
    direct = export_safetensors(tiny_world, tmp_path / "direct.safetensors", sampler_steps=trained + 2)  # from the run itself
    assert load_checkpoint(direct, kind="dit")["revised"] == {"flow.sampler_steps": [trained, trained + 2]}
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(exported.read_bytes())
    for value in ("0", "-1"):
        with pytest.raises(SystemExit, match="sampler_steps must be a whole number"):
            export_main([str(exported), str(bad), "--sampler-steps", value])
    with pytest.raises(SystemExit):  # argparse's own refusal of a non-number
        export_main([str(exported), str(bad), "--sampler-steps", "two"])
    for value in (True, 0, 1.5):
        with pytest.raises(ValueError, match="sampler_steps"):
            export_safetensors(exported, bad, sampler_steps=value)
    assert bad.read_bytes() == exported.read_bytes()  # a refused export leaves the file it would have replaced


def test_a_broken_export_is_refused(exported, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(exported.read_bytes()[: 5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="without worldsim metadata"):
        load_checkpoint(bare)


def test_learned_world_runs_from_an_export(exported):
    import gymnasium as gym

    env = gym.make("worldsim:LearnedWorld-v0", checkpoint=str(exported), context=2)
    obs, info = env.reset(seed=0)
    obs2, *_ = env.step(np.zeros(2, np.float32))
    assert obs.shape == obs2.shape == (32, 32, 3) and info["caption"]
    env.close()


def test_the_demo_writes_its_files_and_a_summary(exported, tmp_path, capsys):
    from worldsim.evaluate.demo import DemoConfig, run_demo

    cfg = {"checkpoint": str(exported), "scenes": ["bouncing_balls", "shatter"], "engine": "pybullet", "episodes": 1, "horizon": 3,
           "context": 2, "seed": 0, "split": "test", "baselines": ["copy_last", "physical_variance"], "sampler_steps": 1, "videos": 1,
           "out": str(tmp_path), "device": "cpu", "precision": "fp32"}
    results = run_demo(DemoConfig(**cfg))
    assert set(results) == {"bouncing_balls", "shatter"}
    for name in ("demo.mp4", "horizon.png", "metrics.json", "bouncing_balls/report.md", "shatter/compare.mp4"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["scenes"]) == {"bouncing_balls", "shatter"} and "model" in saved["scenes"]["shatter"]["summary"]
    printed = capsys.readouterr().out
    assert "pos err" in printed and "shatter" in printed and "demo.mp4" in printed


def test_the_bundled_reference_model_is_the_default_everywhere():
    """With the reference model installed, the environments need no checkpoint."""
    from worldsim.assets import reference_checkpoint

    path = reference_checkpoint()
    if path is None:
        pytest.skip("this checkout ships no reference model (worldsim/assets/reference.safetensors)")
    import gymnasium as gym

    ckpt = load_checkpoint(path, kind="dit")
    assert ckpt["config"]["data"]["resolution"] == [64, 64]
    env = gym.make("worldsim:LearnedWorld-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (64, 64, 3)
    env.close()


def test_the_bundled_weights_are_the_reference_experiment():
    """The shipped file loads strictly into the model its recorded config builds, and
    that config is what conf/experiment/reference.yaml trains."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from worldsim.assets import reference_checkpoint
    from worldsim.config import config_dir
    from worldsim.models.world import load_world

    path = reference_checkpoint()
    if path is None:
        pytest.skip("this checkout ships no reference model (worldsim/assets/reference.safetensors)")
    world = load_world(path)  # strict: every tensor present, every shape as the config says
    ckpt = load_checkpoint(path, kind="dit")
    recorded = ckpt["train"]  # the resolved training config, kept by the export
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        experiment = OmegaConf.to_container(compose(config_name="train", overrides=["experiment=reference"]), resolve=True)
    from worldsim.diffusion.flow import FlowConfig
    from worldsim.models.dit import DiTConfig

    added_since = {"model": DiTConfig(), "flow": FlowConfig()}  # fields newer than the file must sit at their defaults
    revised = ckpt["revised"]  # defaults changed after training ("key": [trained, now])
    assert set(revised) <= {"flow.sampler_steps"}, revised  # none that changes what the weights are
    in_use = {}
    for key in ("model", "ae", "text", "flow"):
        saved, wanted = dict(recorded["stage_options"][key]), dict(experiment[key])
        in_use[key] = saved
        for name, (was, now) in revised.items():
            part, field = name.split(".")
            if part == key:
                assert saved[field] == was, name  # the record is the training config's
                saved[field] = now  # and the experiment asks for the value in use
        for field in set(wanted) - set(saved):
            assert key in added_since and wanted.pop(field) == getattr(added_since[key], field), (key, field)
        assert saved == wanted, key
    assert world.config.flow.sampler_steps == in_use["flow"]["sampler_steps"] == experiment["flow"]["sampler_steps"]  # what users get
    for key in ("batch_size", "clip_frames", "max_flops"):
        assert recorded.get(key) == experiment[key], key
    assert recorded.get("count_cpu_attention", False) == experiment["count_cpu_attention"]  # files of before the key counted without
    assert recorded["optim"] == experiment["optim"]
    flops = ckpt["compute"]["flops"]
    budget = float(experiment["export_at_flops"] or experiment["max_flops"])  # the checkpoint the experiment exports
    assert flops >= budget or world.step == experiment["max_steps"]  # trained to its budget
    if experiment["export_at_flops"] is not None:  # and it is the first kept checkpoint past it, not a later one
        assert flops < budget + float(experiment["checkpoint_every_flops"]), (flops, budget)
    n = sum(p.numel() for p in world.model.parameters())
    assert 2 * n < 30 * 2**20, n  # the shipped file (float16) stays under 30 MB


def test_the_demos_console_is_quiet(exported, tmp_path):
    """The demo's whole console output: worldsim's summary and nothing else (no
    warnings, no third-party log lines, no progress bars when not on a terminal)."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "worldsim.demo", f"checkpoint={exported}", "scenes=[bouncing_balls,shatter]", "episodes=1", "horizon=3", "context=2",
         "baselines=[copy_last,physical_variance]", "sampler_steps=1", "videos=1", f"out={tmp_path}", "threads=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    console = r.stdout + r.stderr
    for chatter in ("Warning", "warn", "OpenGL", "pybullet build time", "ALSA", "it/s]", "Traceback", "[INFO]"):
        assert chatter not in console, (chatter, console[-3000:])
    assert console.lstrip().startswith("worldsim demo:") and "pos err" in console


def test_export_at_flops_writes_the_first_checkpoint_that_reached_them(tiny_data, tmp_path):
    """``export_at_flops`` picks the first kept checkpoint with at least that many
    FLOPs (the reference model is one part-way down its schedule); too many is a clear
    error naming the key, and null is the run's last step."""
    from worldsim.checkpoint import export_safetensors, load_checkpoint
    from worldsim.training.experiment import export_source
    from worldsim.training.loop import OptimConfig, TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(
        stage="dit", data=str(tiny_data), out=str(out), max_steps=4, batch_size=2, clip_frames=4, num_workers=0,
        checkpoint_every=1, keep_checkpoints=4, sample_every=1000, optim=OptimConfig(lr=1e-3, warmup_steps=1),
        stage_options={"model": {"dim": 32, "depth": 2, "heads": 2, "patch": [1, 8, 8]}, "text": {"dim": 16, "depth": 1, "heads": 2},
                       "autoencoder": "identity"},
    ))
    kept = sorted((out / "checkpoints").glob("step_*.pt"))
    flops = [float(load_checkpoint(p, kind="dit")["compute"]["flops"]) for p in kept]
    assert len(kept) == 4 and flops == sorted(flops) and flops[0] > 0
    assert export_source(out, None) == out
    assert export_source(out, flops[1]) == kept[1]
    assert export_source(out, flops[1] + 1.0) == kept[2]
    written = export_safetensors(export_source(out, flops[2]), tmp_path / "mid.safetensors")
    assert load_checkpoint(written, kind="dit")["step"] == load_checkpoint(kept[2], kind="dit")["step"] != load_checkpoint(out, kind="dit")["step"]
    with pytest.raises(ValueError, match="export_at_flops"):
        export_source(out, flops[-1] * 2)
