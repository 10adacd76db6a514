"""The one-command demo: ``python -m worldsim.demo``.

Loads the bundled reference model (or ``checkpoint=PATH``), runs paired rollouts on
every scene (the physics and the learned world from the same first frames, under
the same actions), and writes to ``out`` (default ``demo/``):

* ``demo.mp4``: truth | learned | difference, a few episodes of each scene;
* ``horizon.png``: position error against the step, per scene, with the
  copy-last and constant-velocity baselines;
* ``metrics.json``: every scene's summary; and each scene's full comparison
  (``out/<scene>/``: see :mod:`worldsim.compare`); the work is
:mod:`worldsim.evaluate.demo`'s.

Then prints where they are and a one-screen summary. Every setting is a Hydra
override (``conf/demo.yaml``): ``python -m worldsim.demo episodes=8 horizon=32``.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from worldsim.checkpoint import CheckpointError
from worldsim.config import config_dir, typed
from worldsim.evaluate.demo import DemoConfig, run_demo

log = logging.getLogger("worldsim.demo")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="demo")
def main(cfg: DictConfig) -> None:
    try:
        run_demo(typed(DemoConfig, OmegaConf.to_container(cfg, resolve=True), "demo"))
    except (ValueError, CheckpointError) as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
