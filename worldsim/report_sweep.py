"""Gather a sweep into one table: ``python -m worldsim.report_sweep DIR [--metric NAME] [--by KEY]``.

``DIR`` is a Hydra multirun folder of ``python -m worldsim.train -m ...``; writes
``DIR/sweep.md``, ``DIR/sweep.csv`` and ``DIR/sweep.png`` (:mod:`worldsim.evaluate.sweep`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worldsim.evaluate.sweep import report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m worldsim.report_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="a multirun folder (multirun/NAME)")
    p.add_argument("--metric", default=None, help="the error to plot (default: position_error_px if evaluated, else loss)")
    p.add_argument("--by", default=None, help="the varied setting that makes the lines")
    a = p.parse_args(argv)
    try:
        paths = report(a.sweep, metric=a.metric, by=a.by)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print((Path(a.sweep) / "sweep.md").read_text())
    print("wrote " + ", ".join(str(v) for v in paths.values()))


if __name__ == "__main__":
    main()
