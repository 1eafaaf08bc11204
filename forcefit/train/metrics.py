"""Error metrics and comparison files with FitSNAP's names and columns.

Units: energy errors in eV/atom (the energy per atom is compared), force errors in eV/Angstrom
per Cartesian component, stress errors in eV/Angstrom^3 per component (ASE sign).

Files (all written atomically: a temporary file in the same folder, then ``os.replace``):

- metrics table (FitSNAP's ``metrics`` file): ``Group Train/Test Property Count MAE RMSE`` with
  one row per (group or ``*ALL``, Train or Test, Energy / Force / Stress); Count is the number
  of structures for energy and stress and the number of atoms for forces (FitSNAP's convention),
  MAE and RMSE are over energies per atom, force components and stress components;
- ``loss_vs_epochs.dat``: ``Epoch Train_Loss Test_Loss`` (and the learning rate);
- ``peratom.dat``: ``Filename Group AtomID Type Fx_Truth Fy_Truth Fz_Truth Fx_Pred Fy_Pred Fz_Pred
  Testing_Bool``;
- ``perconfig.dat``: ``Filename Group Natoms Energy_Truth Energy_Pred Testing_Bool`` (total
  energies, eV);
- ``predictions.extxyz``: every structure with labels and predictions (``energy_pred``,
  ``forces_pred``, ``stress_pred``, ``testing``), a safe text format (no pickle).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from ase.data import chemical_symbols

from ..atomic import atomic_path
from ..atomic import atomic_write_text as _atomic_write_text


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` to ``path`` atomically (:mod:`forcefit.atomic`); returns the path."""
    _atomic_write_text(path, text)
    return os.fspath(path)


@dataclasses.dataclass
class Predictions:
    """Labels and predictions of a list of structures (numpy, float64).

    Per structure (S,): ``names``, ``groups``, ``n_atoms``, ``testing`` (bool),
    ``energy_true``/``energy_pred`` (eV, NaN where unlabelled), ``stress_true``/``stress_pred``
    (S, 3, 3) eV/A^3 (NaN where unlabelled). Per atom: ``numbers`` (atoms,),
    ``forces_true``/``forces_pred`` (atoms, 3) eV/A (NaN where unlabelled).
    """

    names: list[str]
    groups: list[str]
    n_atoms: np.ndarray
    testing: np.ndarray
    numbers: np.ndarray
    energy_true: np.ndarray
    energy_pred: np.ndarray
    forces_true: np.ndarray
    forces_pred: np.ndarray
    stress_true: np.ndarray
    stress_pred: np.ndarray

    @property
    def atom_structure(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.n_atoms)), self.n_atoms)


@dataclasses.dataclass
class MetricRow:
    group: str
    subset: str  # "Train" or "Test"
    prop: str  # "Energy", "Force", "Stress"
    count: int
    mae: float
    rmse: float


def _errors(p: Predictions, prop: str, structures: np.ndarray) -> tuple[int, np.ndarray]:
    if prop == "Energy":
        err = (p.energy_pred - p.energy_true)[structures] / p.n_atoms[structures]
        err = err[np.isfinite(err)]
        return len(err), err
    if prop == "Stress":
        err = (p.stress_pred - p.stress_true)[structures].reshape(-1, 9)
        ok = np.isfinite(err).all(1)
        return int(ok.sum()), err[ok].reshape(-1)
    atoms = np.isin(p.atom_structure, structures)
    err = (p.forces_pred - p.forces_true)[atoms]
    ok = np.isfinite(err).all(1)
    return int(ok.sum()), err[ok].reshape(-1)


def metrics_table(p: Predictions) -> list[MetricRow]:
    """Rows for ``*ALL`` and every group, Train and Test, Energy / Force / Stress."""
    rows = []
    groups = np.asarray(p.groups, dtype=object)
    for group in ["*ALL", *sorted(set(p.groups))]:
        in_group = np.ones(len(groups), bool) if group == "*ALL" else groups == group
        for subset, flag in (("Train", False), ("Test", True)):
            sel = np.flatnonzero(in_group & (p.testing == flag))
            if len(sel) == 0:
                continue
            for prop in ("Energy", "Force", "Stress"):
                count, err = _errors(p, prop, sel)
                if count == 0:
                    continue
                rows.append(MetricRow(group, subset, prop, count, float(np.abs(err).mean()),
                                      float(np.sqrt(np.mean(err**2)))))
    return rows


def find_metric(rows: Sequence[MetricRow], group: str, subset: str, prop: str) -> MetricRow | None:
    for r in rows:
        if (r.group, r.subset, r.prop) == (group, subset, prop):
            return r
    return None


