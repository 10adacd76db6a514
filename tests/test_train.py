"""The shared training loop: resume exactness, DDP, refusing mismatched checkpoints,
stopping on a non-finite loss."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_checkpoint
from worldsim.training.loop import OptimConfig, TrainConfig, TrainingError, train

DIT = {"model": {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 8, 8]}, "text": {"dim": 16, "depth": 1, "heads": 2}, "autoencoder": "identity"}


def config(data, out, steps, **kw):
    opts = dict(DIT)
    opts.update(kw.pop("stage_options", {}))
    return TrainConfig(
        stage="dit", data=str(data), out=str(out), max_steps=steps, batch_size=2, clip_frames=4, num_workers=0,
        checkpoint_every=2, sample_every=1000, log_every=1, optim=OptimConfig(lr=1e-3, warmup_steps=2, ema=0.9), stage_options=opts, **kw,
    )


def test_resume_continues_exactly(tiny_data, tmp_path):
    whole = train(config(tiny_data, tmp_path / "whole", 4))["module"]
    train(config(tiny_data, tmp_path / "split", 2))
    resumed = train(config(tiny_data, tmp_path / "split", 4))["module"]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    assert a["step"] == b["step"] == 4
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])


def test_a_checkpoint_of_another_model_config_is_refused(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path, 2))
    bigger = config(tiny_data, tmp_path, 4, stage_options={"model": {"dim": 64, "depth": 1, "heads": 2, "patch": [1, 8, 8]}})
    with pytest.raises(CheckpointError, match="dim: 32 in the checkpoint, 64 here"):
        train(bigger)


def test_a_checkpoint_from_before_a_new_model_setting_resumes(tiny_data, tmp_path):
    """A checkpoint written before a DiT setting existed (its config lacks the key) was
    trained with that setting's default: it resumes, and a different value is refused."""
    train(config(tiny_data, tmp_path, 2))
    path = load_checkpoint(tmp_path)["path"]
    ckpt = torch.load(path, weights_only=True)
    for key in ("flow_overlap", "warp_mode"):
        del ckpt["config"]["dit"][key]
    torch.save(ckpt, path)
    train(config(tiny_data, tmp_path, 4))
    assert load_checkpoint(tmp_path)["step"] == 4
    warped = config(tiny_data, tmp_path, 6, stage_options={"model": {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 8, 8], "warp_mode": "bilinear"}})
    with pytest.raises(CheckpointError, match="warp_mode: 'bicubic' in the checkpoint, 'bilinear' here"):
        train(warped)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tiny_data, tmp_path, monkeypatch):
    from worldsim.training.dit import DiTStage

    original = DiTStage.loss
    calls = {"n": 0}

    def poisoned(self, module, batch, gen, kind):
        calls["n"] += 1
        loss, logs = original(self, module, batch, gen, kind)
        return (loss * float("nan") if calls["n"] == 3 else loss), logs

    monkeypatch.setattr(DiTStage, "loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan at step 3, on episodes \['bouncing_balls-pybullet-train-"):
        train(config(tiny_data, tmp_path, 6))
    assert load_checkpoint(tmp_path)["step"] == 2


