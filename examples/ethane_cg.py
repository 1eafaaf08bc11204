"""Coarse-grained force matching of ethane onto its two carbons (chemtrain's example).

Units: nm and kJ/mol throughout (the data's own), forces in kJ/mol/nm, kb in kJ/mol/nm^2;
the ASE calculator at the end works in Angstrom and eV.

Steps:
1. read the all-atom trajectory (9000 frames, periodic 1 nm box) from
   ``../shared/data/ethane_cg`` and map it onto two CG sites, the carbons (site force = force
   on the carbon), unwrapping by the minimum image;
2. split the frames into train / validation / test (seeded);
3. harmonic bond E = 1/2 kb (r - b0)^2 fitted twice on the same training frames: by force
   matching (Adam, betas 0.9/0.95, rate 0.02 decaying to 5 %, log-parametrised kb and b0
   starting from the seed's 5000 and 0.11) and by closed-form least squares; prints both and
   the test-set force MAE;
4. a tabulated spline bond (32 knots) fitted by closed-form force matching on the whole
   training split, compared with the harmonic force curve;
5. exports: LAMMPS ``bond_style table`` files, a saved potential, an ASE calculator check, and
   the two plots of the seed (C-C distance histogram, projected force against distance).

Run ``python examples/ethane_cg.py`` (full settings, about a minute) or with ``--quick``
(a subsample of the frames for force matching; the tests use it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from forcefit.cg import (
    CGData,
    ForceMatchingConfig,
    HarmonicBond,
    Mapping,
    SplineBond,
    ase_calculator,
    force_errors,
    force_matching,
    least_squares_harmonic_bond,
    least_squares_linear,
    plot_distance_histogram,
    plot_projected_force,
    save_potential,
    split_frames,
    tabulate_bond,
    write_lammps_table,
)

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ethane_cg"
UNITS = {"length": "nm", "energy": "kJ/mol"}
BOX_NM = 1.0


def load(data_dir: Path) -> CGData:
    """All frames mapped onto the two carbons (atoms 0 and 1 of 8)."""
    pos = np.load(data_dir / "positions_ethane.npy")  # (9000, 8, 3) nm
    frc = np.load(data_dir / "forces_ethane.npy")  # (9000, 8, 3) kJ/mol/nm
    mapping = Mapping.select([0, 1], n_atoms=pos.shape[1])
    return CGData.from_trajectory(mapping, pos, frc, cell=np.eye(3) * BOX_NM, pbc=True,
                                  numbers=[6, 6], units=UNITS)


def force_curve(model, r: np.ndarray) -> np.ndarray:
    return tabulate_bond(model, r)[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ethane_cg folder")
    parser.add_argument("--out", type=Path, default=Path("ethane_cg_out"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="subsample frames (tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.data / "positions_ethane.npy").exists():
        raise SystemExit(f"ethane data not found in {args.data} (use --data)")
    args.out.mkdir(parents=True, exist_ok=True)

    data = load(args.data)
    split = split_frames(len(data), (0.5, 0.1, 0.4), seed=args.seed)
    stride = 5 if args.quick else 1
    fm_split = {k: v[::stride] for k, v in split.items()}
    cfg = (ForceMatchingConfig(epochs=30, batch_size=50, seed=args.seed) if args.quick
           else ForceMatchingConfig(epochs=30, batch_size=100, seed=args.seed))
    print(f"ethane CG: {len(data)} frames, 2 sites; force matching on "
          f"{len(fm_split['train'])} training frames, {cfg.epochs} epochs, batch "
          f"{cfg.batch_size}")

    # -- harmonic bond: force matching and least squares on the same frames -----------------
    bond = HarmonicBond([[0, 1]], kb=5000.0, b0=0.11)
    result = force_matching(bond, data, cfg, split=fm_split, log=None)
    fm = {"kb": float(bond.kb[0].detach()), "b0": float(bond.b0[0].detach())}
    ls_bond = HarmonicBond([[0, 1]])
    ls = {k: float(v[0]) for k, v in
          least_squares_harmonic_bond(ls_bond, data, fm_split["train"]).items()}
    test_mae = result.test_mae
    ls_test_mae = force_errors(ls_bond, data, fm_split["test"])["mae"]
    print(f"force matching : kb = {fm['kb']:.1f} kJ/mol/nm^2, b0 = {fm['b0']:.4f} nm "
          f"({result.seconds:.1f} s)")
    print(f"least squares  : kb = {ls['kb']:.1f} kJ/mol/nm^2, b0 = {ls['b0']:.4f} nm")
    print(f"difference     : kb {100 * abs(fm['kb'] - ls['kb']) / ls['kb']:.2f} %, "
          f"b0 {abs(fm['b0'] - ls['b0']):.5f} nm")
    print(f"test MAE       : {test_mae:.1f} kJ/mol/nm per component (force matching), "
          f"{ls_test_mae:.1f} (least squares), {len(fm_split['test'])} test frames")

    # -- tabulated spline bond on the whole training split ----------------------------------
    r_train = data.pair_distances(0, 1)[split["train"]].numpy()
    r_lo, r_hi = float(r_train.min()), float(r_train.max())
    spline = SplineBond([[0, 1]], r_min=r_lo, r_max=r_hi, n_knots=32).double()
    t0 = time.perf_counter()
    least_squares_linear(spline, data, "values", split["train"], smoothness=10.0)
    with torch.no_grad():  # gauge: the energy minimum at zero (forces unchanged)
        spline.values -= spline.values.min()
    ref_bond = HarmonicBond([[0, 1]])
    least_squares_harmonic_bond(ref_bond, data, split["train"])
    grid = np.linspace(r_lo, r_hi, 400)
    f_spline, f_harm = force_curve(spline, grid), force_curve(ref_bond, grid)
    force_range = float(f_harm.max() - f_harm.min())
    # "sampled distances": the central 99 % of the training distances (0.5 to 99.5 percentile);
    # the few frames beyond are too sparse to pin a many-knot spline
    q_lo, q_hi = np.quantile(r_train, [0.005, 0.995])
    inner = (grid >= q_lo) & (grid <= q_hi)
    spline_dev = float(np.abs(f_spline - f_harm)[inner].max() / force_range)
    spline_dev_all = float(np.abs(f_spline - f_harm).max() / force_range)
    spline_mae = force_errors(spline, data, split["test"])["mae"]
    harm_mae = force_errors(ref_bond, data, split["test"])["mae"]
    print(f"spline bond    : 32 knots on [{r_lo:.4f}, {r_hi:.4f}] nm "
          f"({time.perf_counter() - t0:.1f} s); max |F_spline - F_harmonic| = "
          f"{100 * spline_dev:.2f} % of the force range on [{q_lo:.4f}, {q_hi:.4f}] nm (99 % of "
          f"the distances), {100 * spline_dev_all:.2f} % over all; test MAE {spline_mae:.1f} "
          f"vs harmonic {harm_mae:.1f}")

    # -- exports ----------------------------------------------------------------------------
    bond.units = spline.units = dict(UNITS)
    write_lammps_table(args.out / "ethane_harmonic.table", bond, style="bond", r_min=r_lo,
                       r_max=r_hi, n=500, keyword="CC_HARMONIC")
    write_lammps_table(args.out / "ethane_spline.table", spline, style="bond", r_min=r_lo,
                       r_max=r_hi, n=500, keyword="CC_SPLINE")
    save_potential(args.out / "ethane_harmonic.pt", bond, metadata={"fm": fm, "ls": ls})
    from ase import Atoms

    calc = ase_calculator(bond)
    dimer = Atoms("C2", positions=[[0, 0, 0], [1.6, 0, 0]])  # Angstrom
    dimer.calc = calc
    f_ase = dimer.get_forces()[1, 0]  # eV/A
    print(f"ASE calculator : C-C at 1.6 A, force on C2 {f_ase:.4f} eV/A "
          f"({force_curve(bond, np.array([0.16]))[0]:.2f} kJ/mol/nm in the model's units)")

    r_all, proj = data.projected_forces(0, 1)
    plot_distance_histogram(r_all.numpy(), args.out / "cc_distance_hist.png", label="C1-C2",
                            units=UNITS)
    plot_projected_force(r_all.numpy(), proj.numpy(), args.out / "cc_projected_force.png",
                         curves={"harmonic (force matching)": (grid, force_curve(bond, grid)),
                                 "spline (least squares)": (grid, f_spline)},
                         units=UNITS, label="C1-C2")
    summary = {"fm": fm, "ls": ls, "test_mae": test_mae, "ls_test_mae": ls_test_mae,
               "spline_max_dev_fraction": spline_dev,
               "spline_max_dev_fraction_all": spline_dev_all, "spline_test_mae": spline_mae,
               "harmonic_test_mae": harm_mae, "fm_seconds": result.seconds,
               "n_fm_train": len(fm_split["train"]), "ase_force_eV_per_A": float(f_ase)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"outputs in {args.out}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
