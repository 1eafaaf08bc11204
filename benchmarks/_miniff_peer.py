"""miniff 0.1.4 side of ``benchmarks/descriptors.py``: run by miniff's own interpreter.

Units: positions and cell in Angstrom, eta in 1/Angstrom^2, r_s in Angstrom; descriptor
values dimensionless, gradients in 1/Angstrom; times in seconds per structure (medians),
memory in bytes.

This script imports nothing from forcefit (miniff lives in a separate venv whose numpy and
torch differ). It reads one structure and the functions from an ``.npz`` written by the
benchmark, evaluates them with miniff's ``NeighborWrapper.eval`` ("kernel" for values,
"kernel_gradient" for gradients), and writes an ``.npz`` back.

Input fields: ``positions`` (atoms, 3), ``cell`` (3, 3) rows are lattice vectors,
``numbers`` (atoms,) atomic numbers, ``pbc`` (3,) bool (all true or all false),
``cutoff`` () Angstrom, ``g2`` (n2, 2) rows (eta, r_s), ``g4`` (n4, 3) rows
(eta, zeta, lambda), ``repeats`` (), ``gradients`` () 0 or 1, ``return_gradients`` () 0 or 1.

Output fields: ``values`` (functions, atoms) in the order g2 rows then g4 rows;
``gradients`` (functions, atoms, atoms, 3), d D_f(i) / d x_j, if ``return_gradients``;
``t_neighbours``, ``t_values``, ``t_gradients`` seconds (medians; -1 when not run);
``gradient_bytes`` bytes of miniff's gradient array; ``n_pairs`` neighbour pairs found;
``miniff_version``, ``numpy_version``.

Mapping of forcefit's parameters onto miniff's families (read from miniff's
``potentials.py`` and its Cython ``_potentials.pyx``, kernels ``kernel_mlsf_g2`` and
``kernel_mlsf_g4``):

- cutoff: miniff's ``a`` is the cutoff radius of the cosine cutoff
  fc(r) = (1 + cos(pi r / a)) / 2 for r < a (``sine_cutoff_fn``), forcefit's ``"cosine"``.
- G2: miniff ``behler2`` computes sum_j exp(-eta (r_ij - r_sphere)^2) fc(r_ij): same eta
  (no factor 1/2 or 1/a^2), r_sphere = r_s.
- G4: miniff ``behler4`` computes 2^(1-zeta) epsilon (1 + l cos theta)^zeta
  exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) fc fc fc with l = lambda. For a tag "A-B-B" (both
  neighbours of one species) it loops k >= j, k != j and counts each unordered pair twice
  (``1 + r12_symmetry_allowed * (ptr1 != ptr2)``), i.e. it sums ordered pairs j != k;
  forcefit sums unordered pairs j < k (DScribe's convention). epsilon = 1/2 therefore
  gives forcefit's values exactly. (For "A-B-C" with B != C miniff visits each unordered
  pair once, so epsilon = 1 would match; only one-species systems are run here.)
- miniff's gradient is dense: (atoms, atoms, 3) per function and structure, entry [i, j]
  = d D(i) / d x_j, including j = i.

One thread: the caller sets ``OMP_NUM_THREADS=1`` (miniff's parallel ``pkernel_*`` use
OpenMP ``prange``).

Run:  python _miniff_peer.py INPUT.npz OUTPUT.npz
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time


def _fail(msg: str) -> None:
    print(f"miniff peer: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import numpy as np
    from miniff.kernel import Cell, NeighborWrapper
    from miniff.potentials import behler2_descriptor_family, behler4_descriptor_family
    from miniff.version import __version__ as MINIFF_VERSION
except Exception as err:  # noqa: BLE001  report any import failure as one line
    _fail(f"cannot import miniff: {type(err).__name__}: {err}")

SYMBOLS = {1: "H", 6: "C", 8: "O", 29: "Cu"}
FIELDS = ("positions", "cell", "numbers", "pbc", "cutoff", "g2", "g4", "repeats",
          "gradients", "return_gradients")


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds (one warm-up call first)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def load(path: str) -> dict:
    try:
        with np.load(path) as f:
            missing = [k for k in FIELDS if k not in f.files]
            if missing:
                _fail(f"{path}: missing field(s) {', '.join(missing)}")
            return {k: f[k] for k in FIELDS}
    except OSError as err:
        _fail(f"{path}: cannot read ({err})")


def descriptors(cutoff: float, g2, g4, tag2: str, tag4: str) -> list:
    """miniff potentials in forcefit's column order (module doc for the mapping)."""
    out = [behler2_descriptor_family(a=cutoff, eta=float(eta), r_sphere=float(rs)).copy(tag=tag2)
           for eta, rs in g2]
    out += [behler4_descriptor_family(a=cutoff, eta=float(eta), zeta=float(zeta), l=float(lam),
                                      epsilon=0.5).copy(tag=tag4)
            for eta, zeta, lam in g4]
    return out