def test_two_process_ddp_trains_and_ranks_agree(tiny_data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from worldsim.training.loop import OptimConfig, TrainConfig, train
        # a FLOP budget with its cosine, both tasks drawn and a wall-time limit: what the ranks must agree on step by step
        cfg = TrainConfig(stage="dit", data={str(tiny_data)!r}, out={str(tmp_path / 'run')!r}, max_steps=2, max_wall_s=3600, max_flops=1e15,
                          batch_size=2, clip_frames=4, num_workers=0, checkpoint_every=2, sample_every=1000,
                          optim=OptimConfig(lr=1e-3, warmup_steps=1, decay="cosine"), stage_options={ {**DIT, "flow": {"simulator_share": 0.5}}!r})
        out = train(cfg)
        torch.save({{**out["module"].state_dict(), "lr": torch.tensor(out["logs"]["lr"], dtype=torch.float64)}},
                   {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
    """))
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(script)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = train(config(tiny_data, tmp_path / "fresh", 0))["module"].state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a if k != "lr")  # they trained
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    assert not (tmp_path / "run" / "checkpoints" / "step_0000002.pt.tmp").exists()


def test_cached_latents_serve_the_same_windows_and_train(tiny_data, tmp_path):
    """With the identity autoencoder, a cached window is the clip itself (to float16
    precision), for the same (episode, seed, length); training on the cache runs, and
    a resumed run reuses the cache instead of rebuilding it."""
    from worldsim.data.dataset import ClipDataset
    from worldsim.data.latents import build_latent_cache
    from worldsim.models.autoencoder import load_autoencoder

    clips = ClipDataset(str(tiny_data), clip_frames=4)
    cached = build_latent_cache(clips, load_autoencoder("identity"), tmp_path / "cache", device=torch.device("cpu"), precision="fp32", progress=False)
    for item in [(0, 11, 4), (3, 5, 6), (5, 99, 4)]:
        a, b = clips[item], cached[item]
        assert a["start"] == b["start"] and a["caption_detailed"] == b["caption_detailed"]
        torch.testing.assert_close(b["latents"], a["frames"], atol=2e-3, rtol=0)
        torch.testing.assert_close(b["actions"], a["actions"])

    out = tmp_path / "run"
    train(config(tiny_data, out, 2, cache_latents=True))
    index = out / "latents" / "index.json"
    stamp = index.stat().st_mtime_ns
    result = train(config(tiny_data, out, 4, cache_latents=True))
    assert torch.isfinite(torch.tensor(result["logs"]["loss"])) and index.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="temporal factor 1"):
        from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig

        build_latent_cache(clips, Autoencoder(AutoencoderConfig(spatial_factor=4, temporal_factor=2, latent_channels=4, channels=[8, 8, 16])),
                           tmp_path / "c2", device=torch.device("cpu"), precision="fp32", progress=False)


def test_compile_traces_the_dit_and_counts_flops_as_eager(tiny_data, tmp_path, monkeypatch):
    import json

    import torch._dynamo.utils

    from worldsim.models.world import WorldModel
    from worldsim.training import loop

    compiled, real = [], torch.compile

    def traced(fn, **kw):  # Dynamo's tracing with the eager backend: what compile=true traces, without Inductor's minutes
        compiled.append((type(fn.__self__).__name__, kw))
        return real(fn, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", traced)
    train(config(tiny_data, tmp_path / "plain", 5))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    module = train(config(tiny_data, tmp_path / "compiled", 5, compile=True))["module"]
    # the DiT, not the world: the caption strings stay outside the compiled frame
    assert compiled == [("DiT", {"dynamic": False})] and isinstance(module, WorldModel)
    # the steps after the 3 counted ones ran compiled (a frame first met under the FLOP
    # counter's dispatch mode is skipped by Dynamo for good: the counted steps run eagerly)
    assert torch._dynamo.utils.counters["frames"]["ok"] >= 1
    a, b = (json.loads((tmp_path / n / "train_summary.json").read_text()) for n in ("plain", "compiled"))
    # the same work, but for the masked caption tokens the compiled DiT sees padded to text.max_length
    assert b["flops"] == pytest.approx(a["flops"], rel=0.1) and b["flops"] >= a["flops"] > 0
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
    ca, cb = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "compiled")
    assert list(ca["model"]) == list(cb["model"]) and not any("_orig_mod" in k for k in cb["model"])
    assert loop.compile_model(torch.nn.Linear(2, 2)) is not None and compiled[-1][0] == "Linear"  # no DiT: the module itself
    torch._dynamo.reset()


def test_a_compiled_dit_sees_one_caption_shape_and_computes_what_the_eager_one_does(monkeypatch):
    from worldsim.models.dit import DiTConfig
    from worldsim.models.text import TextConfig
    from worldsim.models.world import WorldModel
    from worldsim.training import loop

    torch.manual_seed(0)
    world = WorldModel(DiTConfig(dim=32, depth=1, heads=2, patch=[1, 8, 8], latent_channels=3, text_dim=16), TextConfig(dim=16, depth=1, heads=2))
    x, t, acts = torch.randn(2, 3, 3, 16, 16), torch.rand(2, 3), torch.zeros(2, 3, 2)
    short, long = ["A red ball."] * 2, ["A red ball bounces. The blue ball hits the floor, then the red ball hits the wall."] * 2
    eager = [world(x, t, acts, c, causal=True) for c in (short, long)]
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", **kw))
    loop.compile_model(world)
    monkeypatch.undo()
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):  # captions of another length: no new graph
        compiled = [world(x, t, acts, c, causal=True) for c in (short, long)]
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert loop.pad_text(world.encode_text(short), 96)[1].shape == (2, 96)
    torch._dynamo.reset()


def test_bench_times_an_experiments_own_training_step(tiny_data, capsys):
    import json

    from worldsim import bench

    bench.main(["--threads", "1", "train", "--experiment", "recipe_bb", "--data", str(tiny_data), "--no-compile", "--warmup", "1",
                "--repeats", "1", "model.dim=32", "model.depth=1", "model.heads=2", "batch_size=2", "clip_frames=4"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "train" and out["experiment"] == "recipe_bb" and out["batch"] == 2 and out["clip_frames"] == 4
    assert out["overrides"] == ["model.dim=32", "model.depth=1", "model.heads=2", "batch_size=2", "clip_frames=4"]
    assert out["kinds"] == pytest.approx({"simulator": 0.8, "sequence": 0.2})
    eager = out["eager"]
    assert "compiled" not in out
    # the simulator's task sees history and targets (2(T-1) frames), a Sora-mode step the clip's T
    assert eager["simulator"]["flops_per_step"] > eager["sequence"]["flops_per_step"] > 0
    mix = eager["mix"]
    assert mix["flops_per_step"] == pytest.approx(0.8 * eager["simulator"]["flops_per_step"] + 0.2 * eager["sequence"]["flops_per_step"])
    lo, hi = sorted([eager["simulator"]["clips_per_s"], eager["sequence"]["clips_per_s"]])
    assert lo <= mix["clips_per_s"] <= hi and 0 < mix["flops_over_peak"] < 1
    # a stage without a DiT (ae=tiny: a key=value of another bench command's option stays an override)
    bench.main(["train", "--experiment", "recipe_bb", "--data", str(tiny_data), "--no-compile", "--warmup", "1", "--repeats", "1",
                "stage=autoencoder", "ae=tiny", "batch_size=2", "clip_frames=4"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["kinds"] == {"autoencoder": 1.0} and out["eager"]["autoencoder"]["flops_per_step"] > 0


def test_bench_says_what_is_wrong_with_its_input(tiny_data, tiny_world, tmp_path, capsys):
    from worldsim import bench

    assert bench.flags(["experiment=recipe_bb", "batch_size=2", "model.dim=32"], {"--experiment"}) == [
        "--experiment", "recipe_bb", "batch_size=2", "model.dim=32"]
    switch = {"--compile", "--no-compile", "--steps"}  # argparse's BooleanOptionalAction registers both forms
    assert bench.flags(["compile=true", "steps=4"], switch) == ["--compile", "--steps", "4"]
    assert bench.flags(["compile=False"], switch) == ["--no-compile"]
    with pytest.raises(SystemExit, match="nosuch"):
        bench.main(["train", "--experiment", "recipe_bb", "--data", str(tiny_data), "nosuch.key=1"])
    with pytest.raises(SystemExit, match="manifest.jsonl"):
        bench.main(["train", "--experiment", "recipe_bb", "--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["train", "model.dim=32"])  # overrides without an experiment
    assert "overrides go with --experiment" in capsys.readouterr().err
    # a missing checkpoint or data folder: the message, not a traceback
    with pytest.raises(SystemExit, match="error: no checkpoint at nosuch"):
        bench.main(["step", "--checkpoint", "nosuch"])
    with pytest.raises(SystemExit, match="error: data folder .*nowhere does not exist"):
        bench.main(["fidelity", "--checkpoint", str(tiny_world), "--data", str(tmp_path / "nowhere")])


def test_a_command_ends_a_diverged_models_run_with_its_message(tiny_world, monkeypatch):
    """A model whose frames are not finite ends a command with the simulator's message,
    not a traceback (the bench here; the Hydra commands share the rule, worldsim.cli)."""
    from worldsim import bench
    from worldsim.simulator import LearnedSimulator

    def diverged(self, *args, **kwargs):
        raise FloatingPointError("the model's frame 3 is not finite (NaN or inf) in worlds [0]")

    monkeypatch.setattr(LearnedSimulator, "step", diverged)
    with pytest.raises(SystemExit, match=r"error: the model's frame 3 is not finite"):
        bench.main(["step", "--checkpoint", str(tiny_world), "--single-steps", "1", "--batched-steps", "1", "--long-steps", "0",
                    "--worlds", "2", "--no-compile", "--rounds", "1"])


class _Field(torch.nn.Module):
    """A stand-in DiT for own_history: records the target frames' levels of each call
    and returns the exact velocity towards ``goal`` (frames 1 .. T-1 as differences)."""

    def __init__(self, goal):
        super().__init__()
        self.goal, self.levels = goal, []

    def forward(self, x_t, t, actions, captions, *, frame_index, **kw):
        n = x_t.shape[1] // 2
        self.levels.append(t[:, n:].clone())
        y_t, tt = x_t[:, n:], t[:, n:, None, None, None]
        v = torch.zeros_like(x_t)
        v[:, n:] = (y_t - self.goal) / tt  # on the straight path from noise to goal: what velocity_from inverts
        return v


@pytest.mark.parametrize("steps", [1, 3])
def test_unrolled_history_is_sampled_with_the_rollouts_own_steps(steps):
    from types import SimpleNamespace

    from worldsim.diffusion.flow import FlowConfig
    from worldsim.diffusion.sampling import time_grid
    from worldsim.training.dit import DiTStage

    x0 = torch.randn(4, 5, 2, 3, 3)
    goal = torch.randn(4, 4, 2, 3, 3)  # the differences the stand-in model predicts for frames 1 .. 4
    flow = FlowConfig(unroll=2, unroll_fraction=1.0, sampler_steps=steps, context_noise=0.0)
    stage = SimpleNamespace(flow=flow, dit_config=SimpleNamespace(anchor=True, anchor_frames=1))
    field = _Field(goal)
    history = DiTStage.own_history(stage, field, x0, torch.zeros(4, 5, 2), [""] * 4, torch.Generator().manual_seed(0))
    assert len(field.levels) == 2 * steps  # unroll passes x the rollout's sampler steps
    grid = time_grid(steps)[:-1]
    for call, level in enumerate(field.levels):
        assert torch.allclose(level, torch.full_like(level, float(grid[call % steps])))
    # pass 1 predicts frame k from the true frame k-1 (anchored: frame k-1 + difference);
    # pass 2 from its own frame k-1, so its errors compound as a rollout's do
    first = x0[:, :-1] + goal
    expected = torch.cat([x0[:, :1], (torch.cat([x0[:, :1], first[:, :-1]], 1) + goal)[:, :-1]], 1)
    assert torch.allclose(history, expected, atol=1e-5)
    assert torch.equal(history[:, 0], x0[:, 0])
    # the share of clips that keep the true history
    kept = DiTStage.own_history(SimpleNamespace(flow=FlowConfig(unroll=1, unroll_fraction=0.0), dit_config=stage.dit_config),
                                _Field(goal), x0, torch.zeros(4, 5, 2), [""] * 4, torch.Generator().manual_seed(0))
    assert torch.equal(kept, x0[:, :-1])


def test_unroll_steps_must_be_positive():
    from worldsim.diffusion.flow import FlowConfig

    with pytest.raises(ValueError, match="flow.unroll_steps"):
        FlowConfig(unroll_steps=0)


def test_warp_is_refused_unless_the_clean_difference_is_predicted():
    from types import SimpleNamespace

    from worldsim.training.dit import DiTStage
    from worldsim.training.stages import DiTStageConfig

    cfg = SimpleNamespace(clip_frames=4, resolution=None)
    model = {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 8, 8], "anchor": True, "warp": True}
    with pytest.raises(ValueError, match="flow.prediction=sample"):
        DiTStage(cfg, DiTStageConfig.from_options({"model": model, "flow": {"prediction": "velocity"}}))
    assert DiTStage(cfg, DiTStageConfig.from_options({"model": model, "flow": {"prediction": "sample"}})).dit_config.warp
    with pytest.raises(ValueError, match="model.warp=true"):
        DiTStage(cfg, DiTStageConfig.from_options({"model": {**model, "warp": False}, "flow": {"prediction": "sample", "motion_weight": 0.1}}))


def test_object_motion_is_each_objects_centroid_shift_where_it_is_and_was():
    from worldsim.diffusion.flow import FlowConfig, motion_loss, object_motion, still_background
    from worldsim.models.dit import warp

    seg = torch.zeros(1, 3, 16, 16, dtype=torch.long)
    seg[0, 0, 2:6, 2:6] = 1
    seg[0, 1:, 3:7, 4:8] = 1  # moved 2 right, 1 down, then still
    seg[0, 1, 10:12, 10:12] = 2  # appears: no motion known
    flow, where = object_motion(seg, (16, 16), 2)
    # its 16 pixels now and the 10 it left (covered before, by nothing now)
    assert flow[0, 1, :, 4, 5].tolist() == [2.0, 1.0] and int(where[0, 1].sum()) == 26
    assert flow[0, 1, :, 2, 2].tolist() == [2.0, 1.0] and bool(where[0, 1, 0, 2, 2])  # a pixel it left
    assert not where[0, 0].any() and flow[0, 2].abs().max() == 0 and not where[0, 1, 0, 10, 10]
    # the last frame warped along it is the next: the object moves and leaves no copy behind
    square = (seg[:, :, None] == 1).float()  # (1, 3, 1, 16, 16)
    for mode in ("bicubic", "bilinear"):
        assert torch.allclose(warp(square[:, :1], flow[:, 1:2], mode), square[:, 1:2], atol=1e-5)
    half, where_half = object_motion(seg, (8, 8), 2)  # in latent pixels of an f2 latent
    assert half[0, 1, :, 2, 2].tolist() == [1.0, 0.5] and int(where_half[0, 1].sum()) == 2 + 3
    assert float(motion_loss(flow, flow, where)) == 0.0 and float(motion_loss(flow + 1, flow, where)) == 1.0
    # the still background: wholly background in the frame and the one before (frame 0: nowhere)
    still = still_background(seg == 0, (16, 16))
    assert not still[0, 0].any() and not (still & where).any()  # never where an object is or was
    assert int(still[0, 1].sum()) == 256 - 26 - 4 and int(still[0, 2].sum()) == 256 - 16 - 4  # object 2: shown in frame 1 only
    assert int(still_background(seg == 0, (8, 8))[0, 2].sum()) == 64 - 6 - 1  # latent pixels no object touches in frames 1 and 2
    with pytest.raises(ValueError, match="flow.motion_weight"):
        FlowConfig(motion_weight=-1.0)


@pytest.mark.parametrize("bad, message", [
    ({"checkpoint_every": 0}, "checkpoint_every must be a whole number >= 1, got 0"),
    ({"log_every": 0}, "log_every must be"),
    ({"keep_checkpoints": 0}, "keep_checkpoints must be a whole number >= 1"),  # would delete the checkpoint just saved
    ({"max_steps": "abc"}, "max_steps must be a whole number >= 0, got 'abc'"),
    ({"seed": -1}, "seed must be a whole number >= 0"),
    ({"max_wall_s": 0}, "max_wall_s must be a positive number or null"),
    ({"buckets": [{"resolution": [32, 32]}]}, "each of buckets is"),
    ({"buckets": [{"resolution": [32, 32], "frames": 4, "weight": 0}]}, "buckets need a positive weight"),
])
def test_a_run_setting_that_cannot_work_is_refused_naming_it(tmp_path, bad, message):
    from worldsim.training.loop import TrainConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(stage="dit", data=str(tmp_path), out=str(tmp_path / "run"), **bad)


def test_unknown_optimizer_and_ae_train_keys_are_named():
    from worldsim.training.experiment import run_experiment
    from worldsim.training.loop import config_from_plain

    with pytest.raises(ValueError, match=r"unknown keys \['optim.foo'\]"):
        config_from_plain({"stage": "dit", "data": "d", "out": "o", "optim": {"lr": 1e-3, "foo": 1}})
    with pytest.raises(ValueError, match=r"ae_train.lr must be a number, got 'fast'"):
        run_experiment({"stage": "dit", "data": "d", "out": "o", "ae_train": {"lr": "fast"}})


def test_every_rank_trains_the_same_kind_of_step():
    """Under DDP each rank draws from its own generator, but a step's kind (the
    simulator's task or the Sora modes) is rank 0's: else the ranks would count other
    FLOPs, set other learning rates and stop at other steps."""
    from worldsim.training.loop import Dist, TrainConfig, draw_step, make_stage, step_generator

    stage = make_stage(TrainConfig(stage="dit", data="d", out="o", stage_options={**DIT, "flow": {"simulator_share": 0.8}}))
    kinds = {r: [draw_step(stage, 0, s, Dist(r, 2))[0] for s in range(40)] for r in (0, 1)}
    assert kinds[0] == kinds[1] and set(kinds[0]) == {"simulator", "sequence"}
    own = [stage.step_kind(step_generator(0, s, 1)) for s in range(40)]
    assert own != kinds[0]  # what rank 1 drew itself
    for s in range(3):  # each rank's stream: one draw taken, as with one process
        _, gen = draw_step(stage, 0, s, Dist(1, 2))
        ref = step_generator(0, s, 1)
        stage.step_kind(ref)
        assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref))


def test_a_resume_with_another_objective_is_refused(tiny_data, tmp_path):
    """The flow settings (noise levels, the tasks' shares, the losses) are the run's
    objective: a resume under others would train another recipe into the same weights."""
    train(config(tiny_data, tmp_path, 2))
    other = config(tiny_data, tmp_path, 4, stage_options={**DIT, "flow": {"simulator_share": 0.5}})
    with pytest.raises(CheckpointError, match="another flow config: simulator_share: 0.0 in the checkpoint, 0.5 here"):
        train(other)


def test_a_resume_keeps_the_autoencoder_the_run_began_with(tiny_data, tmp_path, caplog):
    """The frozen autoencoder is reloaded from its source at a resume; if that has
    trained further since, the copy saved in the checkpoint is used, with a warning."""
    import yaml

    from worldsim.config import config_dir

    ae = yaml.safe_load((Path(config_dir()) / "ae" / "tiny.yaml").read_text())

    def ae_run(steps):
        return TrainConfig(stage="autoencoder", data=str(tiny_data), out=str(tmp_path / "ae"), max_steps=steps, batch_size=2, clip_frames=4,
                           num_workers=0, checkpoint_every=2, sample_every=1000, optim=OptimConfig(lr=1e-3, warmup_steps=1), stage_options={"ae": ae})

    train(ae_run(2))
    began = load_checkpoint(tmp_path / "ae")["model"]
    dit = {"model": {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 2, 2]}, "autoencoder": str(tmp_path / "ae")}
    train(config(tiny_data, tmp_path / "dit", 2, stage_options=dit))
    train(ae_run(4))  # the source trains on
    with caplog.at_level("WARNING"):
        train(config(tiny_data, tmp_path / "dit", 4, stage_options=dit))
    assert "not the one this run began with" in caplog.text
    kept = load_checkpoint(tmp_path / "dit")["autoencoder"]
    assert kept.keys() == began.keys() and all(torch.equal(kept[k], v) for k, v in began.items())


def test_a_resume_may_change_what_only_sampling_reads(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path, 2))
    train(config(tiny_data, tmp_path, 4, stage_options={**DIT, "flow": {"sampler_steps": 1, "unroll_steps": 3}}))
    assert load_checkpoint(tmp_path)["step"] == 4
