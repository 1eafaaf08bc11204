"""ForcefitCalculator: properties against direct evaluation, neighbour-list reuse, and
relaxations through ASE optimisers. Units: Angstrom, eV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.cluster import Icosahedron
from ase.optimize import BFGS

import forcefit.potentials as P
from forcefit import Structure, build_graph
from forcefit.calculator import ForcefitCalculator, evaluate_edges
from forcefit.potentials import evaluate
from forcefit.structure import matrix_to_voigt


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """ASE's optimisers call small numpy linear algebra; OpenBLAS threads spinning on a
    loaded machine made them ~10x slower. Limit them when threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def _rattled_bulk(seed=0):
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((2, 2, 1))
    atoms.set_cell(atoms.cell @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0.02, 0, 1]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _lj():
    return P.LennardJones(0.0104, 3.4, 8.5, shift=True)


def test_properties_match_direct_evaluation():
    atoms = _rattled_bulk()
    model = _lj()
    atoms.calc = ForcefitCalculator(model)
    ref = evaluate(model.double(), build_graph(Structure.from_ase(atoms), model.cutoff))
    e = atoms.get_potential_energy()
    assert e == pytest.approx(ref["energy"].item(), rel=1e-13)
    assert atoms.get_potential_energy(force_consistent=True) == e  # free_energy
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["energies"].detach().numpy(),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"].numpy(), rtol=1e-11,
                               atol=1e-14)
    np.testing.assert_allclose(atoms.get_stress(), matrix_to_voigt(ref["stress"][0].numpy()),
                               rtol=1e-11, atol=1e-15)
    assert abs(atoms.get_forces().sum(0)).max() < 1e-12  # Newton's third law


def _position_model():
    """A model that also reads positions and the cell (like bonded terms): a harmonic spring
    between atoms 0 and 1 through the minimum image, plus an LJ term on the vectors."""

    class Spring(torch.nn.Module):
        cutoff = 1.0

        def forward(self, graph, vectors):
            d = graph.positions[1] - graph.positions[0]
            frac = torch.linalg.solve(graph.cell[0].T, d)
            d = (frac - torch.round(frac.detach())) @ graph.cell[0]
            e = torch.zeros_like(graph.positions[:, 0])
            return e.index_add(0, torch.tensor([0]), (0.3 * (d.norm() - 2.0) ** 2)[None])

    return P.Sum([Spring(), _lj()])


@pytest.mark.parametrize("make", [_lj, lambda: P.StillingerWeber(), _position_model,
                                  lambda: P.Sum([P.ZBL(1.0, 2.5), _lj()])])
def test_edge_evaluation_equals_strain_autograd(make):
    """The calculator's fast path gives base.evaluate's numbers (forces and stress), also for
    models that read positions and the cell directly."""
    model = make().double()
    structures = [Structure.from_ase(_rattled_bulk(seed)) for seed in (1, 2)]
    graph = build_graph(structures, model.cutoff)
    ref = evaluate(model, graph)
    out = evaluate_edges(model, graph)
    for key in ("energy", "energies", "forces", "stress"):
        torch.testing.assert_close(out[key], ref[key].detach(), rtol=1e-11, atol=1e-13)


def test_stress_only_for_3d_periodic():
    atoms = Icosahedron("Ar", 2, latticeconstant=5.3)
    atoms.calc = ForcefitCalculator(_lj())
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="periodic in all 3"):
        atoms.get_stress()


