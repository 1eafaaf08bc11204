"""Bonded terms (forcefit.potentials.bonded): physics kit, independent references, errors.

Units: Angstrom / eV style numbers for the synthetic structures; nm and kJ/mol for the ethane
reference trajectory (../shared/data/ethane_cg, skipped when absent).
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from forcefit.neighbors import build_graph
from forcefit.potentials import Sum, from_config
from forcefit.potentials.base import evaluate
from forcefit.potentials.bonded import (
    HarmonicAngle,
    HarmonicBond,
    PeriodicDihedral,
    SplineBond,
    minimum_image,
    natural_spline_second_derivatives,
    spline_energy,
)
from forcefit.structure import Structure
from forcefit.testing import (
    check_batched_equals_single,
    check_extra_edges_ignored,
    check_forces_fd,
    check_gradcheck,
    check_stress_fd,
    random_rotation,
    rattled,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKEWED = np.array([[4.0, 0.0, 0.0], [1.3, 3.8, 0.0], [-0.9, 0.7, 4.2]])


def chain(periodic: bool, seed: int = 0) -> Structure:
    """Six atoms in a zig-zag chain, wrapped into a skewed cell (so bonds cross the boundary)."""
    rng = np.random.default_rng(seed)
    steps = np.array([[1.0, 0.3, 0.1], [0.5, 0.9, -0.3], [0.9, -0.4, 0.4], [0.2, 0.8, 0.8],
                      [1.0, 0.1, -0.5]]) + rng.normal(scale=0.05, size=(5, 3))
    pos = np.vstack([[[2.5, 2.0, 3.0]], 2.5 + np.cumsum(steps, axis=0) * [1, 1, 1] - [0, 0.5, 0]])
    if periodic:
        frac = np.linalg.solve(SKEWED.T, pos.T).T % 1.0
        pos = frac @ SKEWED
        return Structure(numbers=[6] * 6, positions=pos, cell=SKEWED, pbc=True)
    return Structure(numbers=[6] * 6, positions=pos)


def models() -> dict[str, torch.nn.Module]:
    return {
        "HarmonicBond": HarmonicBond([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], kb=[3.0, 5.0],
                                     b0=[1.1, 0.9], types=[0, 1, 0, 1, 0]),
        "HarmonicAngle": HarmonicAngle([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]],
                                       kth=[2.0, 1.0], th0=[1.9, 2.2], types=[0, 1, 1, 0]),
        "PeriodicDihedral": PeriodicDihedral([[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5],
                                              [0, 1, 2, 3]], kd=[0.7, -0.4], n=[3, 1],
                                             phi0=[0.2, -0.5], types=[0, 0, 1, 1]),
        "SplineBond": SplineBond([[0, 1], [1, 2], [3, 4]], r_min=0.5, r_max=2.0, n_knots=12,
                                 values=np.sin(np.linspace(0, 3, 12))[None].repeat(2, 0)
                                 + np.array([[0.0], [0.5]]), types=[0, 1, 0]),
        "Sum": Sum([HarmonicBond([[0, 1], [4, 5]], kb=2.0, b0=1.2),
                    HarmonicAngle([[0, 1, 2]], kth=1.5, th0=2.0)]),
    }


def kit_copy(model):
    """The kit builds graphs at ``model.cutoff``; forcefit's neighbour list refuses cutoff 0,
    so the kit gets a copy with a 1.5 A cutoff: real edges that a bonded model must ignore."""
    m = copy.deepcopy(model).double()
    for sub in m.modules():
        if hasattr(sub, "topology"):
            sub.cutoff = 1.5
    assert m.cutoff == 1.5
    return m


@pytest.mark.parametrize("name", list(models()))
@pytest.mark.parametrize("periodic", [True, False])
def test_physics_kit(name, periodic):
    """Finite differences (forces, stress), float64 gradcheck (positions and parameters),
    batched == single, extra edges ignored. Supercell and permutation do not apply to an
    explicit topology (it names atoms); their topology-aware versions are tested below."""
    model = kit_copy(models()[name])
    s = rattled(chain(periodic), 0.05, seed=3)
    check_forces_fd(model, s)
    if periodic:
        check_stress_fd(model, s)
    check_gradcheck(model, s)
    check_batched_equals_single(model, [s, rattled(s, 0.05, seed=5)])
    check_extra_edges_ignored(model, s)


def _eval(model, s: Structure) -> dict:
    out = evaluate(model.double(), build_graph(s, 1.0), stress=bool(s.pbc.all()))
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.parametrize("name", list(models()))
def test_invariances_with_topology(name):
    """Rotation (forces and stress co-rotate), translation, atoms moved into other periodic
    images, and a permutation of the atoms with the topology relabelled accordingly."""
    model = models()[name]
    s = chain(True)
    ref = _eval(model, s)
    rng = np.random.default_rng(7)
    rot = random_rotation(rng)
    r = s.copy()
    r.positions, r.cell = s.positions @ rot.T, s.cell @ rot.T
    out = _eval(model, r)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-10)
    np.testing.assert_allclose(out["stress"][0], rot @ ref["stress"][0] @ rot.T, atol=1e-10)
    t = s.copy()
    t.positions = s.positions + rng.normal(size=3) * 3
    np.testing.assert_allclose(_eval(model, t)["forces"], ref["forces"], atol=1e-10)
    w = s.copy()
    w.positions = s.positions + rng.integers(-2, 3, size=(6, 3)) @ s.cell
    out = _eval(model, w)
    for key in ("energy", "energies", "forces", "stress"):
        np.testing.assert_allclose(out[key], ref[key], atol=1e-10, err_msg=key)
    # permutation: atom a of the new structure is atom perm[a] of the old one
    perm = rng.permutation(6)
    p = s.copy()
    p.positions = s.positions[perm]
    relabelled = _relabel(model, perm)
    out = _eval(relabelled, p)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    np.testing.assert_allclose(out["energies"], ref["energies"][perm], atol=1e-12)


def _relabel(model, perm: np.ndarray):
    if isinstance(model, Sum):
        return Sum([t.permuted(perm) for t in model.terms])
    return model.permuted(perm)


@pytest.mark.parametrize("name", list(models()))
def test_config_round_trip(name):
    model = models()[name]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    again = from_config(model.to_config(), model.state_dict())
    s = chain(True)
    np.testing.assert_allclose(_eval(again, s)["forces"], _eval(model, s)["forces"], atol=1e-12)
    rebuilt = from_config(model.to_config())  # the config alone holds the physical values
    np.testing.assert_allclose(_eval(rebuilt, s)["energy"], _eval(model, s)["energy"],
                               rtol=1e-6)


def test_against_ase_geometry():
    """Energies against hand-written formulas on ASE's minimum-image distance, angle and
    dihedral (an independent geometry implementation), phi0 != 0 to pin the sign convention."""
    s = chain(True)
    atoms = Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=True)
    bond = HarmonicBond([[0, 1], [2, 3]], kb=[3.0, 5.0], b0=[1.1, 0.9], types=[0, 1])
    r = [atoms.get_distance(0, 1, mic=True), atoms.get_distance(2, 3, mic=True)]
    want = 0.5 * 3.0 * (r[0] - 1.1) ** 2 + 0.5 * 5.0 * (r[1] - 0.9) ** 2
    assert _eval(bond, s)["energy"][0] == pytest.approx(want, rel=1e-6)
    angle = HarmonicAngle([[0, 1, 2], [3, 4, 5]], kth=2.0, th0=1.9)
    th = [math.radians(atoms.get_angle(0, 1, 2, mic=True)),
          math.radians(atoms.get_angle(3, 4, 5, mic=True))]
    want = sum(0.5 * 2.0 * (t - 1.9) ** 2 for t in th)
    assert _eval(angle, s)["energy"][0] == pytest.approx(want, rel=1e-6)
    dih = PeriodicDihedral([[0, 1, 2, 3], [1, 2, 3, 4]], kd=0.7, n=1, phi0=0.6)
    phi = [math.radians(atoms.get_dihedral(0, 1, 2, 3, mic=True)),
           math.radians(atoms.get_dihedral(1, 2, 3, 4, mic=True))]
    want = sum(0.7 * (1 + math.cos(p - 0.6)) for p in phi)
    assert _eval(dih, s)["energy"][0] == pytest.approx(want, rel=1e-6)
    # per-atom energies share each term equally and add up to the total
    out = _eval(dih, s)
    assert out["energies"].sum() == pytest.approx(out["energy"][0], rel=1e-12)
    assert out["energies"][5] == 0.0 and out["energies"][0] > 0


def test_spline_against_scipy():
    """Natural cubic spline against scipy's CubicSpline(bc_type='natural') inside the knots,
    and the linear continuation with the end slopes outside."""
    from scipy.interpolate import CubicSpline

    knots = np.linspace(0.8, 2.0, 9)
    vals = np.cos(3 * knots) + knots**2
    ref = CubicSpline(knots, vals, bc_type="natural")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # parameters are created in the default dtype
    try:
        model = SplineBond([[0, 1]], r_min=0.8, r_max=2.0, n_knots=9, values=vals)
    finally:
        torch.set_default_dtype(default)
    r = np.linspace(0.8, 2.0, 57)
    got = model.bond_energy(torch.as_tensor(r)).detach().numpy()
    np.testing.assert_allclose(got, ref(r), rtol=1e-10, atol=1e-12)
    outside = np.array([0.5, 0.7, 2.1, 2.6])
    got = model.bond_energy(torch.as_tensor(outside)).detach().numpy()
    ends = np.where(outside < 1, 0.8, 2.0)
    np.testing.assert_allclose(got, ref(ends) + ref(ends, 1) * (outside - ends), rtol=1e-10)
    m = natural_spline_second_derivatives(9, 0.15)
    assert torch.allclose(m @ torch.as_tensor(vals), torch.as_tensor(ref(knots, 2)), atol=1e-8)
    # the kernel alone, with a trivially linear table, is linear everywhere
    lin = torch.linspace(0, 1, 5, dtype=torch.float64).expand(3, 5)  # (terms, knots)
    e = spline_energy(torch.tensor([-1.0, 0.3, 7.0], dtype=torch.float64), 0.0, 0.25, lin,
                      torch.zeros_like(lin))
    assert torch.allclose(e, torch.tensor([-1.0, 0.3, 7.0], dtype=torch.float64))


def test_minimum_image_brute_force():
    """minimum_image against a search over 7^3 images in a skewed cell, and the contract:
    a displacement shorter than half the smallest cell width comes back exactly, whatever
    lattice vectors were added to it."""
    rng = np.random.default_rng(11)
    cell = SKEWED
    n = 300
    d = rng.uniform(-6, 6, size=(n, 3))
    shifts = np.array(list(itertools.product(range(-3, 4), repeat=3))) @ cell  # (343, 3)
    brute = d[:, None] + shifts[None]
    want = brute[np.arange(n), np.argmin(np.linalg.norm(brute, axis=-1), axis=1)]
    cells = torch.as_tensor(cell).expand(n, 3, 3)
    got = minimum_image(torch.as_tensor(d), cells, torch.ones((n, 3), dtype=torch.bool)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    vol = abs(np.linalg.det(cell))
    width = min(vol / np.linalg.norm(np.cross(cell[(a + 1) % 3], cell[(a + 2) % 3]))
                for a in range(3))
    short = rng.normal(size=(n, 3))
    short *= (0.499 * width * rng.uniform(size=(n, 1))) / np.linalg.norm(short, axis=1)[:, None]
    moved = short + rng.integers(-4, 5, size=(n, 3)) @ cell
    got = minimum_image(torch.as_tensor(moved), cells, torch.ones((n, 3), dtype=torch.bool))
    np.testing.assert_allclose(got.numpy(), short, atol=1e-11)
    # mixed pbc: no shift along the open direction
    pbc = torch.tensor([[True, False, True]]).expand(n, 3)
    got = minimum_image(torch.as_tensor(d), cells, pbc).numpy()
    frac = np.linalg.solve(cell.T, (got - d).T).T
    np.testing.assert_allclose(frac[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)


@pytest.mark.skipif(not (DATA / "ethane_cg" / "forces_ethane.npy").exists(),
                    reason="../shared/data/ethane_cg not available")
def test_ethane_all_atom_force_field():
    """The all-atom ethane force field of the data README, written with these bonded terms,
    reproduces the trajectory's stored energies and forces (computed by an independent code)."""
    from forcefit.cg import CGData

    d = DATA / "ethane_cg"
    frames = slice(0, 9000, 450)  # 20 frames spread over all replicas
    pos = np.load(d / "positions_ethane.npy")[frames]
    frc = np.load(d / "forces_ethane.npy")[frames]
    ene = np.load(d / "energies_ethane.npy")[frames]
    per_deg2 = (180 / math.pi) ** 2  # kJ/mol/deg^2 -> kJ/mol/rad^2
    bonds = [[0, 1], [0, 2], [0, 3], [0, 4], [1, 5], [1, 6], [1, 7]]
    angles = ([[2, 0, 3], [2, 0, 4], [3, 0, 4], [5, 1, 6], [5, 1, 7], [6, 1, 7]]
              + [[h, 0, 1] for h in (2, 3, 4)] + [[h, 1, 0] for h in (5, 6, 7)])
    model = Sum([
        HarmonicBond(bonds, kb=[10041.6, 14225.6], b0=[0.1526, 0.1093], types=[0] + [1] * 6),
        HarmonicAngle(angles, kth=[0.042 * per_deg2, 0.066 * per_deg2],
                      th0=[math.radians(107.0), math.radians(110.7)], types=[0] * 6 + [1] * 6),
        PeriodicDihedral([[a, 0, 1, b] for a in (2, 3, 4) for b in (5, 6, 7)], kd=6.067, n=3),
    ]).double()
    data = CGData(pos, frc, cell=np.eye(3), pbc=True, units={"length": "nm", "energy": "kJ/mol"})
    out = evaluate(model, data.graph(torch.arange(len(pos)), 0.0), stress=False)
    np.testing.assert_allclose(out["energy"].detach().numpy(), ene, rtol=1e-5, atol=1e-3)
    forces = out["forces"].detach().numpy().reshape(frc.shape)
    assert np.abs(forces - frc).max() < 1e-5 * np.abs(frc).max() + 1e-3


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"HarmonicBond: topology must have shape \(terms, 2\)"):
        HarmonicBond([[0, 1, 2]])
    with pytest.raises(ValueError, match="repeats an atom"):
        HarmonicAngle([[0, 1, 0]])
    with pytest.raises(ValueError, match="negative atom index"):
        HarmonicBond([[0, -1]])
    with pytest.raises(ValueError, match="'types' must have one entry per term"):
        HarmonicBond([[0, 1], [1, 2]], types=[0])
    with pytest.raises(ValueError, match="parameter 'kb' must be > 0"):
        HarmonicBond([[0, 1]], kb=-1.0)
    with pytest.raises(ValueError, match="parameter 'b0' needs 1 or 2 values"):
        HarmonicBond([[0, 1], [1, 2]], b0=[1.0, 1.0, 1.0], types=[0, 1])
    with pytest.raises(ValueError, match=r"'th0' must lie in \(0, pi\)"):
        HarmonicAngle([[0, 1, 2]], th0=4.0)
    with pytest.raises(ValueError, match="multiplicity 'n' must be integers"):
        PeriodicDihedral([[0, 1, 2, 3]], n=1.5)
    with pytest.raises(ValueError, match="r_min < r_max"):
        SplineBond([[0, 1]], r_min=2.0, r_max=1.0)
    with pytest.raises(ValueError, match=r"'values' must have shape \(1, 5\)"):
        SplineBond([[0, 1]], 1.0, 2.0, n_knots=5, values=[1.0, 2.0])
    small = Structure(numbers=[6, 6], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="refers to atom 2 but a structure in the batch has only 2"):
        _eval(HarmonicAngle([[0, 1, 2]]), small)


def test_float32_graph_and_parameters_train():
    """A float32 graph works with the (default-dtype) parameters, and gradients reach them."""
    model = HarmonicBond([[0, 1]], kb=2.0, b0=1.0)
    g = build_graph(Structure(numbers=[1, 1], positions=[[0, 0, 0], [1.5, 0, 0]]), 1.0,
                    dtype=torch.float32)
    out = evaluate(model, g, stress=False, create_graph=True)
    assert out["energy"].dtype == torch.float32
    assert float(out["energy"][0].detach()) == pytest.approx(0.5 * 2.0 * 0.25, rel=1e-6)
    out["forces"].pow(2).sum().backward()
    assert model.log_kb.grad is not None and float(model.log_kb.grad.abs()) > 0