def neighbour_wrapper(inp: dict):
    pos = np.asarray(inp["positions"], dtype=float)  # (atoms, 3)
    cell = np.asarray(inp["cell"], dtype=float)  # (3, 3)
    pbc = np.asarray(inp["pbc"], dtype=bool)  # (3,)
    if pbc.any() != pbc.all():
        _fail(f"pbc {pbc.tolist()}: miniff's NeighborWrapper is periodic in all or no directions")
    names = []
    for z in np.asarray(inp["numbers"]).tolist():
        if z not in SYMBOLS:
            _fail(f"numbers: atomic number {z} not in this script's table {SYMBOLS}")
        names.append(SYMBOLS[z])
    frac = pos @ np.linalg.inv(cell)  # (atoms, 3) coordinates in the box basis
    nw = NeighborWrapper(Cell(cell, frac, names), normalize=bool(pbc.all()))
    cutoff = float(inp["cutoff"])
    nw.set_cutoff(cutoff=cutoff, pbc=bool(pbc.all()))
    return nw, names, cutoff


def main(argv) -> int:
    if len(argv) != 3:
        _fail("usage: _miniff_peer.py INPUT.npz OUTPUT.npz")
    inp = load(argv[1])
    nw, names, cutoff = neighbour_wrapper(inp)
    if len(set(names)) != 1:
        _fail(f"species {sorted(set(names))}: only one-species structures are mapped here")
    s = names[0]
    pots = descriptors(cutoff, inp["g2"], inp["g4"], f"{s}-{s}", f"{s}-{s}-{s}")
    repeats = int(inp["repeats"])
    t_nb = median_time(lambda: nw.compute_distances(cutoff), repeats)
    values = nw.eval(pots, "kernel")  # (functions, atoms)
    t_val = median_time(lambda: nw.eval(pots, "kernel"), repeats)
    n = len(names)
    grad_bytes = len(pots) * n * n * 3 * 8  # dense float64 (functions, atoms, atoms, 3)
    out = {"values": values, "t_neighbours": t_nb, "t_values": t_val, "t_gradients": -1.0,
           "gradient_bytes": grad_bytes, "n_pairs": nw.sparse_pair_distances.nnz,
           "miniff_version": MINIFF_VERSION, "numpy_version": np.__version__}
    if int(inp["gradients"]):
        # every call allocates its own zeroed dense array, as miniff does; the values are
        # already warm, so the first gradient call is timed too (it may be the only one)
        ts = []
        for k in range(max(1, repeats)):
            t0 = time.perf_counter()
            grads = nw.eval(pots, "kernel_gradient")  # (functions, atoms, atoms, 3)
            ts.append(time.perf_counter() - t0)
            if k == 0:
                out["gradient_bytes"] = grads.nbytes
                if int(inp["return_gradients"]):
                    out["gradients"] = grads
            del grads
        out["t_gradients"] = statistics.median(ts)
    target = os.path.abspath(argv[2])
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
