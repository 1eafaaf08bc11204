"""`torchrun ... -m forcefit fit`: two gloo ranks on CPU train one model, rank 0 writes.

The trainer's own DDP tests (tests/test_trainer.py) check the arithmetic (DDP equals a
single process with the doubled batch); this test checks the command-line launch end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from test_cli import CONFIG as CLI_CONFIG

from forcefit import load
from forcefit.demo import make_cu_dataset
from forcefit.io import write_extxyz
from forcefit.plot import read_table

# the command-line tests' small Cu config, two structures per batch, no plots
CONFIG = CLI_CONFIG.replace("batch_size = 4", "batch_size = 2") + "plots = false\n"



def test_torchrun_two_ranks(tmp_path):
    write_extxyz(tmp_path / "cu.extxyz", make_cu_dataset(12, seed=1, sizes=(2,)))
    (tmp_path / "fit.toml").write_text(CONFIG)
    env = dict(os.environ, OMP_NUM_THREADS="1", FORCEFIT_PROGRESS="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2",
           "-m", "forcefit", "fit", str(tmp_path / "fit.toml")]
    done = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "run"
    log = (run / "forcefit.log").read_text()
    assert "rank 0 of 2 (gloo)" in log
    assert (run / "forcefit.rank1.log").exists()  # rank 1 logs to its own file
    assert "wrote model" in log and "wrote model" not in (run / "forcefit.rank1.log").read_text()
    assert len(read_table(run / "loss_vs_epochs.dat")["Epoch"]) == 3
    model = load(run / "model.pt")
    s = make_cu_dataset(1, seed=5, sizes=(2,))[0]
    atoms = s.to_ase(labels=False)
    atoms.calc = model.calculator()
    assert torch.isfinite(torch.tensor(atoms.get_forces())).all()
