"""Experiments: a training run with everything it needs made first, and judged after.

``python -m worldsim.train experiment=NAME`` (``conf/experiment/NAME.yaml``) may ask for

* ``data`` as a **recipe** instead of a folder: ``{suite, scenes, engines, episodes,
  test_episodes, ood_episodes, frames, resolution, seed}``. It is generated once into
  ``data_root/<label>-<hash>/`` (under a file lock, so the runs of a sweep that share
  a recipe share the folder) and reused by every run that asks for the same recipe;
* ``autoencoder: train`` (DiT stage): the ``ae`` architecture is trained first, with
  ``ae_train`` settings, into ``out/autoencoder``;
* ``eval: true``: when training ends, the run is judged by the ``judge`` the caller
  passes (``python -m worldsim.train`` passes :func:`worldsim.evaluate.runs.judge_run`:
  reconstruction figures for the autoencoder stage, paired rollouts or the fidelity
  probe for the DiT stage), into ``out/eval/``. Training knows nothing of evaluation.

Every run directory ends with ``train_summary.json`` (steps, measured training FLOPs,
wall time, last loss) and ``done.json``. A run whose ``done.json`` matches its
config is skipped when launched again; an interrupted one resumes from its latest
checkpoint. That makes a re-launched sweep redo only what did not finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worldsim.atomic import atomic_write_text, file_lock
from worldsim.checkpoint import export_safetensors, load_checkpoint, step_checkpoints
from worldsim.config import load_group, typed
from worldsim.data.generation import StreamConfig, generate_stream
from worldsim.runtime import choose_threads
from worldsim.sim.scenes import parse_resolution
from worldsim.training.loop import OptimConfig, TrainConfig, config_from_plain, train
from worldsim.training.stages import DiTStageConfig

log = logging.getLogger("worldsim.training.experiment")

# A judge: (the run's TrainConfig, the ``evaluation`` settings) -> the run's headline figures.
Judge = Callable[[TrainConfig, dict[str, Any]], dict[str, Any]]

# Keys that change how a run is carried out, not what it computes.
NON_SEMANTIC = ("out", "name", "tag", "export", "export_at_flops", "num_workers", "threads", "device", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                "eval_only", "progress")


@dataclass
class DataRecipe:
    """Episodes to generate before training (see the module docstring)."""

    suite: str | None = "default"  # conf/suite/NAME.yaml: its scenes and engines (null: scenes and engines below)
    scenes: list[str] | None = None  # overrides the suite's scenes
    engines: list[str] | None = None  # overrides the suite's engines
    episodes: int = 2000  # train episodes per scene and engine
    test_episodes: int = 200
    ood_episodes: int = 200
    frames: int = 32
    resolution: Any = 64  # 64, "48x64" or [48, 64]
    seed: int = 0
    workers: int = 1  # generation processes (the data is the same whatever this is)
    dir: str | None = None  # where to write (null: data_root/<label>-<hash>)
    data_root: str = "data/experiments"

    def __post_init__(self) -> None:
        if self.suite is None and not (self.scenes and self.engines):
            raise ValueError("data recipe: without a suite, give scenes and engines (e.g. scenes: [bouncing_balls], engines: [pybullet])")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"data recipe: seed must be a whole number >= 0, got {self.seed!r}")
        if min(self.episodes, self.test_episodes, self.ood_episodes) < 0 or self.episodes < 1:
            raise ValueError(f"data recipe: episodes must be >= 1 and test/ood counts >= 0, got {self.episodes}, "
                             f"{self.test_episodes}, {self.ood_episodes}")

    def content(self) -> dict[str, Any]:
        """What the data depends on (not where it goes or how many processes make it)."""
        scenes, engines = self.scene_names(), self.engine_names()
        return {"scenes": scenes, "engines": engines, "episodes": self.episodes, "test_episodes": self.test_episodes,
                "ood_episodes": self.ood_episodes, "frames": self.frames, "resolution": list(parse_resolution(self.resolution)), "seed": self.seed}

    def _suite(self) -> dict[str, Any]:
        if self.suite is None:
            return {}
        try:
            return load_group("suite", self.suite, instantiate=False)
        except ValueError as e:
            raise ValueError(f"data recipe: {e}") from None

    def scene_names(self) -> list[str]:
        return list(self.scenes or self._suite()["scenes"])

    def engine_names(self) -> list[str]:
        return list(self.engines or self._suite()["engines"])

    def path(self) -> Path:
        if self.dir:
            return Path(self.dir)
        c = self.content()
        digest = hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:8]
        label = self.suite if self.suite and not (self.scenes or self.engines) else "-".join(c["scenes"])
        return Path(self.data_root) / f"{label}-{self.episodes}-{c['resolution'][0]}x{c['resolution'][1]}-{digest}"


def ensure_data(data: Any, *, progress: bool = True) -> str | list[str]:
    """A data folder (or several) for ``data``: folders as they are, a recipe
    generated first (once; completed if a previous attempt was interrupted)."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (list, tuple)):
        return [str(d) for d in data]
    if not isinstance(data, dict):
        raise ValueError(f"data must be a folder, a list of folders or a recipe (a mapping), got {data!r}")
    recipe = typed(DataRecipe, data, "data")
    root = recipe.path()
    marker = root / "recipe.json"
    content = recipe.content()
    with file_lock(root.parent / f".{root.name}.lock"):
        if marker.is_file() and json.loads(marker.read_text()) == content:
            return str(root)
        log.info("generating %s", root)
        res = parse_resolution(recipe.resolution)
        counts = {"train": recipe.episodes, "test": recipe.test_episodes, "ood": recipe.ood_episodes}
        for scene_name in content["scenes"]:
            scene = load_group("scene", scene_name)
            for engine_name in content["engines"]:
                engine = load_group("engine", engine_name)
                for split, n in counts.items():
                    if n:
                        stream = StreamConfig(scene=scene, engine=engine, episodes=n, frames=recipe.frames, resolution=res, seed=recipe.seed, split=split)
                        generate_stream(stream, root, workers=recipe.workers, progress=progress)
        atomic_write_text(marker, json.dumps(content, indent=1))
    return str(root)