def test_neighbour_list_reuse_is_exact():
    atoms = _rattled_bulk()
    reuse = ForcefitCalculator(_lj(), skin=1.0)
    fresh = ForcefitCalculator(_lj(), skin=0.0)
    rng = np.random.default_rng(3)
    for step in range(6):
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        for key in ("energy", "forces", "stress", "energies"):
            np.testing.assert_allclose(reuse.get_property(key, atoms),
                                       fresh.get_property(key, atoms), rtol=1e-12, atol=1e-14,
                                       err_msg=f"step {step}: {key}")
    assert reuse.n_builds < 6 and fresh.n_builds == 6
    n = reuse.n_builds
    atoms.positions[0] += 0.6  # more than skin / 2: rebuild
    reuse.get_property("energy", atoms)
    assert reuse.n_builds == n + 1
    atoms.set_cell(atoms.cell * 1.001, scale_atoms=True)  # new cell: rebuild
    reuse.get_property("energy", atoms)
    assert reuse.n_builds == n + 2
    atoms.positions[1, 2] = np.nan  # a NaN is reported, never reused silently
    with pytest.raises(ValueError, match="positions.*NaN"):
        reuse.get_property("energy", atoms)


def test_calculator_does_not_touch_the_model():
    model = _lj().float()
    calc = ForcefitCalculator(model, dtype=torch.float64)
    atoms = _rattled_bulk()
    atoms.calc = calc
    atoms.get_forces()
    assert model.epsilon.dtype == torch.float32 and calc.model.epsilon.dtype == torch.float64
    with pytest.raises(ValueError, match="not an energy model"):
        ForcefitCalculator(torch.nn.Linear(2, 2))


def test_bfgs_relaxes_lj13_to_the_known_minimum():
    """LJ13 global minimum (icosahedron): E = -44.326801 epsilon (Wales and Doye,
    J. Phys. Chem. A 101, 5111 (1997)). Reduced units: epsilon = sigma = 1, no truncation
    in practice (cutoff 10 sigma, far beyond the cluster)."""
    atoms = Icosahedron("Ar", 2, latticeconstant=2 ** (1 / 6) * np.sqrt(2) * 1.02)
    atoms.rattle(0.05, seed=1)
    atoms.calc = ForcefitCalculator(P.LennardJones(1.0, 1.0, 10.0))
    e0 = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=1e-5, steps=300)
    assert atoms.get_potential_energy() < e0
    assert atoms.get_potential_energy() == pytest.approx(-44.326801, abs=1e-5)


def test_cell_relaxation_matches_ase_lj():
    """FrechetCellFilter on fcc argon: forcefit's LJ and ASE's LJ calculator (same shifted
    potential) relax to the same lattice and energy, with zero stress."""
    from ase.calculators.lj import LennardJones as AseLJ
    from ase.filters import FrechetCellFilter

    results = []
    for calc in (ForcefitCalculator(_lj()), AseLJ(epsilon=0.0104, sigma=3.4, rc=8.5)):
        atoms = bulk("Ar", "fcc", a=5.0)
        atoms.set_cell(atoms.cell @ np.array([[1, 0.04, 0], [0, 1, 0], [0, 0, 1.03]]),
                       scale_atoms=True)
        atoms.calc = calc
        assert BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=500)
        assert np.abs(atoms.get_stress()).max() < 1e-6
        results.append((atoms.get_volume(), atoms.get_potential_energy()))
    (v_ours, e_ours), (v_ase, e_ase) = results
    assert v_ours == pytest.approx(v_ase, rel=1e-5)
    assert e_ours == pytest.approx(e_ase, rel=1e-8)
    assert 36.0 < v_ours < 42.0  # argon's fcc volume per atom is ~37.6-40 A^3 for these LJ


def test_geometry_independent_model():
    class Constant(torch.nn.Module):
        cutoff = 2.0

        def __init__(self):
            super().__init__()
            self.value = torch.nn.Parameter(torch.tensor(-1.5))

        def forward(self, graph, vectors):
            return self.value.expand(graph.numbers.shape[0])

    atoms = _rattled_bulk()
    atoms.calc = ForcefitCalculator(Constant())
    assert atoms.get_potential_energy() == pytest.approx(-1.5 * len(atoms))
    assert (atoms.get_forces() == 0).all() and (atoms.get_stress() == 0).all()


def test_single_atom_and_no_neighbours():
    atoms = Atoms("Ar", positions=[[0, 0, 0]])
    atoms.calc = ForcefitCalculator(_lj())
    assert atoms.get_potential_energy() == 0.0
    assert (atoms.get_forces() == 0).all()
