"""Cu: fit a network potential to EMT data, then run NVE molecular dynamics with it.

Units: Angstrom, eV, eV/Angstrom; MD time step in fs, temperature in K.

Steps (all through the ``forcefit`` command line):
1. make ``cu_emt.extxyz``: rattled, strained and scaled fcc Cu supercells labelled by ASE's EMT
   calculator (:func:`forcefit.demo.make_cu_dataset`), in this folder or ``--out``;
2. ``forcefit fit fit.toml``: per-atom network on Behler descriptors, 80/20 split;
3. ``forcefit md MODEL cu_start.extxyz``: NVE velocity Verlet (2 fs) of a 108-atom fcc cell
   started at 300 K; the log holds the potential, kinetic and total energy and the temperature;
4. check energy conservation: the drift of the total energy must stay below 1 meV/atom
   (the fitting issue's criterion for MD with a saved potential).

Run: ``python examples/cu_fit_md/run.py [--quick] [--out DIR]``; ``--quick`` uses 24
configurations, at most 15 s of training and 100 MD steps of a 32-atom cell (the tests use it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    from ase.build import bulk

    from forcefit import cli
    from forcefit.demo import CU_A0, make_cu_dataset
    from forcefit.io import write_extxyz

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (tests)")
    parser.add_argument("--out", default="cu_fit_md_output",
                        help="folder for the data and outputs (cu_fit_md_output)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    n_configs, steps, cells = (24, 100, 2) if args.quick else (100, 500, 3)
    write_extxyz(out / "cu_emt.extxyz", make_cu_dataset(n_configs, seed=7))
    config = out / "fit.toml"
    if config != HERE / "fit.toml":
        config.write_text((HERE / "fit.toml").read_text())
    fit = ["fit", str(config), "-o", str(out / "cu_output"), "--quiet", "--no-plots"]
    if args.quick:
        fit += ["--max-time", "15"]
    if cli.main(fit) != 0:
        raise SystemExit("forcefit fit failed")
    start = bulk("Cu", "fcc", a=CU_A0, cubic=True).repeat(cells)  # 32 or 108 atoms
    from ase.io import write

    write(out / "cu_start.extxyz", start)
    md = ["md", str(out / "cu_output" / "model.pt"), str(out / "cu_start.extxyz"),
          "--steps", str(steps), "--timestep", "2", "--temperature", "300",
          "--interval", "10", "--quiet"]
    if cli.main(md) != 0:
        raise SystemExit("forcefit md failed")
    log = np.loadtxt(out / "cu_start_md.log")  # step time Epot Ekin Etot T
    n = len(start)
    drift = float(np.abs(log[:, 4] - log[0, 4]).max() / n)
    summary = {"steps": int(log[-1, 0]), "time_fs": float(log[-1, 1]),
               "max_total_energy_change_eV_per_atom": drift,
               "mean_temperature_K": float(log[1:, 5].mean()),
               "metrics": (out / "cu_output" / "metrics.dat").read_text()}
    print(summary["metrics"].rstrip())
    print(f"NVE MD of {n} atoms, {summary['steps']} steps of 2 fs from 300 K: max |Etot - Etot(0)| = "
          f"{drift * 1e3:.3f} meV/atom, mean T = {summary['mean_temperature_K']:.0f} K")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
