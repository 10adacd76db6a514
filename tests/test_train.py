"""The shared training loop: resume exactness, DDP, refusing mismatched checkpoints,
stopping on a non-finite loss."""

import subprocess
import sys
import textwrap

import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_checkpoint
from worldsim.train import OptimConfig, TrainConfig, TrainingError, train

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


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tiny_data, tmp_path, monkeypatch):
    from worldsim.stages.dit import DiTStage

    original = DiTStage.loss
    calls = {"n": 0}

    def poisoned(self, module, batch, gen):
        calls["n"] += 1
        loss, logs = original(self, module, batch, gen)
        return (loss * float("nan") if calls["n"] == 3 else loss), logs

    monkeypatch.setattr(DiTStage, "loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan at step 3, on episodes \['bouncing_balls-pybullet-train-"):
        train(config(tiny_data, tmp_path, 6))
    assert load_checkpoint(tmp_path)["step"] == 2


def test_two_process_ddp_trains_and_ranks_agree(tiny_data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from worldsim.train import OptimConfig, TrainConfig, train
        cfg = TrainConfig(stage="dit", data={str(tiny_data)!r}, out={str(tmp_path / 'run')!r}, max_steps=2, batch_size=2,
                          clip_frames=4, num_workers=0, checkpoint_every=2, sample_every=1000, optim=OptimConfig(lr=1e-3, warmup_steps=1),
                          stage_options={DIT!r})
        module = train(cfg)["module"]
        torch.save(module.state_dict(), {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
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
    assert any(not torch.equal(a[k], init[k]) for k in a)  # they trained
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    assert not (tmp_path / "run" / "checkpoints" / "step_0000002.pt.tmp").exists()
