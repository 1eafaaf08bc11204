"""Plots of coarse-grained data and fits (matplotlib, Agg backend; files written atomically).

Units: axis labels carry the data's units (``units`` dict with "length" and "energy").

- :func:`plot_distance_histogram`: histogram of a site-site distance (chemtrain's C-C plot);
- :func:`plot_projected_force`: the reference forces projected on the site-site axis against
  the distance, with fitted force curves -dE/dr on top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path

__all__ = ["plot_distance_histogram", "plot_projected_force"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def plot_distance_histogram(distances, path, *, bins: int = 100, label: str = "r",
                            units: dict | None = None) -> Path:
    """Histogram of ``distances`` (frames,) written to ``path`` (format from the suffix)."""
    plt = _figure()
    r = np.asarray(distances, dtype=np.float64).reshape(-1)
    length = (units or {}).get("length", "")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.hist(r, bins=int(bins), color="tab:blue")
    ax.set_xlabel(f"distance {label}" + (f" [{length}]" if length else ""))
    ax.set_ylabel("count")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_projected_force(distances, projected, path, *, curves: dict | None = None,
                         units: dict | None = None, label: str = "r") -> Path:
    """Scatter of projected forces (frames,) or (frames, 2) against ``distances`` (frames,),
    with ``curves`` {name: (r, force)} drawn as lines (see :meth:`CGData.projected_forces`:
    project on the outward axis so that every column estimates -dE/dr)."""
    plt = _figure()
    r = np.asarray(distances, dtype=np.float64).reshape(-1)
    f = np.asarray(projected, dtype=np.float64).reshape(len(r), -1)
    u = units or {}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k in range(f.shape[1]):
        ax.scatter(r, f[:, k], s=1, alpha=0.25, color=("tab:red", "tab:blue")[k % 2],
                   label=f"reference, site {k + 1}")
    for n, (name, (rc, fc)) in enumerate((curves or {}).items()):
        ax.plot(np.asarray(rc), np.asarray(fc), lw=2, color=("black", "tab:green", "gold")[n % 3],
                ls=("-", "--", ":")[n % 3], label=name)
    ax.set_xlabel(f"distance {label}" + (f" [{u['length']}]" if "length" in u else ""))
    unit = f" [{u['energy']}/{u['length']}]" if "length" in u and "energy" in u else ""
    ax.set_ylabel("force along the axis" + unit)
    ax.legend(fontsize=7, markerscale=5)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
