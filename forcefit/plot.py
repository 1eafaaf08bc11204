"""Plots of fits and descriptors, written as PNG with matplotlib's Agg backend (no display).

Units on the axes: energy per atom in eV/atom, force components in eV/Angstrom, stress components
in eV/Angstrom^3 (ASE sign), distances in Angstrom. The plots read the documented output files of
a fit (FitSNAP's names and columns):

- ``perconfig.dat``: ``Filename Group Natoms Energy_Truth Energy_Pred Testing_Bool`` (total
  energies in eV; plotted per atom), optionally stress columns ``S<ab>_Truth``/``S<ab>_Pred``;
- ``peratom.dat``: ``Filename Group AtomID Type Fx_Truth Fy_Truth Fz_Truth Fx_Pred Fy_Pred
  Fz_Pred Testing_Bool``;
- ``loss_vs_epochs.dat``: one line per epoch, ``epoch train_loss validation_loss [...]``
  (a header line, if any, is skipped);
- the metrics table: ``Group Train/Test Property Count MAE RMSE``.

Errors quoted in legends: MAE = mean |pred - truth|, RMSE = sqrt(mean (pred - truth)^2) over the
plotted points. Every file is written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_path

__all__ = [
    "PlotError",
    "mae_rmse",
    "parity_plot",
    "plot_descriptor_histograms",
    "plot_descriptor_radial",
    "plot_fit_outputs",
    "plot_learning_curve",
    "plot_pair_curves",
    "plot_parity_files",
    "read_loss_file",
    "read_table",
    "save_figure",
]

TRAIN_COLOUR = "tab:blue"
TEST_COLOUR = "tab:orange"


class PlotError(ValueError):
    """A file to plot is missing or malformed; the message names the file and the column."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- readers


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Whitespace table with a header line -> {column: array} (numbers where they parse).

    The header is the first non-empty line (a leading ``#`` is dropped); lines starting with
    ``#`` after it are comments.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise PlotError(f"{path}: cannot read ({e})") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise PlotError(f"{path}: empty file, expected a header line")
    header = lines[0].lstrip("#").split()
    rows = []
    for k, ln in enumerate(lines[1:], start=2):
        if ln.lstrip().startswith("#"):
            continue
        parts = ln.split()
        if len(parts) != len(header):
            raise PlotError(f"{path}: line {k} has {len(parts)} columns, the header "
                            f"({' '.join(header)}) has {len(header)}")
        rows.append(parts)
    cols: dict[str, np.ndarray] = {}
    for c, name in enumerate(header):
        raw = [r[c] for r in rows]
        try:
            cols[name] = np.array([float(x) for x in raw], dtype=np.float64)
        except ValueError:
            cols[name] = np.array(raw, dtype=object)
    return cols


def _column(table: dict, name: str, path) -> np.ndarray:
    if name not in table:
        raise PlotError(f"{path}: missing column '{name}' (columns: {' '.join(table)})")
    col = table[name]
    if col.dtype == object:
        raise PlotError(f"{path}: column '{name}' is not numeric")
    return col


def _testing(table: dict, path) -> np.ndarray:
    col = table.get("Testing_Bool")
    if col is None:
        raise PlotError(f"{path}: missing column 'Testing_Bool'")
    if col.dtype == object:
        return np.array([str(x).lower() in ("true", "1", "t") for x in col])
    return col.astype(bool)


def read_loss_file(path: str | Path) -> dict[str, np.ndarray]:
    """``loss_vs_epochs.dat`` -> {"epoch", "train", "validation"} (validation may be NaN)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise PlotError(f"{path}: cannot read ({e})") from None
    rows = []
    for k, ln in enumerate(lines, start=1):
        parts = ln.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            rows.append([float(x) for x in parts])
        except ValueError:
            if rows:
                raise PlotError(f"{path}: line {k} is not numeric: {ln!r}") from None
            continue  # a header line
    if not rows:
        raise PlotError(f"{path}: no epochs recorded")
    width = min(len(r) for r in rows)
    if width < 2:
        raise PlotError(f"{path}: expected 'epoch train_loss [validation_loss]' per line")
    a = np.array([r[:width] for r in rows])  # (epochs, columns)
    val = a[:, 2] if width > 2 else np.full(len(a), np.nan)
    return {"epoch": a[:, 0], "train": a[:, 1], "validation": val}


# --------------------------------------------------------------------------- parity


def mae_rmse(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(MAE, RMSE) of ``pred - truth`` over all entries; NaN for no entries."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    if err.size == 0:
        return math.nan, math.nan
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))


def parity_plot(ax, truth: np.ndarray, pred: np.ndarray, testing: np.ndarray, *,
                quantity: str, unit: str) -> dict[str, tuple[float, float]]:
    """Scatter predicted against true values, train and test in different colours.

    ``truth``, ``pred``: (points,); ``testing``: (points,) bool. Returns {"train"/"test":
    (MAE, RMSE)} for the sets that have points, as quoted in the legend.
    """
    truth = np.asarray(truth, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    testing = np.asarray(testing, dtype=bool).ravel()
    stats = {}
    for name, mask, colour in (("train", ~testing, TRAIN_COLOUR), ("test", testing, TEST_COLOUR)):
        if not mask.any():
            continue
        mae, rmse = mae_rmse(truth[mask], pred[mask])
        stats[name] = (mae, rmse)
        ax.scatter(truth[mask], pred[mask], s=6, alpha=0.6, color=colour, lw=0,
                   label=f"{name} (n={int(mask.sum())}): MAE {mae:.3g}, RMSE {rmse:.3g} {unit}")
    if truth.size:
        lo = float(min(truth.min(), pred.min()))
        hi = float(max(truth.max(), pred.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=0.8, ls="--")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="upper left", fontsize=7, markerscale=2)
    return stats


_STRESS = ("xx", "yy", "zz", "yz", "xz", "xy")


def plot_parity_files(folder: str | Path, out_folder: str | Path | None = None,
                      prefix: str = "parity") -> dict[str, Path]:
    """Parity plots of energy per atom, force components and (if present) stress components
    from ``perconfig.dat`` and ``peratom.dat`` in ``folder``.

    Returns {"energy"/"forces"/"stress": png path} for the plots made.
    """
    folder = Path(folder)
    out_folder = Path(out_folder) if out_folder is not None else folder
    plt = _pyplot()
    made: dict[str, Path] = {}
    perconfig = folder / "perconfig.dat"
    if perconfig.exists():
        t = read_table(perconfig)
        n = _column(t, "Natoms", perconfig)
        e_true = _column(t, "Energy_Truth", perconfig) / n  # (structures,) eV/atom
        e_pred = _column(t, "Energy_Pred", perconfig) / n
        test = _testing(t, perconfig)
        fig, ax = plt.subplots(figsize=(5, 5))
        parity_plot(ax, e_true, e_pred, test, quantity="energy", unit="eV/atom")
        ax.set_title("energy per atom")
        made["energy"] = save_figure(fig, out_folder / f"{prefix}_energy.png")
        s_cols = [c for c in _STRESS if f"S{c}_Truth" in t and f"S{c}_Pred" in t]
        if s_cols:
            s_true = np.stack([_column(t, f"S{c}_Truth", perconfig) for c in s_cols], 1)
            s_pred = np.stack([_column(t, f"S{c}_Pred", perconfig) for c in s_cols], 1)
            ok = np.isfinite(s_true).all(1) & np.isfinite(s_pred).all(1)  # (structures,)
            if ok.any():
                fig, ax = plt.subplots(figsize=(5, 5))
                parity_plot(ax, s_true[ok], s_pred[ok],
                            np.repeat(test[ok][:, None], len(s_cols), 1),
                            quantity="stress", unit="eV/A^3")
                ax.set_title("stress components")
                made["stress"] = save_figure(fig, out_folder / f"{prefix}_stress.png")
    if "stress" not in made and (folder / "predictions.extxyz").exists():
        stress = read_stress_predictions(folder / "predictions.extxyz")
        if stress is not None:
            s_true, s_pred, s_test = stress
            fig, ax = plt.subplots(figsize=(5, 5))
            parity_plot(ax, s_true, s_pred, np.repeat(s_test[:, None], s_true.shape[1], 1),
                        quantity="stress", unit="eV/A^3")
            ax.set_title("stress components")
            made["stress"] = save_figure(fig, out_folder / f"{prefix}_stress.png")
    peratom = folder / "peratom.dat"
    if peratom.exists():
        t = read_table(peratom)
        f_true = np.stack([_column(t, f"F{c}_Truth", peratom) for c in "xyz"], 1)  # (atoms, 3)
        f_pred = np.stack([_column(t, f"F{c}_Pred", peratom) for c in "xyz"], 1)  # (atoms, 3)
        test = np.repeat(_testing(t, peratom)[:, None], 3, 1)  # (atoms, 3)
        fig, ax = plt.subplots(figsize=(5, 5))
        parity_plot(ax, f_true, f_pred, test, quantity="force component", unit="eV/A")
        ax.set_title("force components")
        made["forces"] = save_figure(fig, out_folder / f"{prefix}_forces.png")
    return made


def read_stress_predictions(path: str | Path):
    """(truth (S, 9), prediction (S, 9), testing (S,)) of the labelled periodic structures in a
    ``predictions.extxyz`` dump (info keys ``stress_true``, ``stress_pred``, ``testing``), or
    None when it holds no stress."""
    from ase.io import iread

    t, p, test = [], [], []
    try:
        for k, atoms in enumerate(iread(str(path), index=":", format="extxyz")):
            info = atoms.info
            if "stress_true" in info and "stress_pred" in info:
                t.append(np.asarray(info["stress_true"], dtype=np.float64).reshape(-1))
                p.append(np.asarray(info["stress_pred"], dtype=np.float64).reshape(-1))
                test.append(bool(info.get("testing", False)))
    except Exception as e:  # noqa: BLE001 - a broken dump: say which file
        raise PlotError(f"{path}: cannot read the predictions dump ({type(e).__name__}: {e})"
                        ) from None
    if not t:
        return None
    return np.array(t), np.array(p), np.array(test)


# --------------------------------------------------------------------------- curves


def plot_learning_curve(loss_file: str | Path, out: str | Path) -> Path:
    """Training and validation loss against epoch (log scale) from ``loss_vs_epochs.dat``."""
    data = read_loss_file(loss_file)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(data["epoch"], data["train"], color=TRAIN_COLOUR, label="training loss")
    if np.isfinite(data["validation"]).any():
        ax.plot(data["epoch"], data["validation"], color=TEST_COLOUR, label="validation loss")
    positive = np.concatenate([data["train"], data["validation"]])
    if np.all(positive[np.isfinite(positive)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def _dimers(z_pairs: Sequence[tuple[int, int]], r: np.ndarray, cutoff: float):
    """Open dimers: every (Z_a, Z_b) pair at every distance in r -> list of Structures."""
    from .structure import Structure

    out = []
    for za, zb in z_pairs:
        for d in r:
            out.append(Structure(numbers=[za, zb], positions=[[0, 0, 0], [float(d), 0, 0]],
                                 name=f"dimer {za}-{zb} {d:.3f}"))
    return out


def plot_pair_curves(model, species: Sequence[int], out: str | Path, *,
                     r_min: float = 0.5, r_max: float | None = None, n: int = 200) -> Path:
    """Dimer energy E(r) of an energy model for every pair of species (eV against Angstrom).

    For a pair potential this is the potential itself; for a many-body model it is its
    two-body cut. ``species``: atomic numbers. The model is evaluated in one batch.
    """
    import torch

    from .neighbors import build_graph
    from .potentials.base import evaluate

    r_max = float(r_max if r_max is not None else model.cutoff)
    r = np.linspace(r_min, r_max, n)  # (points,)
    pairs = [(a, b) for k, a in enumerate(species) for b in species[k:]]
    structures = _dimers(pairs, r, model.cutoff)
    dtype = next((p.dtype for p in model.parameters()), torch.float64)
    graph = build_graph(structures, model.cutoff, dtype=dtype)
    energy = evaluate(model, graph, forces=False, stress=False)["energy"]  # (structures,)
    energy = energy.detach().cpu().double().numpy().reshape(len(pairs), n)  # (pairs, points)
    from ase.data import chemical_symbols

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (a, b), e in zip(pairs, energy):
        ax.plot(r, e, label=f"{chemical_symbols[a]}-{chemical_symbols[b]}")
    finite = energy[np.isfinite(energy)]
    if finite.size:
        lo, hi = float(finite.min()), float(np.percentile(finite, 95))
        ax.set_ylim(lo - 0.1 * abs(hi - lo) - 1e-3, hi + 0.1 * abs(hi - lo) + 1e-3)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xlabel("distance (A)")
    ax.set_ylabel("dimer energy (eV)")
    ax.legend()
    return save_figure(fig, out)


def plot_descriptor_radial(descriptor_set, out: str | Path, *, r_min: float = 0.0,
                           n: int = 200, max_curves: int = 40) -> Path:
    """Each non-zero feature of a dimer against its distance (miniff's ``plot_potential_2``).

    The centre is the first species, the neighbour each species in turn; a feature is shown
    where it is non-zero for some distance (radial functions; angular ones vanish for a dimer).
    """
    import torch

    from .neighbors import build_graph

    cutoff = float(descriptor_set.cutoff)
    r = np.linspace(max(r_min, 1e-3 * cutoff), cutoff * 1.02, n)  # (points,)
    species = list(descriptor_set.species)
    names = list(getattr(descriptor_set, "feature_names", [f"D{k}" for k in
                                                           range(descriptor_set.n_features)]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(species), figsize=(5 * len(species), 4), squeeze=False)
    for ax, zb in zip(axes[0], species):
        structures = _dimers([(species[0], zb)], r, cutoff)
        graph = build_graph(structures, cutoff, dtype=torch.float64)
        with torch.no_grad():
            values = descriptor_set.values(graph, graph.edge_vectors())  # (atoms, features)
        first = values[0::2].cpu().numpy()  # (points, features): the centre atom
        shown = np.flatnonzero(np.abs(first).max(0) > 0)[:max_curves]
        for k in shown:
            ax.plot(r, first[:, k], lw=1, label=names[k] if len(shown) <= 12 else None)
        ax.set_xlabel("distance (A)")
        ax.set_ylabel("feature value")
        from ase.data import chemical_symbols

        ax.set_title(f"{chemical_symbols[species[0]]} centre, "
                     f"{chemical_symbols[zb]} neighbour")
        if len(shown) <= 12 and len(shown):
            ax.legend(fontsize=6)
    return save_figure(fig, out)


def plot_descriptor_histograms(values: np.ndarray, names: Sequence[str], out: str | Path, *,
                               max_features: int = 48, bins: int = 40) -> Path:
    """One small histogram per feature column of ``values`` (atoms, features)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise PlotError(f"descriptor values must be (atoms, features), got shape {values.shape}")
    n_feat = min(values.shape[1], max_features)
    if n_feat == 0:
        raise PlotError("no descriptor features to plot")
    cols = min(6, n_feat)
    rows = math.ceil(n_feat / cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n_feat:
            ax.axis("off")
            continue
        ax.hist(values[:, k], bins=bins, color=TRAIN_COLOUR)
        ax.set_title(str(names[k]) if k < len(names) else f"D{k}", fontsize=6)
        ax.tick_params(labelsize=5)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_fit_outputs(folder: str | Path) -> dict[str, Path]:
    """All plots a fit folder supports: parity plots and the learning curve."""
    folder = Path(folder)
    made = plot_parity_files(folder)
    loss = folder / "loss_vs_epochs.dat"
    if loss.exists():
        made["learning_curve"] = plot_learning_curve(loss, folder / "learning_curve.png")
    return made
