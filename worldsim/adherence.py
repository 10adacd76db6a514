"""Prompt adherence: ``python -m worldsim.adherence [checkpoint=PATH] samples=N out=DIR``.

Does the model do what the prompt says: the objects of a text-to-video prompt, the
hidden parameters only the caption names (fragile against sturdy panes, very bouncy
against dead balls), and extension, backward extension, connection and loops
against the physics. :mod:`worldsim.evaluate.adherence` does the work and says how
each check is measured; writes ``adherence.json`` and ``adherence.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from worldsim.cli import entry_point
from worldsim.config import job_config, typed
from worldsim.evaluate.adherence import AdherenceConfig, run_adherence, summary_markdown

log = logging.getLogger("worldsim.adherence")


@entry_point("adherence")
def main(cfg: DictConfig) -> None:
    result = run_adherence(typed(AdherenceConfig, job_config(cfg), "adherence"))
    print(summary_markdown(result))
    print(f"wrote {Path(cfg.out).resolve() / 'adherence.json'}")


if __name__ == "__main__":
    main()
