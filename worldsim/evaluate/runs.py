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
        headline[scene] = {  # the plain error (objects found in both) beside the share lost and the charged error
            "position_error_px": _at(curves, "position_error_px", 16),
            "objects_lost_rate": _at(curves, "objects_lost_rate", 16),
            "position_error_charged_px": _at(curves, "position_error_charged_px", 16),
            "psnr": _at(curves, "psnr", 8),
            "count_violation_rate": _mean(curves.get("count_violation_rate") or []),
            "score": r.get("scores", {}).get("model", {}).get("score"),
        }
    keys = ("position_error_px", "objects_lost_rate", "position_error_charged_px", "psnr", "count_violation_rate", "score")
    mean = {k: _mean([h[k] for h in headline.values()]) for k in keys}
    result = {"scenes": headline, "mean": mean, "undefined": _undefined(headline, keys)}
    atomic_write_text(out / "eval" / "summary.json", json.dumps(result, indent=1, default=float))
    return result


def fidelity_headline(result: dict[str, Any]) -> dict[str, Any]:
    """The fidelity probe's figures as one flat row (means over the probed scenes). A
    scene where a figure is undefined (every object lost: no position error) is left out
    of that mean and named under ``undefined``."""
    getters: dict[str, Any] = {
        "tf_lost": lambda s: s["one_step"]["objects_lost"],
        "tf_err_px": lambda s: s["one_step"]["position_error_px"],
        "tf_err_px_copy": lambda s: s["one_step"]["position_error_px_copy_last"],
        "tf_latent_mse": lambda s: s["one_step"]["latent_mse"],
        "tf_latent_mse_copy": lambda s: s["one_step"]["latent_mse_copy_last"],
        "tf_object_mse": lambda s: s["one_step"].get("object_pixel_mse"),
        "tf_object_mse_copy": lambda s: s["one_step"].get("object_pixel_mse_copy_last"),
    }
    for k in (1, 4, 16):
        getters[f"ar_err_px@{k}"] = lambda s, k=k: s["autoregressive"]["position_error_px"].get(f"at_{k}")
        getters[f"ar_lost@{k}"] = lambda s, k=k: s["autoregressive"]["objects_lost"].get(f"at_{k}")
    getters["ar_lost_mean"] = lambda s: s["autoregressive"]["objects_lost_mean"]
    getters["count_violation_rate"] = lambda s: s["autoregressive"]["count_violation_rate"]
    getters["break_agreement"] = lambda s: s["autoregressive"]["break_agreement"]
    per_scene = {name: {key: get(s) for key, get in getters.items()} for name, s in result["scenes"].items()}
    row: dict[str, Any] = {key: _mean([r[key] for r in per_scene.values()]) for key in getters}
    row["steps_per_s"] = result.get("steps_per_s_single")
    row["gate_one_step"] = result["gates"]["one_step"]
    row["gate_autoregressive"] = result["gates"]["autoregressive"]
    # break agreement is a shatter figure: undefined elsewhere by design, not named
    row["undefined"] = _undefined(per_scene, [k for k in getters if k != "break_agreement"])
    return row


def judge_fidelity(cfg: TrainConfig, evaluation: Evaluation) -> dict[str, Any]:
    """The fidelity probe on the run's data (test split) for its latest checkpoint and
    every kept one before it (the curve against training FLOPs): ``out/eval/fidelity.json``,
    ``out/eval/fidelity_curve.json``."""
    out = Path(cfg.out)
    data = cfg.data[0] if isinstance(cfg.data, list) else cfg.data
    latest = latest_checkpoint(out)
    curve = []
    if latest is None or not step_checkpoints(out):
        raise ValueError(f"{out} holds no checkpoint to probe (checkpoints/step_*.pt); train it first, or give eval_only=false")
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


def _undefined(rows: dict[str, dict[str, Any]], keys: Any) -> dict[str, list[str]]:
    """For each of ``keys``, the rows (scenes) where it is undefined (None), when any is:
    a mean over the rest says so beside it rather than hiding them."""
    out = {k: [name for name, r in rows.items() if r.get(k) is None] for k in keys}
    return {k: v for k, v in out.items() if v}


def _mean(values: list[Any]) -> float | None:
    v = [float(x) for x in values if x is not None]
    return sum(v) / len(v) if v else None
