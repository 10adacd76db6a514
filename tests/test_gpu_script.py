"""The GPU path, ready to run: tools/gpu/train_h200.sh composes experiment=gpu_h200 and
runs it end to end (data, training, the fidelity probe, the export under 16 MiB) on the
CPU at tiny size, with the overrides below; on an H200 it runs with none."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "device=cpu", "precision=fp32", "threads=1", "data.scenes=[bouncing_balls]", "data.episodes=3", "data.test_episodes=2", "data.workers=1",
    "data.frames=24", "max_flops=2e9", "max_wall_s=60", "checkpoint_every_flops=null", "model.dim=32", "model.depth=1", "model.heads=2",
    "text.dim=16", "text.depth=1", "text.heads=2", "batch_size=2", "num_workers=0", "evaluation.episodes=1",
]


def test_the_h200_script_runs_a_tiny_config_on_the_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), HYDRA_FULL_ERROR="1")
    r = subprocess.run(["bash", str(REPO / "tools/gpu/train_h200.sh"), *TINY], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("{")))
    assert summary["export_mib"] <= 16 and summary["flops"] >= 2e9
    run = tmp_path / "gpu_h200"
    assert (run / "world.safetensors").is_file() and (run / "eval" / "fidelity.json").is_file()
    manifest = [json.loads(line) for line in (next((tmp_path / "data").iterdir()) / "manifest.jsonl").read_text().splitlines()]
    assert {m["engine"] for m in manifest} == {"mujoco"}  # no PyBullet on that machine's Python


def test_the_h200_config_at_full_size_fits_the_export_limit():
    """The model the real run trains exports (float16) within 16 MiB."""
    from hydra import compose, initialize_config_dir

    from worldsim.config import config_dir
    from worldsim.models.dit import DiTConfig
    from worldsim.models.text import TextConfig
    from worldsim.models.world import WorldModel

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=gpu_h200"])
    model = WorldModel(DiTConfig(**cfg.model, latent_channels=3, text_dim=cfg.text.dim), TextConfig(**cfg.text))
    assert 2 * sum(p.numel() for p in model.parameters()) <= 16 * 2**20
