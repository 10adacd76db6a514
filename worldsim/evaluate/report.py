"""Writing a comparison down: metrics.json, episodes.jsonl, report.md, horizon.png,
compare.mp4 (with compare.gif and the contact sheet compare.png).

Scores (0-100, per scene), in the spirit of Physics-IQ: each metric of a rollout,
averaged over the horizon, is set against the same metric of the physical-variance
baseline (the physics rerun from a 1 mm perturbation: what chaos alone allows)::

    error metrics (lower is better):   100 * min(1, (pv + e) / (model + e))
    quality metrics (higher is better): 100 * min(1, model / pv)

with e = 0.5 px for position errors, 0.1 px/frame for velocity, 0.01 for rates; the
score is their mean over position_error_charged_px (a lost object charged half the
frame's diagonal, so losing objects cannot raise it), velocity_error,
count_violation_rate, psnr, ssim and the spatiotemporal motion IoU. 100 means no worse
than physics disagreeing with itself. A part the physics defines and the source does not
(no velocity where it found no object twice running) counts 0 and is named under
``undefined``; a part the physics itself leaves undefined is not in the score.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from worldsim.atomic import atomic_path, atomic_write_text
from worldsim.video import write_labelled

SUMMARY_METRICS = ("position_error_px", "position_error_charged_px", "objects_lost_rate", "velocity_error", "count_violation_rate", "psnr", "ssim",
                   "motion_iou", "agent_displacement_error_px")
# The score's position part is the charged error: a lost object counts (metrics.lost_penalty_px).
SCORE_ERRORS = {"position_error_charged_px": 0.5, "velocity_error": 0.1, "count_violation_rate": 0.01}
SCORE_QUALITIES = ("psnr", "ssim", "spatiotemporal_iou")


def _nanmean(values: Any) -> float | None:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or not np.isfinite(a).any():
        return None
    return float(np.nanmean(a))


def aggregate(per_episode: list[dict[str, Any]], horizon: int) -> dict[str, Any]:
    """Mean over episodes: per-step curves (H values; None where undefined) and scalars."""
    out: dict[str, Any] = {}
    for key in per_episode[0]:
        values = [ep[key] for ep in per_episode]
        if isinstance(values[0], np.ndarray):
            stack = np.stack([np.asarray(v, np.float64) for v in values])  # (E, H)
            with np.errstate(invalid="ignore"), _quiet():
                curve = np.nanmean(stack, axis=0)
            out[key] = [None if not math.isfinite(x) else round(float(x), 5) for x in curve]
        elif isinstance(values[0], (bool, np.bool_)):
            out[key] = round(float(np.mean(values)), 4)
        else:
            m = _nanmean([np.nan if v is None else v for v in values])
            out[key] = None if m is None else round(m, 5)
    return out


class _quiet:
    def __enter__(self) -> None:

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def summarize(curves: dict[str, Any], horizons: tuple[int, ...] = (8, 16, 32)) -> dict[str, Any]:
    """Each per-step metric at steps 8, 16, 32 and its mean over steps 1..h."""
    out: dict[str, Any] = {}
    for key in SUMMARY_METRICS:
        curve = curves.get(key)
        if not isinstance(curve, list):
            continue
        a = np.array([np.nan if v is None else v for v in curve], np.float64)
        entry = {}
        for h in horizons:
            if h <= len(a):
                entry[f"at_{h}"] = None if not np.isfinite(a[h - 1]) else round(float(a[h - 1]), 4)
                m = _nanmean(a[:h])
                entry[f"mean_to_{h}"] = None if m is None else round(m, 4)
        out[key] = entry
    for key, v in curves.items():
        if not isinstance(v, list):
            out[key] = v
    return out


def score(model: dict[str, Any], physical: dict[str, Any]) -> dict[str, Any]:
    """The 0-100 score (see the module docstring), with each metric's part."""
    parts: dict[str, float] = {}
    for key, eps in SCORE_ERRORS.items():
        m, p = _mean_of(model.get(key)), _mean_of(physical.get(key))
        if p is not None:
            parts[key] = 0.0 if m is None else 100.0 * min(1.0, (p + eps) / (m + eps))
    for key in SCORE_QUALITIES:
        m, p = _mean_of(model.get(key)), _mean_of(physical.get(key))
        if p is not None and p > 0:
            parts[key] = 0.0 if m is None else 100.0 * min(1.0, max(0.0, m) / p)
    undefined = [k for k in parts if _mean_of(model.get(k)) is None]  # counted 0: nothing of the source's to measure
    out = {"score": round(float(np.mean(list(parts.values()))), 2) if parts else None, "parts": {k: round(v, 2) for k, v in parts.items()}}
    return out | ({"undefined": undefined} if undefined else {})


