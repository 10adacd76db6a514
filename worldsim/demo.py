"""The one-command demo: ``python -m worldsim.demo``.

Loads the bundled reference model (or ``checkpoint=PATH``), runs paired rollouts on
every scene (the physics and the learned world from the same first frames, under
the same actions), and writes to ``out`` (default ``demo/``):

* ``demo.mp4``: truth | learned | difference, a few episodes of each scene;
* ``horizon.png``: position error against the step, per scene, with the
  copy-last and constant-velocity baselines;
* ``metrics.json``: every scene's summary; and each scene's full comparison
  (``out/<scene>/``: see :mod:`worldsim.compare`).

Then prints where they are and a one-screen summary. Every setting is a Hydra
override (``conf/demo.yaml``): ``python -m worldsim.demo episodes=8 horizon=32``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from worldsim.config import config_dir

log = logging.getLogger("worldsim.demo")


def plot(path: Path, results: dict[str, dict[str, Any]], metric: str = "position_error_px") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.0), squeeze=False)
    for ax, (scene, r) in zip(axes[0], results.items()):
        curves = {"learned": r["model"], **r["baselines"]}
        for name, c in curves.items():
            y = [np.nan if v is None else v for v in c.get(metric) or []]
            if y:
                ax.plot(range(1, len(y) + 1), y, label=name, lw=2.2 if name == "learned" else 1.2)
        ax.set_title(scene)
        ax.set_xlabel("step after the context")
        ax.set_ylabel(f"{metric}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def summary_table(results: dict[str, dict[str, Any]], horizon: int) -> str:
    h8, hh = min(8, horizon), min(16, horizon)
    head = f"{'scene':<16}{'pos err @' + str(hh):>12}{'const-vel':>11}{'copy-last':>11}{'PSNR @' + str(h8):>10}{'count viol':>12}{'score':>7}  notes"
    lines = [head, "-" * len(head)]
    for scene, r in results.items():
        def at(curves: dict[str, Any], key: str, step: int) -> float | None:
            c = curves.get(key) or []
            return c[step - 1] if len(c) >= step else None

        cv = r["baselines"].get("constant_velocity", {})
        cl = r["baselines"].get("copy_last", {})
        viol = [v for v in r["model"].get("count_violation_rate") or [] if v is not None]
        notes = []
        if r["model"].get("break_agree") is not None:
            notes.append(f"break agreement {r['model']['break_agree']:.0%}")
        if r["model"].get("reappearance_error_px") is not None:
            notes.append(f"reappearance error {r['model']['reappearance_error_px']:.1f} px")
        if r["model"].get("agent_displacement_error_px"):
            a = at(r["model"], "agent_displacement_error_px", hh)
            if a is not None:
                notes.append(f"agent displacement error {a:.1f} px")
        score = (r.get("scores") or {}).get("model", {}).get("score")
        lines.append(
            f"{scene:<16}{_fmt(at(r['model'], 'position_error_px', hh)):>12}{_fmt(at(cv, 'position_error_px', hh)):>11}"
            f"{_fmt(at(cl, 'position_error_px', hh)):>11}{_fmt(at(r['model'], 'psnr', h8), 1):>10}"
            f"{_fmt(float(np.mean(viol)) if viol else None, 3):>12}{_fmt(score, 0):>7}  {', '.join(notes)}"
        )
    return "\n".join(lines)


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Everything ``python -m worldsim.demo`` does; returns the per-scene results."""
    from worldsim.atomic import atomic_write_text
    from worldsim.compare import CompareConfig
    from worldsim.compare import run as compare
    from worldsim.evaluate.report import write_video
    from worldsim_envs.learned_world import NO_CHECKPOINT, default_checkpoint

    tic = time.perf_counter()
    checkpoint = cfg.get("checkpoint") or default_checkpoint()
    if checkpoint is None:
        raise ValueError("no bundled reference model in this install and no checkpoint=PATH given. " + NO_CHECKPOINT.split(": ", 1)[1])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    truths: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    fps = 20  # every scene's frame rate
    for scene in cfg["scenes"]:
        keep: dict[str, list[np.ndarray]] = {}
        c = CompareConfig(
            checkpoint=str(checkpoint), scene=scene, engine=cfg["engine"], episodes=int(cfg["episodes"]), horizon=int(cfg["horizon"]),
            context=int(cfg["context"]), seed=int(cfg["seed"]), split=cfg["split"], out=str(out / scene), baselines=list(cfg["baselines"]),
            sampler_steps=int(cfg["sampler_steps"]), videos=int(cfg["videos"]), device=cfg["device"], precision=cfg["precision"],
        )
        r = compare(c, keep=keep)
        results[scene] = r
        truths += keep["truth"]
        preds += keep["model"]
    write_video(out / "demo.mp4", truths, preds, fps=fps)
    plot(out / "horizon.png", results)
    summary = {scene: {"summary": r["summary"], "scores": r.get("scores"), "reader_error_px": r["reader_error_px"]} for scene, r in results.items()}
    atomic_write_text(out / "metrics.json", json.dumps({"checkpoint": str(checkpoint), "config": cfg, "scenes": summary}, indent=1, default=float))
    elapsed = time.perf_counter() - tic
    print(f"\nworldsim demo: the learned world beside the physics it learned from ({checkpoint}, {elapsed:.0f} s)\n")
    print(f"{cfg['episodes']} episodes per scene, {cfg['context']} frames of context, {cfg['horizon']} learned steps under the physics' "
          f"actions ({cfg['engine']}, {cfg['split']} split); errors in pixels of a {results[cfg['scenes'][0]]['config']['resolution'][0]}-pixel frame.\n")
    print(summary_table(results, int(cfg["horizon"])))
    print(f"\n  video   {out.resolve() / 'demo.mp4'}   (truth | learned | difference)")
    print(f"  plot    {out.resolve() / 'horizon.png'}")
    print(f"  metrics {out.resolve() / 'metrics.json'}   (per scene: {out.resolve()}/<scene>/report.md)")
    return results


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="demo")
def main(cfg: DictConfig) -> None:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        run(plain)  # type: ignore[arg-type]
    except ValueError as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
