"""A sweep gathered into one table and plot (what ``python -m worldsim.report_sweep DIR`` writes).

``DIR`` is a Hydra multirun folder of ``python -m worldsim.train -m ...`` (one
sub-folder per run). Each finished run contributes a row: the settings that differ
between runs (from each run's ``.hydra-rank0/overrides.yaml``), its training
compute (measured FLOPs, autoencoder included, and wall time), its last loss and,
if it was evaluated (``eval=true``), its headline figures. Writes
``DIR/sweep.md``, ``DIR/sweep.csv`` and ``DIR/sweep.png`` (the error against
training compute, log scale, one line per value of a varied setting).

Options: ``--metric NAME`` (the plotted error: by default the fidelity probe's
``tf_err_px``, else ``position_error_charged_px``, when runs were evaluated, else ``loss``), ``--by KEY`` (the setting that makes the lines;
default: the first varied one that is not the one compute grows with).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from worldsim.atomic import atomic_write_text

METRICS = ("position_error_px", "objects_lost_rate", "position_error_charged_px", "psnr", "count_violation_rate", "score")


def _overrides(run: Path) -> dict[str, str]:

    for name in (".hydra-rank0", ".hydra"):
        path = run / name / "overrides.yaml"
        if path.is_file():
            items = yaml.safe_load(path.read_text()) or []
            return dict(item.split("=", 1) for item in items if "=" in item)
    return {}


def collect(sweep: Path) -> list[dict[str, Any]]:
    """One row per run folder under ``sweep`` (finished or not)."""
    rows = []
    for run in sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")):
        done = run / "done.json"
        info = json.loads(done.read_text()) if done.is_file() else {}
        row: dict[str, Any] = {"run": run.name, "finished": done.is_file(), "overrides": _overrides(run)}
        if not info:
            summary = run / "train_summary.json"
            if summary.is_file():
                s = json.loads(summary.read_text())
                info = {"flops": s.get("flops"), "wall_s": s.get("wall_s"), "loss": s.get("loss")}
        row["flops"], row["wall_s"], row["loss"] = info.get("flops"), info.get("wall_s"), info.get("loss")
        mean = (info.get("eval") or {}).get("mean") or {}
        if not mean and isinstance(info.get("eval"), dict):  # an autoencoder's evaluation
            mean = {k: v for k, v in info["eval"].items() if isinstance(v, (int, float))}
        for k, v in mean.items():
            row[k] = v
        undefined = mean.get("undefined") or (info.get("eval") or {}).get("undefined")
        if isinstance(undefined, dict):  # figures a mean leaves some scenes out of, and which
            row["undefined"] = "; ".join(f"{k}: {', '.join(v)}" for k, v in undefined.items()) or None
        rows.append(row)
    return rows


def varied_keys(rows: list[dict[str, Any]], *, hidden: tuple[str, ...] = ("out", "hydra.sweep.dir", "threads")) -> list[str]:
    keys = sorted({k for r in rows for k in r["overrides"] if k not in hidden})
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    varied = varied_keys(rows)
    extra = [m for m in METRICS if any(m in r for r in rows)]
    extra += sorted({k for r in rows for k in r if k not in (*METRICS, "run", "finished", "overrides", "flops", "wall_s", "loss")})
    header = [*varied, "finished", "train FLOPs", "wall s", "loss", *extra]
    body = [[r["overrides"].get(k) for k in varied] + [r["finished"], r["flops"], r["wall_s"], r["loss"]] + [r.get(k) for k in extra] for r in rows]
    return header, body


def markdown(header: list[str], body: list[list[Any]], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict[str, Any]], metric: str, by: str | None) -> Path:


    varied = varied_keys(rows)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        x, y = r.get("flops"), r.get(metric)
        if x is None or y is None or not math.isfinite(float(y)) or x <= 0:
            continue
        label = f"{by}={r['overrides'].get(by)}" if by else "runs"
        rest = ", ".join(f"{k}={r['overrides'].get(k)}" for k in varied if k != by)
        groups.setdefault(label, []).append((float(x), float(y)))
        ax.annotate(rest, (float(x), float(y)), fontsize=6, alpha=0.7)
    for label, pts in sorted(groups.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against training compute")
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


CURVE_METRICS = (("tf_latent_mse", "one step, teacher forced: MSE", "tf_latent_mse_copy"),
                 ("tf_err_px", "one step, teacher forced: position error (px)", "tf_err_px_copy"),
                 ("ar_lost_mean", "16 autoregressive steps: objects lost", None),
                 ("ar_err_px@4", "autoregressive position error at step 4 (px)", None))


def curves(sweep: Path) -> dict[str, list[dict[str, Any]]]:
    """Each run's fidelity probe at every kept checkpoint (eval/fidelity_curve.json);
    ``sweep`` may also be one run's folder."""
    out = {}
    if (sweep / "eval" / "fidelity_curve.json").is_file():
        out[sweep.name] = json.loads((sweep / "eval" / "fidelity_curve.json").read_text())
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "eval" / "fidelity_curve.json").is_file())
    overrides = {run: {k: v for k, v in _overrides(run).items() if k not in ("threads", "hydra.sweep.dir")} for run in runs}
    # a run is labelled by the overrides in which the runs differ (the experiment and tag too, where they do)
    varying = {k for o in overrides.values() for k in o if len({p.get(k) for p in overrides.values()}) > 1}
    for run in runs:
        label = ", ".join(f"{k}={v}" for k, v in overrides[run].items() if k in varying) or "base"
        if label in out:  # two runs alike in every override: each keeps its curve, named by its folder
            label = f"{label} ({run.name})"
        out[label] = json.loads((run / "eval" / "fidelity_curve.json").read_text())
    return out


