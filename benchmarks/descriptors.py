"""Benchmark: forcefit descriptors against DScribe ACSF, TorchANI's AEV and miniff.

Units: times in microseconds per atom (us/atom) or milliseconds per structure, memory in
bytes per atom. One thread (``torch.set_num_threads(1)``), medians of repeats, all peers in
this one process and run.

Systems (issue 3): fcc Cu 4x4x4 conventional cells (256 atoms, rattled 0.05 A), the 8x8x8
version (2048 atoms), both with cutoff 6 A and 8 G2 + 16 G4 functions; 100 rattled ethanol
molecules (H, C, O: 3 x 8 G2 + 6 x 16 G4 columns).

Reported per system and code: values; values + derivatives (forcefit: analytic per-edge
dD/dr_ij; DScribe: its numerical dense derivatives, timed on a few centres and scaled to all
atoms, since the full array takes minutes; TorchANI: values + autograd forces of a random
linear energy, there is no derivative array); values + forces (forcefit: contraction of the
stored derivatives and autograd through ``values``); bytes of derivative storage per atom;
ratios peer / forcefit.

forcefit is timed with each backend of the angular kernels: ``torch`` (vectorised torch) and
``numba`` (the compiled loops of ``forcefit.descriptors._numba``, when numba is installed);
ratios are against the default backend (``auto``: numba when installed, else torch).

miniff 0.1.4 runs in its own environment (it does not install on this environment's
numpy/torch): ``--miniff-python PATH`` (default ``$FORCEFIT_MINIFF_PYTHON``; skipped with a
printed reason when neither is set) runs ``benchmarks/_miniff_peer.py`` in that interpreter
with ``OMP_NUM_THREADS=1`` on the same Cu structures (passed through a temporary ``.npz``:
positions, cell, numbers, pbc) and the same functions: G2 -> miniff ``behler2`` (same eta,
r_sphere = r_s, same cosine cutoff a = rc), G4 -> ``behler4`` with epsilon = 1/2 (miniff sums
ordered neighbour pairs j != k, forcefit unordered j < k; see the peer's docstring). Before
any ratio is printed, miniff's per-atom values, and on Cu256 its dense gradients
d D_i / d x_j, are checked against forcefit's (per function, max |difference| / max |value|
<= 1e-8). miniff's "val+deriv" is its "kernel" time plus its "kernel_gradient" time (the
gradients are a separate pass), its memory the dense (F, atoms, atoms, 3) float64 array;
its gradients on the 2048-atom cell are skipped with a printed reason when that array would
take over 40% of the available memory. The ethanol set runs as 100 open NeighborWrappers
(one per molecule; each centre species has its own miniff potentials, the results summed).
Ratios forcefit / miniff are printed per forcefit backend (below 1: forcefit faster).

Run:  python benchmarks/descriptors.py [--quick] [--compiled] [--repeats N] [--backends LIST]
      [--forcefit-only] [--miniff-python PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

from _timing import median_time
from ase.build import bulk, molecule

from forcefit import Structure, build_graph
from forcefit.descriptors import DescriptorSet, angular_grid, contract, radial_grid

CUTOFF = 6.0


def cu_atoms(n: int, seed: int = 0):
    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
    at.rattle(0.05, seed=seed)
    return at


def ethanols(n: int = 100):
    out = []
    for k in range(n):
        at = molecule("CH3CH2OH")
        at.rattle(0.05, seed=k)
        out.append(at)
    return out


def params():
    g2 = radial_grid(CUTOFF, 8, "centred", r_min=1.0)  # 8 G2
    g4 = angular_grid(cutoff=CUTOFF, n_eta=2, zetas=(1, 2, 4, 16))  # 2 x 4 x 2 = 16 G4
    return g2, g4


class Row:
    def __init__(self, system, code, n_atoms):
        self.system, self.code, self.n_atoms = system, code, n_atoms
        self.values = self.derivs = self.forces = None  # seconds per structure set
        self.bytes_per_atom = None
        self.note = ""

    def us(self, t):
        return "-" if t is None else f"{t / self.n_atoms * 1e6:10.1f}"


# ----------------------------------------------------------------------------- forcefit
def bench_forcefit(system, atoms_list, species, repeats, compiled=False, backend="torch"):
    g2, g4 = params()
    ds = DescriptorSet(CUTOFF, species, g2=g2, g4=g4, compiled=compiled, backend=backend)
    structures = [Structure.from_ase(a) for a in atoms_list]
    n = sum(len(s) for s in structures)
    row = Row(system, "ff torch+compile" if compiled else f"ff {backend}", n)
    t_compile = 0.0
    if compiled or backend == "numba":  # one-off compilation (both kernels), reported apart
        graph = build_graph(structures, CUTOFF)
        t0 = time.perf_counter()
        ds.compute(graph, derivatives=False)
        ds.compute(graph, derivatives=True)
        t_compile = time.perf_counter() - t0
    t_graph = median_time(lambda: build_graph(structures, CUTOFF), max(1, repeats // 2))
    graph = build_graph(structures, CUTOFF)
    row.values = median_time(lambda: ds.compute(graph, derivatives=False), repeats)
    row.derivs = median_time(lambda: ds.compute(graph, derivatives=True), repeats)
    _, dd = ds.compute(graph)
    w = torch.randn(ds.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    vec = graph.edge_vectors()

    def forces_contract():
        d, dd = ds.compute(graph)
        return contract(w.expand(d.shape[0], -1), dd, graph, vec)

    def forces_autograd():
        v = graph.edge_vectors().requires_grad_(True)
        e = (ds.values(graph, v) @ w).sum()
        return torch.autograd.grad(e, v)[0]

    row.forces = median_time(forces_contract, repeats)
    t_auto = median_time(forces_autograd, max(1, repeats // 2))
    row.bytes_per_atom = dd.numel() * dd.element_size() / n
    row.note = (f"{graph.i.shape[0]} edges, F={ds.n_features}; neighbour list "
                f"{t_graph / n * 1e6:.1f} us/atom (not included); values + forces by autograd "
                f"{t_auto / n * 1e6:.1f} us/atom; float32 storage "
                f"{row.bytes_per_atom / 2:.0f} B/atom"
                + (f"; first call with compilation {t_compile:.1f} s (one-off)" if compiled
                   else "")
                + (f"; first call (numba JIT, or its on-disk cache) {t_compile:.2f} s"
                   if backend == "numba" else ""))
    return row, ds


# ----------------------------------------------------------------------------- DScribe
def bench_dscribe(system, atoms_list, species, repeats, deriv_centres=2):
    try:
        from dscribe.descriptors import ACSF
    except ImportError as err:
        print(f"  DScribe skipped: {err}")
        return None
    g2, g4 = params()
    periodic = bool(atoms_list[0].pbc.any())
    acsf = ACSF(r_cut=CUTOFF, g2_params=g2, g4_params=g4, species=species, periodic=periodic)
    n = sum(len(a) for a in atoms_list)
    row = Row(system, "DScribe ACSF", n)
    arg = atoms_list[0] if len(atoms_list) == 1 else atoms_list
    row.values = median_time(lambda: acsf.create(arg), repeats)
    # numerical derivatives: time a few centres of the first structure, scale to all atoms
    at = atoms_list[0]
    centres = list(range(min(deriv_centres if len(at) < 1000 else 1, len(at))))
    t = median_time(lambda: acsf.derivatives(at, centers=centres, attach=True,
                                             return_descriptor=True), 1)
    per_centre = t / len(centres)
    row.derivs = per_centre * n
    f = acsf.get_number_of_features()
    row.bytes_per_atom = len(at) * 3 * f * 8  # dense (centres, atoms, 3, F) float64 per centre
    row.note = (f"derivatives: {len(centres)} centres of a {len(at)}-atom structure "
                f"took {t:.2f} s, scaled to {n} centres; dense array")
    return row


# ----------------------------------------------------------------------------- TorchANI
def bench_torchani(system, atoms_list, species, repeats):
    try:
        import torchani
        from torchani.aev import AEVComputer
        from torchani.aev._terms import ANIAngular, ANIRadial
    except ImportError as err:
        print(f"  TorchANI skipped: {err}")
        return None
    # 8 radial (1 eta x 8 shifts) and 16 angular (1 eta x 1 zeta x 4 shifts x 4 sections)
    radial = ANIRadial(eta=4.0, shifts=list(np.linspace(0.9, CUTOFF - 0.6, 8)), cutoff=CUTOFF)
    angular = ANIAngular(eta=2.0, zeta=8.0, shifts=list(np.linspace(0.9, CUTOFF - 0.6, 4)),
                         sections=list(np.linspace(0.2, 2.9, 4)),
                         cutoff=CUTOFF - 1e-6)  # TorchANI needs angular < radial cutoff
    periodic = bool(atoms_list[0].pbc.any())
    try:
        aev = AEVComputer(radial=radial, angular=angular, num_species=len(species),
                          neighborlist="cell_list" if periodic else "all_pairs").double()
    except Exception as err:  # noqa: BLE001  peer API differences: report, do not fail
        print(f"  TorchANI skipped: cannot build the AEV computer ({err})")
        return None
    del torchani
    zmap = {z: k for k, z in enumerate(sorted(species))}
    elem = torch.tensor([[zmap[z] for z in a.numbers] for a in atoms_list])  # (molecules, atoms)
    coords = torch.tensor(np.array([a.positions for a in atoms_list]), dtype=torch.float64)
    kw = {}
    if periodic:
        kw = {"cell": torch.tensor(np.array(atoms_list[0].cell), dtype=torch.float64),
              "pbc": torch.tensor([True, True, True])}
    n = int(elem.numel())
    row = Row(system, "TorchANI AEV", n)
    try:
        with torch.no_grad():
            out = aev(elem, coords, **kw)
        row.values = median_time(lambda: aev(elem, coords, **kw), repeats)
        w = torch.randn(out.shape[-1], dtype=torch.float64)

        def with_forces():
            c = coords.clone().requires_grad_(True)
            e = (aev(elem, c, **kw) @ w).sum()
            return torch.autograd.grad(e, c)[0]

        row.forces = median_time(with_forces, repeats)
    except Exception as err:  # noqa: BLE001
        print(f"  TorchANI skipped on {system}: {type(err).__name__}: {err}")
        return None
    row.note = f"{out.shape[-1]} AEV features (ANI functions, same counts); forces by autograd"
    return row


# ----------------------------------------------------------------------------- miniff
#: the peer script, run by miniff's own interpreter (miniff 0.1.4 needs an older stack)
MINIFF_PEER = Path(__file__).resolve().with_name("_miniff_peer.py")
#: relative agreement required between forcefit's and miniff's values and gradients
MINIFF_RTOL = 1e-8
#: seconds allowed to one miniff subprocess
MINIFF_TIMEOUT = 900
#: the gradients are returned for the equality check up to this many atoms
MINIFF_CHECK_ATOMS = 512


def miniff_reason(python: str | None) -> str | None:
    """Why miniff is skipped (None when ``python`` looks usable)."""
    if not python:
        return ("skipped: no interpreter given (pass --miniff-python PATH or set "
                "FORCEFIT_MINIFF_PYTHON to a python with miniff 0.1.4; miniff does not "
                "install into this environment's numpy/torch)")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"skipped: --miniff-python {python}: not an executable file"
    if not MINIFF_PEER.is_file():
        return f"skipped: the peer script {MINIFF_PEER} is missing"
    return None


def _available_bytes() -> float:
    """MemAvailable from /proc/meminfo in bytes (inf where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float("inf")


def _column_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per function (first axis): max |a - b| / max |b| over everything else."""
    a2 = a.reshape(a.shape[0], -1)  # (functions, rest)
    b2 = b.reshape(b.shape[0], -1)  # (functions, rest)
    scale = np.abs(b2).max(axis=1)  # (functions,)
    return np.abs(a2 - b2).max(axis=1) / np.where(scale > 0, scale, 1.0)


def _dense_gradient(dd: torch.Tensor, graph, n: int) -> np.ndarray:
    """forcefit's per-edge dD_i/dr_ij as miniff's dense dD_i/dx_j per structure.

    All structures of ``graph`` have ``n`` atoms; returns (structures, features, n, n, 3).
    r_ij = x_j - x_i + shift, so dD_i/dx_j = sum of dd over the edges i->j (images of j
    included) and dD_i/dx_i = -sum of dd over the edges leaving i (plus edges i->image of i).
    """
    m = graph.n_structures
    f = dd.shape[1]
    li = graph.i - graph.edge_batch * n  # (edges,) centre index within its structure
    lj = graph.j - graph.edge_batch * n  # (edges,) neighbour index within its structure
    base = graph.edge_batch * n * n  # (edges,) first entry of the structure's block
    dense = torch.zeros((m * n * n, f, 3), dtype=torch.float64)  # (structures*n*n, F, 3)
    dense.index_add_(0, base + li * n + lj, dd.double())
    dense.index_add_(0, base + li * (n + 1), -dd.double())  # diagonal entries li*n + li
    return dense.reshape(m, n, n, f, 3).permute(0, 3, 1, 2, 4).numpy()  # (m, F, n, n, 3)


def run_miniff_peer(python: str, atoms_list, species, g2, g4, repeats: int, gradients: bool,
                    return_gradients: bool) -> dict:
    """Run ``_miniff_peer.py`` on ``atoms_list``; returns its output fields (its docstring).

    Raises RuntimeError with the peer's message when it fails.
    """
    with tempfile.TemporaryDirectory(prefix="ff-miniff-") as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, positions=np.concatenate([a.positions for a in atoms_list]),
                 cells=np.array([np.asarray(a.cell, dtype=float) for a in atoms_list]),
                 counts=np.array([len(a) for a in atoms_list]),
                 numbers=np.concatenate([a.numbers for a in atoms_list]),
                 pbc=np.array([a.pbc for a in atoms_list], dtype=bool),
                 species=np.array(sorted(species)), cutoff=CUTOFF,
                 g2=np.asarray(g2, dtype=float).reshape(-1, 2),
                 g4=np.asarray(g4, dtype=float).reshape(-1, 3), repeats=repeats,
                 gradients=int(gradients), return_gradients=int(return_gradients))
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        try:
            proc = subprocess.run([python, str(MINIFF_PEER), src, dst], check=False, env=env,
                                  capture_output=True, text=True, timeout=MINIFF_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"no answer within {MINIFF_TIMEOUT} s") from None
        if proc.returncode != 0 or not os.path.exists(dst):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"exit status {proc.returncode}: " + " | ".join(tail))
        with np.load(dst) as f:
            return {k: f[k] for k in f.files}


def _by_family(err: np.ndarray, families: list[str]) -> str:
    return ", ".join(f"{fam} {max(e for e, g in zip(err, families) if g == fam):.1e}"
                     for fam in dict.fromkeys(families))


def bench_miniff(system, atoms_list, species, repeats, python, ds):
    """miniff 0.1.4's behler2/behler4 on the same structures and functions (one thread).

    Checks that its per-atom values (and, for structures of one size up to
    ``MINIFF_CHECK_ATOMS`` atoms, its dense gradients) equal forcefit's from ``ds`` to
    ``MINIFF_RTOL`` relative, then returns a :class:`Row` (values: "kernel"; val+deriv:
    "kernel" + "kernel_gradient", since miniff computes the gradients in a separate pass;
    memory: its dense per-structure gradient arrays).
    """
    sizes = [len(a) for a in atoms_list]
    n = sum(sizes)
    g2, g4 = params()
    f = ds.n_features
    need = sum(f * k * k * 3 * 8 for k in sizes)  # bytes of miniff's dense gradient arrays
    avail = _available_bytes()
    gradients = max(f * k * k * 3 * 8 for k in sizes) < 0.4 * avail
    if not gradients:
        print(f"  miniff gradients skipped on {system}: its dense (F, atoms, atoms, 3) array "
              f"needs {need / 2**30:.1f} GiB, over 40% of the {avail / 2**30:.1f} GiB available")
    check = gradients and len(set(sizes)) == 1 and sizes[0] <= MINIFF_CHECK_ATOMS
    try:
        out = run_miniff_peer(python, atoms_list, species, g2, g4, repeats, gradients, check)
    except RuntimeError as err:
        print(f"  miniff skipped on {system}: {err}")
        return None
    graph = build_graph([Structure.from_ase(a) for a in atoms_list], CUTOFF)
    d, dd = ds.compute(graph)  # (atoms, features), (edges, features, 3)
    families = [c["family"] for c in ds.layout()]
    err_v = _column_error(out["values"], d.double().numpy().T)
    ok = bool(err_v.max() <= MINIFF_RTOL)
    print(f"  miniff {out['miniff_version']} (numpy {out['numpy_version']}) on {system}: "
          f"{int(out['n_pairs'])} neighbour pairs (forcefit {graph.i.shape[0]} edges)")
    print(f"  miniff check values: max relative difference {_by_family(err_v, families)} "
          f"over {f} functions x {n} atoms ({'equal' if ok else 'NOT equal'} to "
          f"{MINIFF_RTOL:g})")
    if check:
        mine = _dense_gradient(dd, graph, sizes[0])  # (structures, F, n, n, 3)
        err_g = _column_error(np.moveaxis(out["gradients"], 1, 0), np.moveaxis(mine, 1, 0))
        ok_g = bool(err_g.max() <= MINIFF_RTOL)
        print(f"  miniff check gradients dD_i/dx_j: max relative difference "
              f"{_by_family(err_g, families)} ({'equal' if ok_g else 'NOT equal'} to "
              f"{MINIFF_RTOL:g})")
    row = Row(system, "miniff 0.1.4", n)
    row.values = float(out["t_values"])
    if gradients:
        row.derivs = row.values + float(out["t_gradients"])
        row.bytes_per_atom = float(out["gradient_bytes"]) / n
    row.note = (f"behler2 + behler4 (epsilon = 1/2 for like neighbour pairs: miniff sums "
                f"ordered pairs j != k), F={f}, {len(atoms_list)} NeighborWrapper(s); "
                "kernel_gradient alone "
                + (f"{float(out['t_gradients']) / n * 1e6:.1f} us/atom, dense "
                   f"(F, atoms, atoms, 3) float64 {float(out['gradient_bytes']) / 2**20:.1f} "
                   "MiB" if gradients else "not run")
                + f"; neighbour list {float(out['t_neighbours']) / n * 1e6:.1f} us/atom "
                "(not included)" + ("" if ok else "; VALUES DIFFER: ratios not comparable"))
    return row


def _speed(ratio: float) -> str:
    if ratio <= 1:
        return f"{ratio:.3f} (forcefit {1 / ratio:.1f}x faster)"
    return f"{ratio:.3f} (forcefit {ratio:.1f}x slower)"


def miniff_ratios(ffs, mf) -> None:
    """Print forcefit / miniff time and memory ratios (below 1: forcefit is better)."""
    for r in ffs:
        parts = [f"values {_speed(r.values / mf.values)}"]
        if mf.derivs is not None:
            parts.append(f"values+derivatives {_speed(r.derivs / mf.derivs)}")
        if mf.bytes_per_atom is not None:
            parts.append(f"derivative memory {r.bytes_per_atom / mf.bytes_per_atom:.4f}")
        print(f"  ratio forcefit ({r.code[3:]}) / miniff: " + ", ".join(parts))


# ----------------------------------------------------------------------------- report
def report(rows, ref):
    print(f"  {'code':<17}{'values':>12}{'val+deriv':>12}{'val+forces':>12}"
          f"{'deriv B/atom':>14}   (us/atom)")
    for r in rows:
        b = "-" if r.bytes_per_atom is None else f"{r.bytes_per_atom:12.0f}"
        print(f"  {r.code:<17}{r.us(r.values):>12}{r.us(r.derivs):>12}{r.us(r.forces):>12}"
              f"{b:>14}")
    for r in rows:
        if r is ref:
            continue
        parts = []
        for key in ("values", "derivs", "forces"):
            a, b = getattr(r, key), getattr(ref, key)
            if a is not None and b is not None:
                parts.append(f"{key} {a / b:.1f}x")
        if r.bytes_per_atom and ref.bytes_per_atom:
            parts.append(f"memory {r.bytes_per_atom / ref.bytes_per_atom:.1f}x")
        print(f"  ratio {r.code} / {ref.code}: " + ", ".join(parts))
    for r in rows:
        if r.note:
            print(f"  note {r.code}: {r.note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 2048-atom system")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compiled", action="store_true",
                        help="also time forcefit with torch.compile'd kernels")
    parser.add_argument("--backends", default="torch,numba",
                        help="comma-separated forcefit backends to time (torch, numba)")
    parser.add_argument("--forcefit-only", action="store_true",
                        help="skip the peers (DScribe, TorchANI, miniff)")
    parser.add_argument("--miniff-python", default=os.environ.get("FORCEFIT_MINIFF_PYTHON"),
                        help="python of a separate environment with miniff 0.1.4 "
                             "(default: $FORCEFIT_MINIFF_PYTHON; miniff skipped if unset)")
    args = parser.parse_args(argv)
    from forcefit.descriptors import _numba

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "numba" in backends and not _numba.available():
        print("numba: not installed (pip install numba): numba backend skipped")
        backends.remove("numba")
    if not backends:
        parser.error("no backend to time")
    default = "numba" if _numba.available() else "torch"
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    print(f"forcefit descriptor benchmark: torch {torch.__version__}, 1 thread, "
          f"cutoff {CUTOFF} A, medians of {args.repeats}")
    reason = None if args.forcefit_only else miniff_reason(args.miniff_python)
    if reason:
        print(f"miniff: {reason}")
    systems = [("Cu256", [cu_atoms(4)], [29], args.repeats)]
    if not args.quick:
        systems.append(("Cu2048", [cu_atoms(8)], [29], max(1, args.repeats // 3)))
    systems.append(("ethanol x100", ethanols(100), [1, 6, 8], args.repeats))
    for name, atoms_list, species, reps in systems:
        print(f"\n== {name}: {sum(len(a) for a in atoms_list)} atoms")
        runs = [bench_forcefit(name, atoms_list, species, reps, backend=b) for b in backends]
        ffs = [r for r, _ in runs]
        ff, ff_set = next((run for run, b in zip(runs, backends) if b == default), runs[0])
        rows = list(ffs)
        if args.compiled:
            rows.append(bench_forcefit(name, atoms_list, species, reps, compiled=True)[0])
        for fn in () if args.forcefit_only else (bench_dscribe, bench_torchani):
            r = fn(name, atoms_list, species, reps)
            if r is not None:
                rows.append(r)
        mf = None
        if not args.forcefit_only and reason is None:
            mf = bench_miniff(name, atoms_list, species, reps, args.miniff_python, ff_set)
            if mf is not None:
                rows.append(mf)
        report(rows, ff)
        if mf is not None:
            miniff_ratios(ffs, mf)
        for r in ffs:
            ms = r.derivs * 1e3 / len(atoms_list)
            print(f"  forcefit ({r.code[3:]}) values + per-edge derivatives: {ms:.1f} ms "
                  "per structure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
