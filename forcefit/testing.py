"""The reusable physics test kit: every energy model in forcefit must pass it.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE stress sign), as everywhere inside
forcefit. Every check works on any energy model (an ``nn.Module`` with ``cutoff`` and
``forward(graph, vectors) -> (atoms,)``), evaluates a float64 deep copy of it (the model
passed in is never modified) and raises ``AssertionError`` with a message naming the check,
the quantity, the worst component and the error. Checks:

- :func:`check_forces_fd`: F = -dE/dr against central finite differences
  F_ak ~ -[E(r_ak + h) - E(r_ak - h)] / (2h), all displaced copies evaluated as one batch.
- :func:`check_stress_fd`: sigma = (1/V) dE/d(epsilon) against central differences over a
  symmetric homogeneous strain of positions and cell (3D-periodic structures; other
  structures must report zero stress).
- :func:`check_gradcheck`: ``torch.autograd.gradcheck`` (and ``gradgradcheck``, which force
  training needs) of the energy in float64 with respect to positions, and the parameters.
- :func:`check_invariances`: rotation (energy invariant, forces and stress co-rotate),
  translation, permutation of atoms, and moving atoms into other periodic images.
- :func:`check_supercell`: an n1 x n2 x n3 supercell has n1 n2 n3 times the energy, the
  same per-atom energies, forces and stress.
- :func:`check_batched_equals_single`: a batch of structures gives the results of each alone.
- :func:`check_extra_edges_ignored`: a graph built with a larger cutoff changes nothing
  (models ignore edges at r >= cutoff; :class:`~forcefit.potentials.Sum` and the
  calculator's Verlet skin rely on it).
- :func:`check_zero_force_at_cutoff`: a dimer just inside the cutoff has zero energy and
  force (for models that are smooth at the cutoff).

:func:`run_physics_kit` runs them all.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from .neighbors import build_graph
from .potentials.base import evaluate
from .structure import Structure

F64 = torch.float64


def _f64(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).to(F64)


def _eval(model, structures, cutoff: float | None = None, forces=True, stress=True) -> dict:
    graph = build_graph(structures, model.cutoff if cutoff is None else cutoff, dtype=F64)
    out = evaluate(model, graph, forces=forces, stress=stress)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def _assert_close(check: str, what: str, got, want, rtol: float, atol: float) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{check}: {what}: shape {got.shape} != expected {want.shape}")
    if not np.isfinite(got).all():
        raise AssertionError(f"{check}: {what}: contains NaN or inf")
    if got.size == 0:
        return
    err = np.abs(got - want)
    tol = atol + rtol * np.abs(want).max()
    if err.max() > tol:
        k = np.unravel_index(int(np.argmax(err)), err.shape)
        raise AssertionError(
            f"{check}: {what}: max error {err.max():.3e} > tolerance {tol:.3e} at index "
            f"{tuple(int(x) for x in k)} (got {got[k]:.10g}, expected {want[k]:.10g})")


def _fully_periodic(s: Structure) -> bool:
    return bool(np.all(s.pbc))


# --------------------------------------------------------------------------- checks
def check_forces_fd(model, structure: Structure, *, h: float = 1e-4, rtol: float = 1e-5,
                    atol: float = 1e-6, max_atoms: int | None = 16) -> None:
    """Autograd forces against central finite differences of the energy.

    ``max_atoms`` limits the displaced atoms (the first ones) to keep it fast.
    """
    m = _f64(model)
    ref = _eval(m, [structure], stress=False)
    n = len(structure) if max_atoms is None else min(len(structure), max_atoms)
    shifted = []
    for a in range(n):  # test helper: builds 6 n displaced copies, evaluated in one batch
        for k in range(3):
            for sign in (1.0, -1.0):
                s = structure.copy()
                s.positions[a, k] += sign * h
                shifted.append(s)
    e = _eval(m, shifted, forces=False, stress=False)["energy"].reshape(n, 3, 2)
    fd = -(e[..., 0] - e[..., 1]) / (2 * h)  # (n, 3)
    _assert_close("check_forces_fd", "forces vs finite differences", ref["forces"][:n], fd,
                  rtol, atol)


def check_stress_fd(model, structure: Structure, *, h: float = 1e-5, rtol: float = 1e-5,
                    atol: float = 1e-7) -> None:
    """Autograd stress against central differences over a symmetric strain of the cell.

    sigma_ab = dE/dh / (V (2 - delta_ab)) for the strain h (e_a e_b^T + e_b e_a^T)/(1 +
    delta_ab) applied to positions and cell, x -> x (I + strain). For structures not
    periodic in 3D the reported stress must be zero.
    """
    m = _f64(model)
    ref = _eval(m, [structure])
    if not _fully_periodic(structure):
        _assert_close("check_stress_fd", "stress of a non-3D-periodic structure",
                      ref["stress"][0], np.zeros((3, 3)), 0.0, 0.0)
        return
    comps = [(a, b) for a in range(3) for b in range(a, 3)]
    strained = []
    for a, b in comps:
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * h
            s = structure.copy()
            s.positions = s.positions @ (np.eye(3) + eps)
            s.cell = s.cell @ (np.eye(3) + eps)
            strained.append(s)
    e = _eval(m, strained, forces=False, stress=False)["energy"].reshape(len(comps), 2)
    dedh = (e[:, 0] - e[:, 1]) / (2 * h)  # (6,)
    fd = np.zeros((3, 3))
    for (a, b), d in zip(comps, dedh):
        fd[a, b] = fd[b, a] = d / (structure.volume * (1 if a == b else 2))
    _assert_close("check_stress_fd", "stress vs finite differences", ref["stress"][0], fd,
                  rtol, atol)


def check_gradcheck(model, structure: Structure, *, second_order: bool = True,
                    parameters: bool = True, eps: float = 1e-6, atol: float = 1e-5,
                    rtol: float = 1e-4, fast_mode: bool = True) -> None:
    """float64 ``gradcheck`` (and ``gradgradcheck``) of the energy w.r.t. positions and
    (``parameters=True``) every trainable parameter. The edge list is fixed.

    ``fast_mode=True`` uses torch's randomised projections (one Jacobian-vector product
    instead of the full Jacobian; see the ``torch.autograd.gradcheck`` docs)."""
    m = _f64(model)
    # a little wider than the cutoff: a model whose cutoff follows a parameter (SW) stays valid
    graph = build_graph([structure], float(m.cutoff) * 1.01, dtype=F64)

    def energy_of_positions(pos):
        g = _replace_positions(graph, pos)
        return m(g, g.edge_vectors()).sum()

    pos = graph.positions.clone().requires_grad_(True)
    _run_gradcheck("positions", energy_of_positions, pos, second_order, eps, atol, rtol,
                   fast_mode)
    if not parameters:
        return
    vectors = graph.edge_vectors()
    params = {k: v for k, v in m.named_parameters() if v.requires_grad}
    for name, p in params.items():
        def energy_of_param(value, name=name):
            state = {**params, name: value}
            return torch.func.functional_call(m, state, (graph, vectors)).sum()

        value = p.detach().clone().requires_grad_(True)
        _run_gradcheck(f"parameter {name}", energy_of_param, value, second_order, eps, atol,
                       rtol, fast_mode)


def _replace_positions(graph, pos):
    return dataclasses.replace(graph, positions=pos)


def _run_gradcheck(what, fn, x, second_order, eps, atol, rtol, fast_mode) -> None:
    try:
        torch.autograd.gradcheck(fn, (x,), eps=eps, atol=atol, rtol=rtol, fast_mode=fast_mode)
        if second_order:
            torch.autograd.gradgradcheck(fn, (x,), eps=eps, atol=atol, rtol=rtol,
                                         fast_mode=fast_mode)
    except RuntimeError as err:  # GradcheckError is a RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise AssertionError(f"check_gradcheck: energy w.r.t. {what}: {first}") from err


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (3, 3) (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def check_invariances(model, structure: Structure, *, seed: int = 0, rtol: float = 1e-9,
                      atol: float = 1e-10) -> None:
    """Rotation, translation, permutation and periodic-image invariance (equivariance of
    forces, stress and per-atom energies)."""
    m = _f64(model)
    rng = np.random.default_rng(seed)
    ref = _eval(m, [structure])
    name = "check_invariances"

    rot = random_rotation(rng)
    s = structure.copy()
    s.positions = s.positions @ rot.T
    s.cell = s.cell @ rot.T
    out = _eval(m, [s])
    _assert_close(name, "energy after rotation", out["energy"], ref["energy"], rtol, atol)
    _assert_close(name, "per-atom energies after rotation", out["energies"], ref["energies"],
                  rtol, atol)
    _assert_close(name, "forces after rotation", out["forces"], ref["forces"] @ rot.T, rtol,
                  atol)
    _assert_close(name, "stress after rotation", out["stress"][0],
                  rot @ ref["stress"][0] @ rot.T, rtol, atol)

    s = structure.copy()
    s.positions = s.positions + rng.normal(size=3) * 3.0
    out = _eval(m, [s])
    for key in ("energy", "energies", "forces", "stress"):
        _assert_close(name, f"{key} after translation", out[key], ref[key], rtol, atol)

    perm = rng.permutation(len(structure))
    s = structure.copy()
    s.numbers, s.positions = s.numbers[perm], s.positions[perm]
    # a model over an explicit topology names atoms: relabel it with them
    out = _eval(m.permuted(perm) if hasattr(m, "permuted") else m, [s])
    _assert_close(name, "energy after permutation", out["energy"], ref["energy"], rtol, atol)
    for key in ("energies", "forces"):
        _assert_close(name, f"{key} after permutation", out[key], ref[key][perm], rtol, atol)
    _assert_close(name, "stress after permutation", out["stress"], ref["stress"], rtol, atol)

    if structure.pbc.any():
        images = rng.integers(-2, 3, size=(len(structure), 3)) * structure.pbc  # (atoms, 3)
        s = structure.copy()
        s.positions = s.positions + images @ structure.cell
        out = _eval(m, [s])
        for key in ("energy", "energies", "forces", "stress"):
            _assert_close(name, f"{key} after moving atoms to other periodic images",
                          out[key], ref[key], rtol, atol)


def _has_topology(model) -> bool:
    return any(hasattr(m, "topology") for m in model.modules())


def check_supercell(model, structure: Structure, reps: Sequence[int] | None = None, *,
                    rtol: float = 1e-9, atol: float = 1e-10) -> None:
    """An n1 x n2 x n3 supercell: n1 n2 n3 times the energy, same per-atom quantities."""
    if not structure.pbc.any():
        raise ValueError("check_supercell: the structure is not periodic in any direction")
    if _has_topology(model):
        raise ValueError("check_supercell: the model has an explicit topology, which names the "
                         "atoms of one cell; a supercell needs a new topology")
    reps = tuple(int(r) for r in (reps if reps is not None else np.where(structure.pbc, 2, 1)))
    if any(r > 1 and not p for r, p in zip(reps, structure.pbc)):
        raise ValueError(f"check_supercell: reps {reps} repeat a non-periodic direction")
    m = _f64(model)
    ref = _eval(m, [structure])
    big = Structure.from_ase(structure.to_ase(labels=False).repeat(reps))
    out = _eval(m, [big])
    n = int(np.prod(reps))
    name = "check_supercell"
    _assert_close(name, f"energy of the {reps} supercell", out["energy"], n * ref["energy"],
                  rtol, atol)
    _assert_close(name, "per-atom energies in the supercell", out["energies"],
                  np.tile(ref["energies"], n), rtol, atol)
    _assert_close(name, "forces in the supercell", out["forces"],
                  np.tile(ref["forces"], (n, 1)), rtol, atol)
    _assert_close(name, "stress of the supercell", out["stress"], ref["stress"], rtol, atol)


def check_batched_equals_single(model, structures: Sequence[Structure], *, rtol: float = 1e-10,
                                atol: float = 1e-12) -> None:
    """Evaluating a batch gives each structure's own results."""
    m = _f64(model)
    batch = _eval(m, list(structures))
    start = 0
    for k, s in enumerate(structures):  # test helper: compares structure by structure
        one = _eval(m, [s])
        sl = slice(start, start + len(s))
        start += len(s)
        what = f"structure {k} of the batch"
        _assert_close("check_batched_equals_single", f"energy of {what}", batch["energy"][k],
                      one["energy"][0], rtol, atol)
        _assert_close("check_batched_equals_single", f"per-atom energies of {what}",
                      batch["energies"][sl], one["energies"], rtol, atol)
        _assert_close("check_batched_equals_single", f"forces of {what}", batch["forces"][sl],
                      one["forces"], rtol, atol)
        _assert_close("check_batched_equals_single", f"stress of {what}", batch["stress"][k],
                      one["stress"][0], rtol, atol)