def config_hash(plain: dict[str, Any]) -> str:
    semantic = {k: v for k, v in plain.items() if k not in NON_SEMANTIC}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class AETrain:
    """How ``autoencoder: train`` trains the autoencoder before the DiT."""

    max_steps: int = 2000
    batch_size: int = 16
    clip_frames: int = 8
    lr: float = 1e-3
    warmup_steps: int = 200
    decay: str = "cosine"
    min_lr_ratio: float = 0.05
    object_weight: float = 8.0


def export_source(out: Path, at_flops: float | None) -> Path:
    """What a run's export writes: the run itself (its last checkpoint), or with
    ``at_flops`` the first kept checkpoint that had trained at least that many FLOPs
    (``export_at_flops``: a checkpoint part-way down the schedule, as the reference
    model is)."""
    if at_flops is None:
        return out
    seen = []
    for path in step_checkpoints(out):  # oldest first: stop at the first that reached them
        flops = float(load_checkpoint(path, kind="dit")["compute"]["flops"])
        if flops >= float(at_flops):
            return path
        seen.append(f"{path.name} {flops:.3g}")
    raise ValueError(f"export_at_flops={float(at_flops):.3g}: no kept checkpoint of {out} trained that many FLOPs (kept: {', '.join(seen) or 'none'}); "
                     "lower export_at_flops, raise max_flops, or set export_at_flops=null to export the last step")


# Keys of conf/train.yaml that drive a run (what to judge, export, name it, threads) and
# are not the training's own (TrainConfig): run_experiment and bench train take them off.
DRIVER_KEYS = ("eval", "evaluation", "ae_train", "threads", "export", "export_at_flops", "name", "tag", "experiment")


