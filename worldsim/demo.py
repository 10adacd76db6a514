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

from omegaconf import DictConfig

from worldsim.cli import entry_point
from worldsim.config import job_config, typed
from worldsim.evaluate.demo import DemoConfig, run_demo

log = logging.getLogger("worldsim.demo")


@entry_point("demo")
def main(cfg: DictConfig) -> None:
    run_demo(typed(DemoConfig, job_config(cfg), "demo"))


if __name__ == "__main__":
    main()
