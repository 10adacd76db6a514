"""The probe's curves against training FLOPs, for a sweep and for one run's folder."""

from __future__ import annotations

import json

import pytest

from worldsim.evaluate.sweep import report


def _run(folder, curve):
    (folder / "eval").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if curve is not None:
        (folder / "eval" / "fidelity_curve.json").write_text(json.dumps(curve))
    return folder


CURVE = [
    {"step": 10, "flops": 1e13, "tf_err_px": 3.6, "tf_err_px_copy": 3.5, "ar_lost_mean": 0.5, "ar_err_px@4": None},
    {"step": 20, "flops": 2e13, "tf_err_px": 3.4, "tf_err_px_copy": 3.5, "ar_lost_mean": 0.1, "ar_err_px@4": 12.0},
]


def test_one_runs_folder_gets_its_curves(tmp_path):
    run = _run(tmp_path / "run", CURVE)
    paths = report(run)
    md = paths["curves_markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| run | ") and line[8].isdigit()]
    assert len(rows) == 2 and "| run | 10 | 1e+13 | – | – | 3.6 | 3.5 |" in md  # no MSE in this curve: shown missing
    assert "| – |" in md  # the step-4 error the first checkpoint has not: shown missing, not dropped
    assert paths["curves"].stat().st_size > 1000 and not (run / "sweep.md").exists()


def test_a_run_without_a_curve_is_refused_with_the_file_it_needs(tmp_path):
    with pytest.raises(ValueError, match="eval/fidelity_curve.json"):
        report(_run(tmp_path / "run", None))
