"""miniff's "Computing descriptors" tutorial, done with forcefit.

Units: the tutorial's unit box (lengths in box units; forcefit treats them as Angstrom).

The problem: n = 100 points at random in a unit box; count the neighbours of each point
within a = 0.3 with the smooth kernel g(r) = (1 + cos(pi r / a)) / 2 (r < a), i.e.
n_i = sum_j g(r_ij). miniff computes it with its sigmoid descriptor family
fc(r) / (1 + exp((r - r0) / dr)) with r0 = 10 a and dr = a / 10 (the sigmoid is then 1 to
within exp(-90)); forcefit's ``sigmoid`` family is the same function. This script

1. computes n_i naively from the full (n, n) distance matrix,
2. computes it with forcefit (neighbour list + sigmoid descriptor, values and the per-edge
   derivatives that miniff calls "kernel_gradient"),
3. checks that both agree to 1e-12, for the open box and for the periodic one (minimum image),
4. optionally plots both histograms (``--plot out.png``).

Run: python examples/miniff_descriptors.py [--n 100] [--seed 0] [--plot hist.png]
Exit status 1 if the two results disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from forcefit import Structure, build_graph
from forcefit.descriptors import DescriptorSet


def naive_counts(r: np.ndarray, a: float, periodic: bool) -> np.ndarray:
    """n_i = sum_{j != i} g(r_ij) from the full distance matrix (O(n^2) memory)."""
    diff = r[:, None, :] - r[None, :, :]  # (n, n, 3)
    if periodic:
        diff -= np.round(diff)  # minimum image in the unit box (valid for a < 1/2)
    dist = np.linalg.norm(diff, axis=-1)  # (n, n)
    g = np.where(dist < a, (1 + np.cos(np.pi * np.minimum(dist, a) / a)) / 2, 0.0)
    return g.sum(axis=1) - 1.0  # remove the self term g(0) = 1, as the tutorial does


def forcefit_counts(r: np.ndarray, a: float, periodic: bool):
    """(n_i, per-edge derivatives, number of directed neighbour pairs) with forcefit."""
    s = Structure(numbers=[1] * len(r), positions=r,
                  cell=np.eye(3) if periodic else np.zeros((3, 3)), pbc=periodic,
                  name="unit box" + (" (periodic)" if periodic else ""))
    descriptor = DescriptorSet(a, [1], sigmoid=[[10 * a, a / 10]])
    graph = build_graph(s, a)
    values, derivs = descriptor.compute(graph, derivatives=True)
    return values[:, 0].numpy(), derivs, int(graph.i.shape[0])


def save_histogram(path: str, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, axes = pyplot.subplots(1, len(results), figsize=(5 * len(results), 3.5))
    for ax, (title, (naive, ff)) in zip(np.atleast_1d(axes), results.items()):
        _, bins, _ = ax.hist(naive, label="naive O(n^2)")
        ax.hist(ff, bins, histtype="step", color="k", label="forcefit")
        ax.set_xlabel("neighbour count n_i")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(path)[1] or ".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)  # written atomically
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    pyplot.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="miniff's descriptor tutorial with forcefit")
    parser.add_argument("--n", type=int, default=100, help="number of points (100)")
    parser.add_argument("--a", type=float, default=0.3, help="kernel radius (0.3 < 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write both histograms to this image")
    args = parser.parse_args(argv)
    if not 0 < args.a < 0.5:
        parser.error("--a must lie in (0, 0.5) (minimum image in the unit box)")
    r = np.random.default_rng(args.seed).random((args.n, 3))  # (n, 3) in the unit box
    ok, results = True, {}
    for periodic in (False, True):
        label = "periodic box" if periodic else "open box"
        naive = naive_counts(r, args.a, periodic)
        ff, derivs, n_pairs = forcefit_counts(r, args.a, periodic)
        err = float(np.abs(ff - naive).max())
        ok &= err <= 1e-12
        results[label] = (naive, ff)
        print(f"{label}: {n_pairs} directed neighbour pairs within a = {args.a}; "
              f"mean count {ff.mean():.4f}, max |forcefit - naive| = {err:.2e} "
              f"({'OK' if err <= 1e-12 else 'MISMATCH'}); derivatives {tuple(derivs.shape)}")
    if args.plot:
        save_histogram(args.plot, results)
        print(f"histograms written to {args.plot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
