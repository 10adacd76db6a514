"""Training: ``python -m worldsim.train stage=autoencoder|dit data=DIR out=RUN max_steps=N``,
or a named experiment: ``python -m worldsim.train experiment=NAME [eval=true]``.

The loop is :mod:`worldsim.training.loop`, the stages :mod:`worldsim.training.autoencoder`
and :mod:`worldsim.training.dit`, the experiment runner (data made first, the run judged
after) :mod:`worldsim.training.experiment`; ``eval=true`` judges the run with
:func:`worldsim.evaluate.runs.judge_run`. ``torchrun --nproc_per_node=N -m
worldsim.train ...`` runs data-parallel; a rerun on the same ``out`` resumes.
"""

from __future__ import annotations

import logging

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from worldsim.cli import entry_point
from worldsim.evaluate.runs import judge_run
from worldsim.training.experiment import run_experiment
from worldsim.training.loop import TrainingError

log = logging.getLogger("worldsim.train")


@entry_point("train", errors=(TrainingError,))
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # every job of a sweep: its own folder under the sweep's
        OmegaConf.update(cfg, "out", hc.runtime.output_dir, force_add=True)
    if OmegaConf.is_missing(cfg, "out") or OmegaConf.is_missing(cfg, "data"):
        missing = [k for k in ("data", "out") if OmegaConf.is_missing(cfg, k)]
        raise TrainingError(f"missing {' and '.join(missing)}: pass data=DIR out=RUN_DIR, or an experiment (experiment=tiny)")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("experiment", None)
    run_experiment(plain, judge=judge_run)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