def check_extra_edges_ignored(model, structure: Structure, *, extra: float = 1.5,
                              rtol: float = 1e-12, atol: float = 1e-12) -> None:
    """A graph built with cutoff + ``extra`` gives the same results (protocol requirement)."""
    m = _f64(model)
    ref = _eval(m, [structure])
    out = _eval(m, [structure], cutoff=m.cutoff + extra)
    for key in ("energy", "energies", "forces", "stress"):
        _assert_close("check_extra_edges_ignored", f"{key} with a graph {extra} A wider",
                      out[key], ref[key], rtol, atol)


def check_zero_force_at_cutoff(model, numbers: Sequence[int] = (1, 1), *, delta: float = 1e-6,
                               atol: float = 1e-6) -> None:
    """A dimer of ``numbers`` at cutoff - ``delta`` has |E|, |F| <= atol; at cutoff + delta
    (still inside a wider graph) exactly zero."""
    m = _f64(model)
    rc = float(m.cutoff)
    for r, tol in ((rc - delta, atol), (rc + delta, 0.0)):
        s = Structure(numbers=list(numbers), positions=[[0, 0, 0], [r, 0, 0]])
        out = _eval(m, [s], cutoff=rc + 2 * delta + 1e-3)
        _assert_close("check_zero_force_at_cutoff", f"dimer energy at r = {r:.8g}",
                      out["energy"], np.zeros(1), 0.0, tol)
        _assert_close("check_zero_force_at_cutoff", f"dimer forces at r = {r:.8g}",
                      out["forces"], np.zeros((2, 3)), 0.0, tol)


