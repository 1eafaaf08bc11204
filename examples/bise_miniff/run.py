"""A Bi-Se network potential fitted to miniff's amorphous DFT frames (``fit.toml`` next to this).

Units: Angstrom, eV, eV/Angstrom (miniff's JSON is converted by the reader).

The data (``../shared/data/bise_miniff``): 10 frames of one amorphous Bi27Se38 cell (65 atoms,
periodic 14.4 A box) from a DFT relaxation, with energies and forces. miniff's own tutorial fits
a Behler-descriptor network per element to such frames; it quotes no error figure, so this
example checks what the fit must at least do: learn the forces of two held-out frames much
better than the trivial zero-force model (test force RMSE below half the RMS force), with one
network per element and descriptors for both species.

Run: ``python examples/bise_miniff/run.py [--quick] [--out DIR]`` (``--quick``: at most 200 epochs, 30 s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    from forcefit import cli
    from forcefit.plot import read_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="at most 200 epochs or 30 s (the tests use it)")
    parser.add_argument("--out", default="bise_output", help="output folder (bise_output)")
    args = parser.parse_args(argv)
    cmd = ["fit", str(HERE / "fit.toml"), "-o", args.out, "--threads", "1"]
    if args.quick:
        cmd += ["--epochs", "200", "--max-time", "30"]
    rc = cli.main(cmd)
    if rc != 0:
        raise SystemExit(f"forcefit fit failed with status {rc}")
    out = Path(args.out)
    pa = read_table(out / "peratom.dat")
    test = pa["Testing_Bool"].astype(bool)
    truth = np.stack([pa[f"F{c}_Truth"] for c in "xyz"], 1)[test]  # (atoms, 3)
    pred = np.stack([pa[f"F{c}_Pred"] for c in "xyz"], 1)[test]  # (atoms, 3)
    rmse = float(np.sqrt(((pred - truth) ** 2).mean()))
    rms = float(np.sqrt((truth**2).mean()))
    species = sorted(set(pa["Type"]))
    summary = {"test_force_rmse": rmse, "test_force_rms": rms, "ratio": rmse / rms,
               "species": species, "n_test_atoms": int(test.sum())}
    print(f"Bi-Se: test force RMSE {rmse:.3f} eV/A against an RMS force of {rms:.3f} eV/A "
          f"(ratio {rmse / rms:.2f}) on {int(test.sum())} held-out atoms; species {species}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