CURVE_COLUMNS = ("step", "flops", "tf_latent_mse", "tf_latent_mse_copy", "tf_err_px", "tf_err_px_copy", "tf_lost", "tf_object_mse", "tf_object_mse_copy", "ar_err_px@1", "ar_err_px@4",
                 "ar_err_px@16", "ar_lost@1", "ar_lost@4", "ar_lost@16", "ar_lost_mean", "count_violation_rate", "break_agreement")


def curves_markdown(runs: dict[str, list[dict[str, Any]]], title: str) -> str:
    """The curves as one table: a row per run and probed checkpoint (a missing figure is "–")."""
    body = [[label, *(_fmt(r.get(k)) for k in CURVE_COLUMNS)] for label, points in runs.items() for r in points]
    return markdown(["run", *CURVE_COLUMNS], body, title)


def plot_curves(path: Path, runs: dict[str, list[dict[str, Any]]]) -> Path:
    """The probe against training FLOPs, one line per run, one panel per figure (with
    copy-last's error where it has one)."""
    fig = Figure(figsize=(5.0 * len(CURVE_METRICS), 4.2))
    axes = fig.subplots(1, len(CURVE_METRICS), squeeze=False)[0]
    for ax, (key, title, reference) in zip(axes, CURVE_METRICS):
        for label, points in runs.items():
            pts = [(float(r["flops"]), float(r[key])) for r in points if r.get("flops") and r.get(key) is not None]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", lw=1.4, label=label)
        refs = [float(r[reference]) for points in runs.values() for r in points if reference and r.get(reference) is not None]
        if refs:
            ax.axhline(float(np.median(refs)), color="black", ls="--", lw=1, label="copy last frame")
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    labelled = next((ax for ax in axes if ax.get_legend_handles_labels()[0]), None)  # the first panel with a line
    if labelled is not None:
        labelled.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_curves(folder: Path, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Path]:
    """``folder/curves.md`` and ``folder/curves.png``: the probe against training FLOPs."""
    atomic_write_text(folder / "curves.md", curves_markdown(runs, f"Fidelity probe against training FLOPs: {folder}"))
    return {"curves_markdown": folder / "curves.md", "curves": plot_curves(folder / "curves.png", runs)}


def report(sweep: str | Path, *, metric: str | None = None, by: str | None = None) -> dict[str, Path]:
    """Write the sweep's table (Markdown, CSV) and plot; returns their paths."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep}")
    if (sweep / "config.json").is_file():  # one run's folder: its curves only
        runs = curves(sweep)
        if not runs:
            raise ValueError(f"{sweep} is one run with no fidelity curve (eval/fidelity_curve.json); "
                             "train it with eval=true evaluation.kind=fidelity, or give a multirun folder")
        return write_curves(sweep, runs)
    rows = collect(sweep)
    if not rows:
        raise ValueError(f"{sweep} holds no runs (sub-folders of a python -m worldsim.train -m ... multirun)")
    header, body = table(rows)
    atomic_write_text(sweep / "sweep.md", markdown(header, body, f"Sweep {sweep}"))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([["" if v is None else v for v in row] for row in body])
    atomic_write_text(sweep / "sweep.csv", buf.getvalue())
    metric = metric or next((m for m in ("tf_err_px", "position_error_charged_px", "position_error_px") if any(r.get(m) is not None for r in rows)), "loss")
    varied = varied_keys(rows)
    if by is None and varied:
        by = varied[0] if len(varied) == 1 else next((k for k in varied if "episodes" not in k and "steps" not in k), varied[0])
    png = plot(sweep / "sweep.png", rows, metric, by)
    paths = {"markdown": sweep / "sweep.md", "csv": sweep / "sweep.csv", "plot": png}
    runs = curves(sweep)
    if runs:
        paths |= write_curves(sweep, runs)
    return paths
