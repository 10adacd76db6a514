"""Gather a sweep into one table: ``python -m worldsim.report_sweep DIR [--metric NAME] [--by KEY]``.

``DIR`` is a Hydra multirun folder of ``python -m worldsim.train -m ...``; writes
``DIR/sweep.md``, ``DIR/sweep.csv`` and ``DIR/sweep.png`` and, where runs were probed
for fidelity, ``DIR/curves.md`` and ``DIR/curves.png`` (the probe against training
FLOPs) (:mod:`worldsim.evaluate.sweep`). ``DIR`` may also be one run's folder: then
only its curves are written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worldsim.evaluate.sweep import report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m worldsim.report_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="a multirun folder (multirun/NAME), or one run's folder")
    p.add_argument("--metric", default=None, help="the error to plot (default: the fidelity probe's tf_err_px, else position_error_charged_px if evaluated, else loss)")
    p.add_argument("--by", default=None, help="the varied setting that makes the lines")
    a = p.parse_args(argv)
    try:
        paths = report(a.sweep, metric=a.metric, by=a.by)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(Path(paths.get("markdown", paths.get("curves_markdown"))).read_text())
    print("wrote " + ", ".join(str(v) for v in paths.values()))


if __name__ == "__main__":
    main()
