"""Sora-style sampling: ``python -m worldsim.sample checkpoint=PATH mode=MODE prompt="..."
input=PATH frames=N resolution=HxW seed=S out=DIR``.

Modes: ``t2v``, ``i2v``, ``extend``, ``extend_backward``, ``connect``, ``loop``,
``edit`` (:mod:`worldsim.sampler` says what each gives and does the work). Writes
``DIR/sample.npz``, ``DIR/sample.mp4`` and ``DIR/sample.json``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from worldsim.checkpoint import CheckpointError
from worldsim.config import config_dir, typed
from worldsim.sampler import MODES, SampleConfig, SampleError, Sampler, read_frames, run_sample

__all__ = ["MODES", "SampleConfig", "SampleError", "Sampler", "read_frames", "run_sample", "main"]

log = logging.getLogger("worldsim.sample")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        info = run_sample(typed(SampleConfig, plain, "sample"))
        print(f"wrote {Path(cfg.out).resolve() / 'sample.npz'} ({info['frames'][0]} frames, {info['mode']})")
    except (SampleError, CheckpointError, ValueError) as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