def split_driver_keys(plain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the driver's keys, the rest: a TrainConfig's) of a resolved config."""
    return {k: v for k, v in plain.items() if k in DRIVER_KEYS}, {k: v for k, v in plain.items() if k not in DRIVER_KEYS}


def run_experiment(plain: dict[str, Any], *, judge: Judge | None = None, progress: bool = True) -> dict[str, Any]:
    """Everything ``python -m worldsim.train`` does for one run, from the resolved
    config as a plain dict (``out`` set to the run directory); ``judge`` judges it
    when ``eval`` (or ``eval_only``) is set."""
    driver, plain = split_driver_keys(plain)
    out = Path(plain["out"])
    do_eval = bool(driver.get("eval", False))
    evaluation = dict(driver.get("evaluation") or {})
    ae_train = typed(AETrain, driver.get("ae_train"), "ae_train")
    threads = driver.get("threads")
    export = driver.get("export")
    export_at_flops = driver.get("export_at_flops")
    choose_threads(threads)
    digest = config_hash({**plain, "eval": do_eval})
    done = out / "done.json"
    if done.is_file() and not plain.get("eval_only"):
        previous = json.loads(done.read_text())
        if previous.get("config_hash") == digest:
            log.info("%s finished already (done.json); skipped", out)
            print(f"{out}: finished already, skipped")
            return previous
    if plain.get("stage") == "dit":  # the stage's settings checked before data or an autoencoder is made
        DiTStageConfig.from_options(plain)
    plain["data"] = ensure_data(plain["data"], progress=progress)
    compute: dict[str, Any] = {}
    if plain.get("stage") == "dit" and plain.get("autoencoder") == "train":
        ae_out = out / "autoencoder"
        ae_cfg = TrainConfig(
            stage="autoencoder", data=plain["data"], out=str(ae_out), max_steps=ae_train.max_steps, batch_size=ae_train.batch_size,
            clip_frames=ae_train.clip_frames, resolution=plain.get("resolution"), seed=int(plain.get("seed", 0)), precision=plain.get("precision", "auto"),
            device=plain.get("device", "auto"), num_workers=int(plain.get("num_workers", 1)), log_every=int(plain.get("log_every", 10)),
            sample_every=int(plain.get("sample_every", 500)), checkpoint_every=min(int(plain.get("checkpoint_every", 500)), ae_train.max_steps),
            optim=OptimConfig(lr=ae_train.lr, warmup_steps=ae_train.warmup_steps, decay=ae_train.decay, min_lr_ratio=ae_train.min_lr_ratio),
            stage_options={"ae": plain.get("ae", {}), "object_weight": ae_train.object_weight},
        )
        train(ae_cfg)
        compute["autoencoder"] = _summary(ae_out)
        plain["autoencoder"] = str(ae_out)
    cfg = config_from_plain(plain)
    if not cfg.eval_only:
        train(cfg)
    compute[cfg.stage] = _summary(out)
    result: dict[str, Any] = {
        "config_hash": digest,
        "stage": cfg.stage,
        "compute": compute,
        "flops": sum(float(c.get("flops", 0.0)) for c in compute.values()),
        "wall_s": sum(float(c.get("wall_s", 0.0)) for c in compute.values()),
        "loss": compute[cfg.stage].get("loss"),
    }
    if do_eval or cfg.eval_only:
        if judge is None:
            raise ValueError("eval=true or eval_only=true needs a judge (python -m worldsim.train passes worldsim.evaluate.runs.judge_run)")
        result["eval"] = judge(cfg, evaluation)
    if export and cfg.stage == "dit" and int(os.environ.get("RANK", "0")) == 0:
        source = export_source(out, export_at_flops)
        path = export_safetensors(source, export)
        result["export"] = {"path": str(path), "bytes": path.stat().st_size, "source": str(source)}
        log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    if int(os.environ.get("RANK", "0")) == 0 and not cfg.eval_only:  # rank 0 writes; an evaluation alone finishes nothing
        atomic_write_text(done, json.dumps(result, indent=1, default=float))
    return result


def _summary(out: Path) -> dict[str, Any]:
    path = out / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}
