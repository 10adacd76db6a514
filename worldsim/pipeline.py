"""Experiments: a training run with everything it needs made first, and judged after.

``python -m worldsim.train experiment=NAME`` (``conf/experiment/NAME.yaml``) may ask for

* ``data`` as a **recipe** instead of a folder: ``{suite, scenes, engines, episodes,
  test_episodes, ood_episodes, frames, resolution, seed}``. It is generated once into
  ``data_root/<label>-<hash>/`` (under a file lock, so the runs of a sweep that share
  a recipe share the folder) and reused by every run that asks for the same recipe;
* ``autoencoder: train`` (DiT stage): the ``ae`` architecture is trained first, with
  ``ae_train`` settings, into ``out/autoencoder``;
* ``eval: true``: when training ends, the run is judged: the autoencoder stage by its
  reconstruction figures on the test split, the DiT stage by
  :mod:`worldsim.compare` on each scene (``evaluation``), into ``out/eval/``.

Every run directory ends with ``train_summary.json`` (steps, measured training FLOPs,
wall time, last loss) and ``done.json``. A run whose ``done.json`` matches its
config is skipped when launched again; an interrupted one resumes from its latest
checkpoint. That makes a re-launched sweep redo only what did not finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("worldsim.pipeline")

# Keys that change how a run is carried out, not what it computes.
NON_SEMANTIC = ("out", "name", "tag", "num_workers", "threads", "device", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
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
        if min(self.episodes, self.test_episodes, self.ood_episodes) < 0 or self.episodes < 1:
            raise ValueError(f"data recipe: episodes must be >= 1 and test/ood counts >= 0, got {self.episodes}, "
                             f"{self.test_episodes}, {self.ood_episodes}")

    def content(self) -> dict[str, Any]:
        """What the data depends on (not where it goes or how many processes make it)."""
        from worldsim.sim.scenes.base import parse_resolution

        scenes, engines = self.scene_names(), self.engine_names()
        return {"scenes": scenes, "engines": engines, "episodes": self.episodes, "test_episodes": self.test_episodes,
                "ood_episodes": self.ood_episodes, "frames": self.frames, "resolution": list(parse_resolution(self.resolution)), "seed": self.seed}

    def _suite(self) -> dict[str, Any]:
        from omegaconf import OmegaConf

        from worldsim.config import config_dir

        if self.suite is None:
            return {}
        path = Path(config_dir()) / "suite" / f"{self.suite}.yaml"
        if not path.is_file():
            valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ValueError(f"data recipe: unknown suite {self.suite!r}; valid: {', '.join(valid)}")
        return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]

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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) for a with-block, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_data(data: Any, *, progress: bool = True) -> str | list[str]:
    """A data folder (or several) for ``data``: folders as they are, a recipe
    generated first (once; completed if a previous attempt was interrupted)."""
    from worldsim.atomic import atomic_write_text
    from worldsim.generate import StreamConfig, _group_config, generate_stream
    from worldsim.sim.scenes.base import parse_resolution

    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (list, tuple)):
        return [str(d) for d in data]
    if not isinstance(data, dict):
        raise ValueError(f"data must be a folder, a list of folders or a recipe (a mapping), got {data!r}")
    known = {f.name for f in dataclasses.fields(DataRecipe)}
    bad = sorted(set(data) - known)
    if bad:
        raise ValueError(f"data recipe: unknown keys {bad}; valid: {sorted(known)}")
    recipe = DataRecipe(**data)
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
            scene = _group_config("scene", scene_name)
            for engine_name in content["engines"]:
                engine = _group_config("engine", engine_name)
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


@dataclass
class Evaluation:
    """What ``eval: true`` measures for the DiT stage (see :mod:`worldsim.compare`)."""

    kind: str = "compare"  # compare | fidelity
    scenes: list[str] | None = None  # null: every scene of the data
    engine: str = "pybullet"
    episodes: int = 8
    horizon: int = 16
    context: int = 4
    split: str = "test"
    baselines: list[str] = field(default_factory=lambda: ["copy_last", "constant_velocity", "autoencoder", "physical_variance"])
    sampler_steps: int = 4
    videos: int = 2

    def __post_init__(self) -> None:
        if self.kind not in ("compare", "fidelity"):
            raise ValueError(f"evaluation.kind must be compare or fidelity, got {self.kind!r}")


def run_experiment(plain: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Everything ``python -m worldsim.train`` does for one run, from the resolved
    config as a plain dict (``out`` set to the run directory)."""
    import torch

    from worldsim.atomic import atomic_write_text
    from worldsim.train import OptimConfig, TrainConfig, config_from_plain, train

    plain = dict(plain)
    out = Path(plain["out"])
    do_eval = bool(plain.pop("eval", False))
    evaluation = Evaluation(**(plain.pop("evaluation", None) or {}))
    ae_train = AETrain(**(plain.pop("ae_train", None) or {}))
    threads = plain.pop("threads", None)
    plain.pop("name", None)
    plain.pop("tag", None)
    if threads:
        torch.set_num_threads(int(threads))
    digest = config_hash({**plain, "eval": do_eval})
    done = out / "done.json"
    if done.is_file() and not plain.get("eval_only"):
        previous = json.loads(done.read_text())
        if previous.get("config_hash") == digest:
            log.info("%s finished already (done.json); skipped", out)
            print(f"{out}: finished already, skipped")
            return previous
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
        result["eval"] = evaluate_run(cfg, evaluation, progress=progress)
    if int(os.environ.get("RANK", "0")) == 0 and not cfg.eval_only:  # rank 0 writes; an evaluation alone finishes nothing
        atomic_write_text(done, json.dumps(result, indent=1, default=float))
    return result