def format_metrics(rows: Sequence[MetricRow]) -> str:
    head = ("Group", "Train/Test", "Property", "Count", "MAE", "RMSE")
    lines = ["{:<20} {:<10} {:<8} {:>8} {:>14} {:>14}".format(*head)]
    for r in rows:
        lines.append(f"{r.group:<20} {r.subset:<10} {r.prop:<8} {r.count:>8d} "
                     f"{r.mae:>14.6e} {r.rmse:>14.6e}")
    return "\n".join(lines) + "\n"


def write_metrics(path, rows: Sequence[MetricRow]) -> str:
    return atomic_write_text(path, format_metrics(rows))


def write_loss_vs_epochs(path, epochs: Sequence[int], train: Sequence[float],
                         test: Sequence[float | None], lr: Sequence[float] | None = None,
                         val: Sequence[float | None] | None = None) -> str:
    """FitSNAP's columns (Epoch Train_Loss Test_Loss), then Learning_Rate and, when ``val`` is
    given, Val_Loss (the validation loss that model selection monitors); nan where absent."""
    nan = float("nan")

    def at(seq, k):
        return nan if seq is None or k >= len(seq) or seq[k] is None else float(seq[k])

    lines = ["# Epoch Train_Loss Test_Loss Learning_Rate" + (" Val_Loss" if val is not None
                                                             else "")]
    for k, e in enumerate(epochs):
        row = f"{int(e)} {float(train[k]):.10e} {at(test, k):.10e} {at(lr, k):.6e}"
        lines.append(row + (f" {at(val, k):.10e}" if val is not None else ""))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _safe(name: str) -> str:
    return "".join(c if not c.isspace() else "_" for c in (name or "-"))


def write_peratom(path, p: Predictions) -> str:
    s_of = p.atom_structure
    first = np.concatenate([[0], np.cumsum(p.n_atoms)[:-1]]) if len(p.n_atoms) else np.zeros(0, int)
    atom_id = np.arange(len(s_of)) - first[s_of] if len(s_of) else np.zeros(0, int)
    lines = ["Filename Group AtomID Type Fx_Truth Fy_Truth Fz_Truth Fx_Pred Fy_Pred Fz_Pred "
             "Testing_Bool"]
    ft, fp = p.forces_true, p.forces_pred
    for a in range(len(s_of)):  # text output, one line per atom: not a hot path
        s = s_of[a]
        lines.append(
            f"{_safe(p.names[s])} {_safe(p.groups[s])} {atom_id[a] + 1} "
            f"{chemical_symbols[int(p.numbers[a])]} "
            f"{ft[a, 0]:.10e} {ft[a, 1]:.10e} {ft[a, 2]:.10e} "
            f"{fp[a, 0]:.10e} {fp[a, 1]:.10e} {fp[a, 2]:.10e} {int(p.testing[s])}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_perconfig(path, p: Predictions) -> str:
    lines = ["Filename Group Natoms Energy_Truth Energy_Pred Testing_Bool"]
    for s in range(len(p.n_atoms)):
        lines.append(f"{_safe(p.names[s])} {_safe(p.groups[s])} {int(p.n_atoms[s])} "
                     f"{p.energy_true[s]:.10e} {p.energy_pred[s]:.10e} {int(p.testing[s])}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_predictions_extxyz(path, structures, p: Predictions) -> str:
    """All structures with labels and predictions as extended XYZ (atomic write)."""
    from ase.io import write

    frames = []
    off = np.concatenate([[0], np.cumsum(p.n_atoms)])
    for s, st in enumerate(structures):  # file output: once per fit
        atoms = st.to_ase(labels=False)
        atoms.info.clear()
        atoms.info["name"] = p.names[s]
        atoms.info["group"] = p.groups[s]
        atoms.info["testing"] = bool(p.testing[s])
        if np.isfinite(p.energy_true[s]):
            atoms.info["energy_true"] = float(p.energy_true[s])
        atoms.info["energy_pred"] = float(p.energy_pred[s])
        if np.isfinite(p.stress_true[s]).all():
            atoms.info["stress_true"] = p.stress_true[s].reshape(-1)
        if np.isfinite(p.stress_pred[s]).all():
            atoms.info["stress_pred"] = p.stress_pred[s].reshape(-1)
        rows = slice(off[s], off[s + 1])
        if np.isfinite(p.forces_true[rows]).all():
            atoms.arrays["forces_true"] = p.forces_true[rows].copy()
        atoms.arrays["forces_pred"] = p.forces_pred[rows].copy()
        frames.append(atoms)
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        write(tmp, frames, format="extxyz")
    return path
