"""Sora-style sampling: ``python -m worldsim.sample checkpoint=PATH mode=MODE prompt="..."
input=PATH frames=N resolution=HxW seed=S out=DIR``.

Modes: ``t2v``, ``i2v``, ``extend``, ``extend_backward``, ``connect``, ``loop``,
``edit`` (:mod:`worldsim.sampler` says what each gives and does the work). Writes
``DIR/sample.npz``, ``DIR/sample.mp4`` and ``DIR/sample.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from worldsim.cli import entry_point
from worldsim.config import job_config, typed
from worldsim.sampler import MODES, SampleConfig, SampleError, Sampler, read_frames, run_sample

__all__ = ["MODES", "SampleConfig", "SampleError", "Sampler", "read_frames", "run_sample", "main"]

log = logging.getLogger("worldsim.sample")


@entry_point("sample")
def main(cfg: DictConfig) -> None:
    info = run_sample(typed(SampleConfig, job_config(cfg), "sample"))
    print(f"wrote {Path(cfg.out).resolve() / 'sample.npz'} ({info['frames'][0]} frames, {info['mode']})")


if __name__ == "__main__":
    main()
