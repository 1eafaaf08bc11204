"""miniff 0.1.4 side of ``benchmarks/descriptors.py``: run by miniff's own interpreter.

Units: positions and cell in Angstrom, eta in 1/Angstrom^2, r_s in Angstrom; descriptor
values dimensionless, gradients in 1/Angstrom; times in seconds per structure (medians),
memory in bytes.

This script imports nothing from forcefit (miniff lives in a separate venv whose numpy and
torch differ). It reads structures and the functions from an ``.npz`` written by the
benchmark, evaluates them with miniff's ``NeighborWrapper.eval`` ("kernel" for values,
"kernel_gradient" for gradients), one NeighborWrapper per structure, and writes an
``.npz`` back (temporary file + os.replace).

Input fields (structures concatenated): ``positions`` (atoms, 3); ``cells``
(structures, 3, 3), rows are lattice vectors (a zero cell for an open structure);
``counts`` (structures,) atoms per structure; ``numbers`` (atoms,) atomic numbers; ``pbc``
(structures, 3) bool, all true or all false per structure; ``species`` (S,) the descriptor
set's atomic numbers, ascending; ``cutoff`` () Angstrom; ``g2`` (n2, 2) rows (eta, r_s);
``g4`` (n4, 3) rows (eta, zeta, lambda); ``repeats`` (); ``gradients`` () 0 or 1;
``return_gradients`` () 0 or 1 (structures of one size only).

Output fields: ``values`` (F, atoms) in forcefit's column order (``descriptor_groups``);
``gradients`` (structures, F, n, n, 3), d D_f(i) / d x_j, if ``return_gradients``;
``t_neighbours``, ``t_values``, ``t_gradients`` seconds for all structures (medians; -1
when not run); ``gradient_bytes`` bytes of the dense per-structure gradient arrays
(F n^2 3 float64 each); ``n_pairs`` neighbour pairs found; ``miniff_version``,
``numpy_version``.

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
  gives forcefit's values exactly. For a tag "A-B-C" with B != C miniff visits each
  unordered pair {j of B, k of C} once: epsilon = 1 there.
- species: miniff's tags name the centre species too ("A-B" radial, "A-B-C" angular);
  forcefit's columns do not, so each centre species gets its own potentials and the
  per-centre results (zero on the other centres) are summed.
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

from _timing import median_time


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
FIELDS = ("positions", "cells", "counts", "numbers", "pbc", "species", "cutoff", "g2", "g4",
          "repeats", "gradients", "return_gradients")


def load(path: str) -> dict:
    try:
        with np.load(path) as f:
            missing = [k for k in FIELDS if k not in f.files]
            if missing:
                _fail(f"{path}: missing field(s) {', '.join(missing)}")
            return {k: f[k] for k in FIELDS}
    except OSError as err:
        _fail(f"{path}: cannot read ({err})")


def symbol(z: int, where: str) -> str:
    if z not in SYMBOLS:
        _fail(f"{where}: atomic number {z} not in this script's table {SYMBOLS}")
    return SYMBOLS[z]


def descriptor_groups(cutoff: float, g2, g4, species: list) -> dict:
    """Per centre species X: miniff potentials in forcefit's column order (module doc).

    forcefit's columns: for each neighbour species s (ascending Z) its G2 rows; then for
    each unordered species pair (a <= b, ordered by b then a) its G4 rows. miniff's tags
    name the centre too ("X-s", "X-a-b"), so each centre species gets its own list, zero
    on the other centres.
    """
    pairs = [(species[a], species[b]) for b in range(len(species)) for a in range(b + 1)]
    groups = {}
    for x in species:
        pots = [behler2_descriptor_family(a=cutoff, eta=float(eta), r_sphere=float(rs))
                .copy(tag=f"{x}-{s}") for s in species for eta, rs in g2]
        pots += [behler4_descriptor_family(a=cutoff, eta=float(eta), zeta=float(zeta),
                                           l=float(lam), epsilon=0.5 if sa == sb else 1.0)
                 .copy(tag=f"{x}-{sa}-{sb}") for sa, sb in pairs for eta, zeta, lam in g4]
        groups[x] = pots
    return groups


def neighbour_wrapper(pos, cell, pbc, names, cutoff: float, where: str):
    """A NeighborWrapper with distances computed; open structures get a padded box."""
    if pbc.any() != pbc.all():
        _fail(f"{where}: pbc {pbc.tolist()}: miniff's NeighborWrapper is periodic in all or "
              "no directions")
    periodic = bool(pbc.all())
    if not periodic and abs(np.linalg.det(cell)) < 1e-9:
        # the box of an open structure only sets fractional coordinates (no images)
        cell = np.diag(np.ptp(pos, axis=0) + 2.0 * cutoff + 1.0)  # (3, 3)
    frac = pos @ np.linalg.inv(cell)  # (atoms, 3) coordinates in the box basis
    nw = NeighborWrapper(Cell(cell, frac, names), normalize=periodic)
    nw.set_cutoff(cutoff=cutoff, pbc=periodic)
    nw.compute_distances(cutoff)
    return nw


def evaluate(jobs, kname: str) -> list:
    """Per structure: sum over its centre species of ``nw.eval(potentials, kname)``."""
    out = []
    for nw, groups in jobs:
        total = None
        for pots in groups:
            r = nw.eval(pots, kname, ignore_missing_species=True)  # (F, atoms[, atoms, 3])
            if total is None:
                total = r
            else:
                total += r
        out.append(total)
    return out


def main(argv) -> int:
    if len(argv) != 3:
        _fail("usage: _miniff_peer.py INPUT.npz OUTPUT.npz")
    inp = load(argv[1])
    cutoff = float(inp["cutoff"])
    species = [symbol(int(z), "species") for z in np.asarray(inp["species"]).tolist()]
    groups = descriptor_groups(cutoff, inp["g2"], inp["g4"], species)
    counts = np.asarray(inp["counts"], dtype=int)  # (structures,)
    starts = np.concatenate([[0], np.cumsum(counts)])  # (structures + 1,)
    positions = np.asarray(inp["positions"], dtype=float)  # (atoms, 3)
    numbers = np.asarray(inp["numbers"]).tolist()  # (atoms,)
    jobs = []
    for k, n in enumerate(counts.tolist()):
        where = f"structure {k}"
        names = [symbol(z, where) for z in numbers[starts[k]:starts[k] + n]]
        unknown = set(names) - set(species)
        if unknown:
            _fail(f"{where}: species {sorted(unknown)} not in the descriptor species {species}")
        nw = neighbour_wrapper(positions[starts[k]:starts[k] + n],
                               np.asarray(inp["cells"][k], dtype=float),
                               np.asarray(inp["pbc"][k], dtype=bool), names, cutoff, where)
        jobs.append((nw, [groups[x] for x in species if x in names]))
    repeats = int(inp["repeats"])
    t_nb = median_time(lambda: [nw.compute_distances(cutoff) for nw, _ in jobs], repeats)
    values = np.concatenate(evaluate(jobs, "kernel"), axis=1)  # (F, atoms)
    t_val = median_time(lambda: evaluate(jobs, "kernel"), repeats)
    f = values.shape[0]
    grad_bytes = int(sum(f * n * n * 3 * 8 for n in counts.tolist()))  # dense float64
    out = {"values": values, "t_neighbours": t_nb, "t_values": t_val, "t_gradients": -1.0,
           "gradient_bytes": grad_bytes,
           "n_pairs": sum(nw.sparse_pair_distances.nnz for nw, _ in jobs),
           "miniff_version": MINIFF_VERSION, "numpy_version": np.__version__}
    if int(inp["gradients"]):
        # every call allocates its own zeroed dense array, as miniff does; the values are
        # already warm, so the first gradient call is timed too (it may be the only one)
        ts = []
        for k in range(max(1, repeats)):
            t0 = time.perf_counter()
            grads = evaluate(jobs, "kernel_gradient")  # per structure (F, n, n, 3)
            ts.append(time.perf_counter() - t0)
            if k == 0 and int(inp["return_gradients"]):
                if len(set(counts.tolist())) != 1:
                    _fail("return_gradients needs structures of one size")
                out["gradients"] = np.stack(grads)  # (structures, F, n, n, 3)
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