def _mean_of(v: Any) -> float | None:
    if isinstance(v, list):
        return _nanmean([np.nan if x is None else x for x in v])
    return None if v is None else float(v)


def plot_horizon(path: str | Path, sources: dict[str, dict[str, Any]], *, title: str) -> Path:
    """Every per-step metric against the step, one line per source."""

    keys = [k for k in SUMMARY_METRICS if any(isinstance(s.get(k), list) and any(v is not None for v in s[k]) for s in sources.values())]
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, curves in sources.items():
            curve = curves.get(key)
            if isinstance(curve, list):
                y = np.array([np.nan if v is None else v for v in curve], np.float64)
                style = {"lw": 2.2, "color": "black"} if name.startswith("model") else {"lw": 1.2}
                ax.plot(np.arange(1, len(y) + 1), y, label=name, **style)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def write_comparison(
    path: str | Path, labels: list[str], truth: list[np.ndarray], preds: list[np.ndarray], *, fps: float, first_step: int = 1, gif: bool = True
) -> dict[str, Path]:
    """The comparison for people: one row per episode (``labels``), columns truth |
    learned | difference (amplified), tiles enlarged to 256 px, the step on every frame;
    ``path`` (.mp4), the same as .gif, and a .png contact sheet of truth and learned at
    six steps."""
    rows = []
    for label, t, p in zip(labels, truth, preds):
        diff = np.clip(np.abs(t.astype(np.int16) - p.astype(np.int16)) * 2, 0, 255).astype(np.uint8)
        rows.append((label, [t, p, diff]))
    return write_labelled(Path(path).with_suffix(""), rows, ["truth", "learned", "difference"], fps=fps, gif=gif, sheet_columns=[0, 1],
                          first_step=first_step)


def write_report(out: str | Path, result: dict[str, Any], *, episodes: list[dict[str, Any]]) -> None:
    """metrics.json, episodes.jsonl and report.md in ``out``."""
    out = Path(out)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    atomic_write_text(out / "episodes.jsonl", "".join(json.dumps(e) + "\n" for e in episodes))
    cfg = result["config"]
    lines = [
        f"# Rollout comparison: {cfg['scene']} ({cfg['engine']})",
        "",
        f"Checkpoint `{cfg['checkpoint']}`; {cfg['episodes']} episodes of the {cfg['split']} split, context {cfg['context']}, "
        f"horizon {cfg['horizon']}, seed {cfg['seed']}.",
        "",
        "Detector error on the true frames (the reader's own error): "
        + ("undefined (no object in view to measure)." if result["reader_error_px"] is None else f"{result['reader_error_px']} px."),
        "",
    ]
    if result.get("scores"):
        lines += ["## Scores (0-100; 100 = no worse than physical variance)", "", "| source | score |", "|---|---|"]
        for name, s in result["scores"].items():
            lines.append(f"| {name} | {s['score']} |")
        lines.append("")
    sources = {"model": result["summary"]["model"], **result["summary"]["baselines"]}
    for extra in ("model_b",):
        if extra in result["summary"]:
            sources = {extra: result["summary"][extra], **sources}
    for h in (8, 16, 32):
        if h > cfg["horizon"]:
            continue
        lines += [f"## At step {h}", "", "| metric | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
        for key in SUMMARY_METRICS:
            row = [sources[s].get(key, {}).get(f"at_{h}") if isinstance(sources[s].get(key), dict) else None for s in sources]
            if all(v is None for v in row):
                continue
            lines.append(f"| {key} | " + " | ".join("–" if v is None else f"{v:.4g}" for v in row) + " |")
        lines.append("")
    scalars = [k for k, v in result["summary"]["model"].items() if not isinstance(v, dict)]
    if scalars:
        lines += ["## Per-episode facts (means)", "", "| metric | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
        for key in scalars:
            row = [sources[s].get(key) for s in sources]
            lines.append(f"| {key} | " + " | ".join("–" if v is None else (f"{v:.4g}" if isinstance(v, (int, float)) else str(v)) for v in row) + " |")
        lines.append("")
    lines += ["![error against the step](horizon.png)", "", "Video: `compare.mp4` (truth | prediction | difference)."]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