def rattled(structure: Structure, amplitude: float = 0.05, seed: int = 1) -> Structure:
    """A copy with positions displaced by Gaussian noise of ``amplitude`` Angstrom."""
    s = structure.copy()
    s.positions = s.positions + np.random.default_rng(seed).normal(
        scale=amplitude, size=s.positions.shape)
    return s


ALL_CHECKS = ("forces_fd", "stress_fd", "gradcheck", "invariances", "supercell", "batched",
              "extra_edges", "zero_force_at_cutoff")


def run_physics_kit(model, structure: Structure, skip: Sequence[str] = ()) -> list[str]:
    """Run every check on ``model`` and ``structure``; returns the names of the checks run.

    ``skip`` names checks from :data:`ALL_CHECKS` not to run (e.g. "zero_force_at_cutoff"
    for a model whose force jumps at the cutoff). "supercell" is skipped for structures
    with no periodic direction and for models over an explicit topology. The dimer of "zero_force_at_cutoff" uses the first atomic
    number of ``structure``.
    """
    unknown = set(skip) - set(ALL_CHECKS)
    if unknown:
        raise ValueError(f"run_physics_kit: unknown checks in skip: {sorted(unknown)}; "
                         f"known: {ALL_CHECKS}")
    z = int(structure.numbers[0])
    runs = {
        "forces_fd": lambda: check_forces_fd(model, structure),
        "stress_fd": lambda: check_stress_fd(model, structure),
        "gradcheck": lambda: check_gradcheck(model, structure),
        "invariances": lambda: check_invariances(model, structure),
        "supercell": lambda: check_supercell(model, structure),
        "batched": lambda: check_batched_equals_single(model, [structure, rattled(structure)]),
        "extra_edges": lambda: check_extra_edges_ignored(model, structure),
        "zero_force_at_cutoff": lambda: check_zero_force_at_cutoff(model, (z, z)),
    }
    done = []
    for name in ALL_CHECKS:
        if name in skip or (name == "supercell" and (not structure.pbc.any()
                                                       or _has_topology(model))):
            continue
        runs[name]()
        done.append(name)
    return done
