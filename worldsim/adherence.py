"""Prompt adherence: ``python -m worldsim.adherence [checkpoint=PATH] samples=N out=DIR``.

Does the model do what the prompt says: the objects of a text-to-video prompt, the
hidden parameters only the caption names (fragile against sturdy panes, very bouncy
against dead balls), and extension, backward extension, connection and loops
against the physics. :mod:`worldsim.evaluate.adherence` does the work and says how
each check is measured; writes ``adherence.json`` and ``adherence.md``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from worldsim.checkpoint import CheckpointError
from worldsim.config import config_dir, typed
from worldsim.evaluate.adherence import AdherenceConfig, run_adherence, summary_markdown

log = logging.getLogger("worldsim.adherence")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="adherence")
def main(cfg: DictConfig) -> None:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        result = run_adherence(typed(AdherenceConfig, plain, "adherence"))
        print(summary_markdown(result))
        print(f"wrote {Path(cfg.out).resolve() / 'adherence.json'}")
    except (ValueError, CheckpointError) as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
