"""Compare learned rollouts with the physics: ``python -m worldsim.compare checkpoint=PATH
scene=S engine=E episodes=N horizon=H context=K seed=SEED out=DIR``.

Writes ``metrics.json``, ``episodes.jsonl``, ``report.md``, ``horizon.png`` and
``compare.mp4`` into ``out`` (:mod:`worldsim.evaluate.compare` does the work,
:mod:`worldsim.evaluate.report` says what each file holds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from worldsim.cli import entry_point
from worldsim.config import job_config, typed
from worldsim.evaluate.compare import CompareConfig, run_compare
from worldsim.sim.scenes import scene_config

log = logging.getLogger("worldsim.compare")


def _overrides(scene: str, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a composed scene config that differ from the scene's defaults."""
    default = scene_config(scene)
    return {k: v for k, v in values.items() if getattr(default, k, None) != v}


@entry_point("compare")
def main(cfg: DictConfig) -> None:
    plain = job_config(cfg)
    assert isinstance(plain, dict)
    scene = plain.pop("scene")
    scene.pop("_target_", None)
    plain["scene"] = HydraConfig.get().runtime.choices["scene"]
    plain["scene_overrides"] = _overrides(plain["scene"], scene)
    plain["engine"] = plain.pop("engine")["name"]
    result = run_compare(typed(CompareConfig, plain, "compare"))
    s = result["summary"]["model"]
    at16 = lambda key: s.get(key, {}).get("at_16")  # noqa: E731
    lost = at16("objects_lost_rate")
    # the plain error averages only objects found in both: never shown without the share lost
    print(f"wrote {Path(cfg.out).resolve()}: at step 16 position error {at16('position_error_px')} px, "
          f"{'–' if lost is None else f'{100 * lost:.1f}%'} of objects lost, charged error {at16('position_error_charged_px')} px; "
          f"score {result.get('scores', {}).get('model', {}).get('score')}")


if __name__ == "__main__":
    main()
