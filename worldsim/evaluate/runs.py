"""Judging a trained run (what ``eval=true`` runs after training): the autoencoder by
its reconstructions, a DiT by paired rollouts per scene (:mod:`worldsim.evaluate.compare`)
or by the fidelity probe on the data's test split at every kept checkpoint
(:mod:`worldsim.evaluate.fidelity`). Everything goes under ``out/eval/``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldsim.atomic import atomic_write_text
from worldsim.checkpoint import latest_checkpoint, load_checkpoint, step_checkpoints
from worldsim.config import typed
from worldsim.data.dataset import select_episodes
from worldsim.evaluate.autoencoder import evaluate_autoencoder
from worldsim.evaluate.compare import CompareConfig, run_compare
from worldsim.evaluate.fidelity import FidelityConfig, run_fidelity
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.runtime import resolve_device, resolve_precision
from worldsim.training.loop import TrainConfig


@dataclass
class Evaluation:
    """What ``eval: true`` measures for the DiT stage (conf/train.yaml, ``evaluation``)."""

    kind: str = "compare"  # compare | fidelity
    scenes: list[str] | None = None  # null: every scene of the data
    engine: str = "pybullet"
    episodes: int = 8
    first_episode: int = 0  # fidelity: the probe reads episodes first_episode.. of the split (by index)
    horizon: int = 16
    context: int = 4
    split: str = "test"
    baselines: list[str] = field(default_factory=lambda: ["copy_last", "constant_velocity", "autoencoder", "physical_variance"])
    sampler_steps: int | None = None  # null: the model's own
    videos: int = 2

    def __post_init__(self) -> None:
        if self.kind not in ("compare", "fidelity"):
            raise ValueError(f"evaluation.kind must be compare or fidelity, got {self.kind!r}")

def judge_run(cfg: TrainConfig, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The run's headline figures (see the module docstring); ``evaluation`` as in
    conf/train.yaml."""
    ev = typed(Evaluation, evaluation, "evaluation")
    if cfg.stage == "autoencoder":
        return judge_autoencoder(cfg)
    if ev.kind == "fidelity":
        return judge_fidelity(cfg, ev)
    return judge_compare(cfg, ev)


def judge_autoencoder(cfg: TrainConfig) -> dict[str, Any]:
    """Reconstruction figures of the run's latest autoencoder (EMA weights if kept) on
    the test split: ``out/eval.json``."""
    out = Path(cfg.out)
    state = load_checkpoint(out, kind="autoencoder")
    ae = Autoencoder(AutoencoderConfig(**state["config"]["ae"]))
    ae.load_state_dict(state["ema"] or state["model"])
    device = resolve_device(cfg.device)
    metrics = evaluate_autoencoder(ae.to(device).eval(), cfg.data, device=device, precision=resolve_precision(cfg.precision, device),
                                   episodes=cfg.eval_episodes)
    atomic_write_text(out / "eval.json", json.dumps(metrics, indent=1))
    print(json.dumps(metrics))
    return metrics


def judge_compare(cfg: TrainConfig, evaluation: Evaluation) -> dict[str, Any]:
    """Paired rollouts against the physics on every scene: ``out/eval/<scene>/``,
    ``out/eval/summary.json``."""
    out = Path(cfg.out)
    roots = cfg.data if isinstance(cfg.data, list) else [cfg.data]
    scenes = evaluation.scenes or sorted({r["scene"] for root in roots for r in select_episodes(root, split=None)})
    headline: dict[str, Any] = {}
    for scene in scenes:
        c = CompareConfig(
            checkpoint=str(out), scene=scene, engine=evaluation.engine, episodes=evaluation.episodes, horizon=evaluation.horizon,
            context=evaluation.context, split=evaluation.split, out=str(out / "eval" / scene), baselines=list(evaluation.baselines),
            sampler_steps=evaluation.sampler_steps, videos=evaluation.videos, device=cfg.device, precision=cfg.precision,
        )
        r = run_compare(c)
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
        "tf_object_mse": mean(lambda s: s["one_step"].get("object_pixel_mse")),
        "tf_object_mse_copy": mean(lambda s: s["one_step"].get("object_pixel_mse_copy_last")),
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


def judge_fidelity(cfg: TrainConfig, evaluation: Evaluation) -> dict[str, Any]:
    """The fidelity probe on the run's data (test split) for its latest checkpoint and
    every kept one before it (the curve against training FLOPs): ``out/eval/fidelity.json``,
    ``out/eval/fidelity_curve.json``."""
    out = Path(cfg.out)
    data = cfg.data[0] if isinstance(cfg.data, list) else cfg.data
    latest = latest_checkpoint(out)
    curve = []
    for ck in step_checkpoints(out):
        r = run_fidelity(FidelityConfig(
            checkpoint=str(ck), data=str(data), scenes=evaluation.scenes, engine=evaluation.engine, episodes=evaluation.episodes,
            first_episode=evaluation.first_episode, split=evaluation.split, context=evaluation.context, horizon=evaluation.horizon, sampler_steps=evaluation.sampler_steps, device=cfg.device,
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
