"""The on-demand benchmarks still run: short smoke runs that check what they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def test_training_benchmark_runs_and_reports(tmp_path):
    if not (DATA / "ta_fitsnap").is_dir():
        pytest.skip("shared data ta_fitsnap is absent (a fresh checkout has no ../shared)")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--seconds", "2",
         "--out", str(tmp_path / "ta")],
        capture_output=True, text=True, timeout=300, check=True).stdout
    per_epoch = float(re.search(r"seconds per epoch: ([0-9.]+)", out).group(1))
    assert 0 < per_epoch < 5
    force = float(re.search(r"test force MAE ([0-9.]+)", out).group(1))
    assert 0 < force < 1.0  # a 2 s fit is far from converged, but it is a fit
    fused, autograd = map(float, re.search(r"fused ([0-9.]+) ms, autograd ([0-9.]+) ms",
                                           out).groups())
    assert fused > 0 and autograd > 0
    assert (tmp_path / "ta" / "metrics.dat").exists()