def _summary(out: Path) -> dict[str, Any]:
    path = out / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def evaluate_run(cfg: Any, evaluation: Evaluation, *, progress: bool = True) -> dict[str, Any]:
    """The run's figures: reconstruction (autoencoder) or paired rollouts per scene
    (DiT), written under ``out/eval/``; returns the headline numbers."""
    from worldsim.atomic import atomic_write_text
    from worldsim.train import train

    out = Path(cfg.out)
    if cfg.stage == "autoencoder":
        return train(dataclasses.replace(cfg, eval_only=True))
    if evaluation.kind == "fidelity":
        return evaluate_fidelity(cfg, evaluation)
    from worldsim.compare import CompareConfig
    from worldsim.compare import run as compare
    from worldsim.data.dataset import select_episodes

    roots = cfg.data if isinstance(cfg.data, list) else [cfg.data]
    scenes = evaluation.scenes or sorted({r["scene"] for root in roots for r in select_episodes(root, split=None)})
    headline: dict[str, Any] = {}
    for scene in scenes:
        c = CompareConfig(
            checkpoint=str(out), scene=scene, engine=evaluation.engine, episodes=evaluation.episodes, horizon=evaluation.horizon,
            context=evaluation.context, split=evaluation.split, out=str(out / "eval" / scene), baselines=list(evaluation.baselines),
            sampler_steps=evaluation.sampler_steps, videos=evaluation.videos, device=cfg.device, precision=cfg.precision,
        )
        r = compare(c)
        curves = r["model"]
        headline[scene] = {
            "position_error_px": _at(curves, "position_error_px", 16),
            "psnr": _at(curves, "psnr", 8),
            "count_violation_rate": _mean(curves.get("count_violation_rate") or []),
            "score": r.get("scores", {}).get("model", {}).get("score"),
        }
    keys = ("position_error_px", "psnr", "count_violation_rate", "score")
    mean = {k: _mean([h[k] for h in headline.values()]) for k in keys}
    result = {"scenes": headline, "mean": mean}
    atomic_write_text(out / "eval" / "summary.json", json.dumps(result, indent=1, default=float))
    return result


def fidelity_headline(result: dict[str, Any]) -> dict[str, Any]:
    """The fidelity probe's figures as one flat row (means over the probed scenes)."""
    scenes = result["scenes"].values()

    def mean(get: Any) -> float | None:
        return _mean([get(s) for s in scenes])

    row = {
        "tf_lost": mean(lambda s: s["one_step"]["objects_lost"]),
        "tf_err_px": mean(lambda s: s["one_step"]["position_error_px"]),
        "tf_err_px_copy": mean(lambda s: s["one_step"]["position_error_px_copy_last"]),
        "tf_latent_mse": mean(lambda s: s["one_step"]["latent_mse"]),
        "tf_latent_mse_copy": mean(lambda s: s["one_step"]["latent_mse_copy_last"]),
    }
    for k in (1, 4, 16):
        row[f"ar_err_px@{k}"] = mean(lambda s, k=k: s["autoregressive"]["position_error_px"].get(f"at_{k}"))
        row[f"ar_lost@{k}"] = mean(lambda s, k=k: s["autoregressive"]["objects_lost"].get(f"at_{k}"))
    row["ar_lost_mean"] = mean(lambda s: s["autoregressive"]["objects_lost_mean"])
    row["count_violation_rate"] = mean(lambda s: s["autoregressive"]["count_violation_rate"])
    row["break_agreement"] = mean(lambda s: s["autoregressive"]["break_agreement"])
    row["steps_per_s"] = result.get("steps_per_s_single")
    row["gate_one_step"] = result["gates"]["one_step"]
    row["gate_autoregressive"] = result["gates"]["autoregressive"]
    return row


def evaluate_fidelity(cfg: Any, evaluation: Evaluation) -> dict[str, Any]:
    """The fidelity probe on the run's data (test split) for its latest checkpoint and
    every kept one before it (the curve against training FLOPs): ``out/eval/fidelity.json``,
    ``out/eval/fidelity_curve.json``."""
    from worldsim.atomic import atomic_write_text
    from worldsim.checkpoint import latest_checkpoint
    from worldsim.evaluate.fidelity import FidelityConfig, run_fidelity

    out = Path(cfg.out)
    data = cfg.data[0] if isinstance(cfg.data, list) else cfg.data
    latest = latest_checkpoint(out)
    curve = []
    for ck in sorted((out / "checkpoints").glob("step_*.pt")):
        r = run_fidelity(FidelityConfig(
            checkpoint=str(ck), data=str(data), scenes=evaluation.scenes, engine=evaluation.engine, episodes=evaluation.episodes,
            context=evaluation.context, horizon=evaluation.horizon, sampler_steps=evaluation.sampler_steps, device=cfg.device,
            precision=cfg.precision, speed_steps=20 if ck == latest else 0,
        ))
        curve.append({"checkpoint": ck.name, "step": r["step"], "flops": r["train_flops"], **fidelity_headline(r)})
        final = r
    (out / "eval").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "eval" / "fidelity.json", json.dumps(final, indent=1))
    atomic_write_text(out / "eval" / "fidelity_curve.json", json.dumps(curve, indent=1))
    return {"mean": fidelity_headline(final), "scenes": final["scenes"], "curve": curve}


def _at(curves: dict[str, Any], metric: str, step: int) -> float | None:
    """A per-step metric at ``step`` (1-based), or at the last step if the horizon is shorter."""
    curve = curves.get(metric) or []
    return curve[min(step, len(curve)) - 1] if curve else None


def _mean(values: list[Any]) -> float | None:
    v = [float(x) for x in values if x is not None]
    return sum(v) / len(v) if v else None
