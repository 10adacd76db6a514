"""Generate episodes: ``python -m worldsim.generate scene=S engine=E episodes=N out=DIR ...``
(or ``suite=default`` for every scene in both engines and every split).

Resumable, byte-identical whatever ``workers`` is, and shardable
(``-m shard=0,1,2,3 shards=4``); :mod:`worldsim.data.generation` does the work and
describes the folder it writes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from omegaconf import DictConfig

from worldsim.cli import entry_point
from worldsim.config import load_group, whole
from worldsim.data.generation import StreamConfig, generate_stream, write_preview
from worldsim.sim.scenes import SPLITS, ConfigError, parse_resolution

log = logging.getLogger("worldsim.generate")


def streams_from_config(cfg: DictConfig) -> list[StreamConfig]:
    """The streams a generate config asks for: one, or every stream of a suite."""
    common = dict(frames=whole(cfg.frames, "frames"), resolution=parse_resolution(cfg.resolution), seed=whole(cfg.seed, "seed", minimum=0))
    if cfg.get("suite") is None:
        scene = hydra.utils.instantiate(cfg.scene, _convert_="all")
        engine = hydra.utils.instantiate(cfg.engine, _convert_="all")
        return [StreamConfig(scene=scene, engine=engine, episodes=whole(cfg.episodes, "episodes", minimum=0), split=str(cfg.split), **common)]
    streams = []
    for scene_name, counts in cfg.suite.scenes.items():
        bad = [k for k in counts if k not in SPLITS]
        if bad:
            raise ConfigError(f"suite.scenes.{scene_name}: unknown splits {bad}; valid: {SPLITS}")
        scene = load_group("scene", scene_name)
        for engine_name in cfg.suite.engines:
            engine = load_group("engine", engine_name)
            for split, n in counts.items():
                streams.append(StreamConfig(scene=scene, engine=engine, episodes=int(n), split=split, **common))
    return streams


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Everything ``python -m worldsim.generate`` does, from a composed config."""
    streams = streams_from_config(cfg)
    rows: list[dict[str, Any]] = []
    for stream in streams:
        rows += generate_stream(
            stream, cfg.out, workers=whole(cfg.workers, "workers", minimum=1), shard=whole(cfg.shard, "shard", minimum=0),
            shards=whole(cfg.shards, "shards", minimum=1), progress=bool(cfg.progress)
        )
    if cfg.preview and whole(cfg.shard, "shard") == 0:
        shown = rows
        if len(streams) > 1:  # a suite: the first episode of every stream
            firsts: dict[str, dict[str, Any]] = {}
            for r in rows:
                firsts.setdefault(r["id"].rsplit("-", 1)[0], r)
            shown = list(firsts.values())
        path = write_preview(cfg.out, shown)
        if path is not None:
            log.info("preview: %s", path)
    log.info("%d episodes in %s", len(rows), os.path.abspath(cfg.out))
    return rows


@entry_point("generate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
