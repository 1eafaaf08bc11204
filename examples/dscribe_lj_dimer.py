"""DScribe's force-field tutorial with forcefit: a Lennard-Jones dimer learnt from energies and forces.

Units: Angstrom and eV (the LJ epsilon is 1 eV, sigma 2.9 A), forces in eV/A.

The seed (DScribe, "Predicting forces and energies a.k.a. training a ML force-field"): 200
dimers with separations 2.5-5 A labelled by LJ (eps = 1, sigma = 2.9), descriptors of the pair,
a small network predicting the energy whose gradient gives the forces, a loss of energy and
force mean squared errors each divided by its variance over the training set, minibatches and
early stopping, then the predicted energy and force curves against the truth. DScribe's own
version (SOAP, 30 training points) reaches a median test energy MAE of 0.030 eV and force RMSE
of 1.15 eV/A over seeds in about 26 s.

Here: the descriptors are 8 centred radial G2 functions of the pair, exp(-eta r^2) fc(r) with
eta from 0.02 to 4 1/A^2 (forcefit's ``DescriptorSet``, cosine cutoff 6 A): monotone in r, and
the steep ones follow the repulsive wall; the network is ``num_desc 16 16 1`` with SiLU, Adam
(rate 3e-3 halved after 100 epochs without improvement), batches of 5, early stopping after
300 epochs without improvement (the best epoch is restored). 30 random dimers train, 20 more
are the validation set for early stopping, and the other 150 are the test set. The variance scaling
is FitSNAP-style global weights: ``energy_weight = 1 / var(E/N)``, ``force_weight = 1 /
var(F)`` over the 30 training dimers (energy per atom N = 2 enters the loss). Errors reported as
DScribe does: MAE of the dimer energy, RMSE of the force along the bond (the non-zero component,
both atoms).

Run: ``python examples/dscribe_lj_dimer.py [--seed 0] [--out lj_dimer_out]``; it prints the
test errors and the time and writes ``lj_dimer.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

EPSILON, SIGMA = 1.0, 2.9  # eV, Angstrom
N_DIMERS, N_TRAIN, N_VAL = 200, 30, 20
DSCRIBE_ENERGY_MAE, DSCRIBE_FORCE_RMSE, DSCRIBE_SECONDS = 0.030, 1.15, 26.0


def lj_dimers(r: np.ndarray):
    """Dimers (H2 along x) with LJ energy and forces: E = 4 eps [(s/r)^12 - (s/r)^6]."""
    from forcefit.potentials import LennardJones
    from forcefit.potentials.base import evaluate_structures
    from forcefit.structure import Structure

    geo = [Structure(numbers=[1, 1], positions=[[-d / 2, 0, 0], [d / 2, 0, 0]],
                     name=f"dimer_{k}") for k, d in enumerate(r)]
    lj = LennardJones(EPSILON, SIGMA, cutoff=10.0).double()
    out = evaluate_structures(lj, geo, stress=False)
    energy = out["energy"].detach().numpy()  # (dimers,)
    forces = out["forces"].detach().numpy().reshape(len(r), 2, 3)  # (dimers, 2, 3)
    for s, e, f in zip(geo, energy, forces):
        s.energy, s.forces = float(e), f
    return geo


def descriptor_set():
    """8 centred G2 functions (r_s = 0), eta geometric from 0.02 to 4 1/A^2, cutoff 6 A."""
    from forcefit.descriptors import DescriptorSet

    etas = np.geomspace(0.02, 4.0, 8)  # (8,) 1/A^2
    return DescriptorSet(6.0, ["H"], g2=[[float(e), 0.0] for e in etas])


def run(seed: int = 0, out: Path | None = None, quiet: bool = True, plot: bool = True) -> dict:
    """Train on 30 dimers, early-stop on 20, test on 150; return errors and time."""
    from forcefit.data import GroupSpec
    from forcefit.fit import (
        FitSettings,
        ModelSettings,
        OutputSettings,
        TrainingSettings,
        fit_potential,
    )
    from forcefit.neighbors import build_graph
    from forcefit.potentials.base import evaluate

    t0 = time.perf_counter()
    r = np.linspace(2.5, 5.0, N_DIMERS)  # (dimers,) A
    dimers = lj_dimers(r)
    rng = np.random.default_rng(seed)
    order = rng.permutation(N_DIMERS)
    train, val, test = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_VAL], order[N_TRAIN + N_VAL:]
    for k in train:
        dimers[k].group = "train"
    for k in val:
        dimers[k].group = "validation"
    e_train = np.array([dimers[k].energy / 2 for k in train])  # per atom, as in the loss
    f_train = np.concatenate([dimers[k].forces.ravel() for k in train])
    out = Path(out) if out is not None else Path("lj_dimer_out")
    settings = FitSettings(
        descriptors=descriptor_set(),
        model=ModelSettings(layer_sizes="num_desc 16 16 1", activation="silu",
                            multi_element_option=1, reference_energies="none"),
        training=TrainingSettings(learning_rate=3e-3, num_epochs=2000, batch_size=5,
                                  energy_weight=1.0 / e_train.var(),
                                  force_weight=1.0 / f_train.var(), stress_weight=0.0,
                                  patience=300, schedule="plateau",
                                  schedule_params={"factor": 0.5, "patience": 100},
                                  max_time=20.0, save_state_output=None,
                                  validation_groups=["validation"]),
        # the 20 validation dimers select the model (early stopping); the 150 test dimers are
        # never given to the fit
        groups={"train": GroupSpec(1.0, 0.0), "validation": GroupSpec(1.0, 0.0)},
        outputs=OutputSettings(metrics=None, loss="loss_vs_epochs.dat", dump_peratom=False,
                               dump_perconfig=False, dump_configs=False, checkpoint=None),
        output_dir=str(out), seed=seed, quiet=quiet)
    fitted = [dimers[k] for k in np.concatenate([train, val])]
    result = fit_potential(fitted, settings)
    model = result.model
    seconds = time.perf_counter() - t0

    graph = build_graph(dimers, model.cutoff)
    pred = evaluate(model, graph, stress=False)
    e_pred = pred["energy"].detach().numpy()  # (dimers,)
    fx_pred = pred["forces"].detach().numpy().reshape(N_DIMERS, 2, 3)[:, :, 0]  # (dimers, 2)
    e_true = np.array([d.energy for d in dimers])
    fx_true = np.array([d.forces[:, 0] for d in dimers])  # (dimers, 2)
    energy_mae = float(np.abs(e_pred - e_true)[test].mean())
    force_rmse = float(np.sqrt(((fx_pred - fx_true)[test] ** 2).mean()))
    summary = {"seed": seed, "test_energy_mae": energy_mae, "test_force_rmse": force_rmse,
               "seconds": seconds, "epochs": len(result.history.epoch),
               "stop_reason": result.history.stop_reason,
               "dscribe": {"energy_mae": DSCRIBE_ENERGY_MAE, "force_rmse": DSCRIBE_FORCE_RMSE,
                           "seconds": DSCRIBE_SECONDS}}
    if plot:
        _plot(r, e_true, e_pred, fx_true[:, 1], fx_pred[:, 1], train, out / "lj_dimer.png")
    return summary


def _plot(r, e_true, e_pred, f_true, f_pred, train, path):
    """Energy and force on the second atom against the separation, truth and prediction."""
    from forcefit.plot import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((e_true, e_pred, "energy (eV)", (-1.5, 3.0)),
              (f_true, f_pred, "force on atom 2 along x (eV/A)", (-5, 10)))
    for ax, (true, pred, label, ylim) in zip(axes, panels):
        ax.plot(r, true, color="k", label="LJ (truth)")
        ax.plot(r, pred, "--", color="tab:orange", label="forcefit network")
        ax.scatter(r[train], true[train], s=12, color="tab:blue", label="training points",
                   zorder=3)
        ax.set_xlabel("separation (A)")
        ax.set_ylabel(label)
        ax.set_ylim(*ylim)
        ax.legend()
    save_figure(fig, path)


def median_over_seeds(seeds, out: Path) -> dict:
    """Median test errors and time over ``seeds`` (DScribe quotes medians over seeds)."""
    runs = [run(s, out / f"seed{s}", plot=False) for s in seeds]
    return {key: float(np.median([r[key] for r in runs]))
            for key in ("test_energy_mae", "test_force_rmse", "seconds")} | {"runs": runs}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0,
                        help="if > 0: the median over seeds 0..N-1 instead of one run")
    parser.add_argument("--out", type=Path, default=Path("lj_dimer_out"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.seeds > 0:
        med = median_over_seeds(range(args.seeds), args.out)
        print(f"LJ dimer, median over {args.seeds} seeds: test energy MAE "
              f"{med['test_energy_mae']:.4f} eV (DScribe {DSCRIBE_ENERGY_MAE}), test force RMSE "
              f"{med['test_force_rmse']:.4f} eV/A (DScribe {DSCRIBE_FORCE_RMSE}), "
              f"{med['seconds']:.1f} s per fit (DScribe ~{DSCRIBE_SECONDS:.0f} s)")
        return med
    summary = run(args.seed, args.out)
    print(f"LJ dimer, seed {args.seed}: test energy MAE {summary['test_energy_mae']:.4f} eV "
          f"(DScribe {DSCRIBE_ENERGY_MAE}), test force RMSE {summary['test_force_rmse']:.4f} "
          f"eV/A (DScribe {DSCRIBE_FORCE_RMSE}), {summary['seconds']:.1f} s "
          f"(DScribe ~{DSCRIBE_SECONDS:.0f} s), {summary['epochs']} epochs "
          f"({summary['stop_reason']}); plot {args.out / 'lj_dimer.png'}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
