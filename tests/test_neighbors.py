"""Neighbour lists against ASE's independent implementation, and the written contract.

Units: Angstrom throughout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from forcefit.neighbors import Graph, build_graph, neighbor_list
from forcefit.structure import Structure, StructureError


def ase_edges(s: Structure, cutoff: float) -> dict[tuple[int, int, int, int, int], float]:
    """{(i, j, sx, sy, sz): distance} from ase.neighborlist (which is also strict: d < rc)."""
    atoms = Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc)
    i, j, S, d = ase_neighbor_list("ijSd", atoms, cutoff, self_interaction=False)
    return {(a, b, *map(int, sh)): dist for a, b, sh, dist in zip(i, j, S, d)}


def ours(s: Structure, cutoff: float) -> dict[tuple[int, int, int, int, int], float]:
    e = neighbor_list(s, cutoff)
    return {(a, b, *map(int, sh)): dist for a, b, sh, dist in zip(e.i, e.j, e.shift, e.distances)}


def check_contract(s: Structure, cutoff: float):
    """Compare with ASE and check every clause of the neighbors module contract."""
    e = neighbor_list(s, cutoff)
    mine, ref = ours(s, cutoff), ase_edges(s, cutoff)
    assert len(mine) == len(e), "duplicate edges"
    assert set(mine) == set(ref), (
        f"{len(set(mine) - set(ref))} extra and {len(set(ref) - set(mine))} missing edges")
    keys = sorted(ref)
    np.testing.assert_allclose([mine[k] for k in keys], [ref[k] for k in keys], rtol=1e-12)
    # vectors follow r_ij = r_j - r_i + shift @ cell, distances are their norms
    expect = s.positions[e.j] - s.positions[e.i] + e.shift @ s.cell  # (edges, 3)
    np.testing.assert_allclose(e.vectors, expect, atol=1e-12)
    np.testing.assert_allclose(e.distances, np.linalg.norm(e.vectors, axis=1), rtol=1e-14)
    assert np.all(e.distances < cutoff) and np.all(e.distances > 0)
    # full list: (i, j, S) <-> (j, i, -S); no self pair in the same image
    for (i, j, *sh) in mine:
        assert (j, i, *(-np.array(sh))) in mine
    assert not np.any((e.i == e.j) & ~e.shift.any(axis=1))
    # shifts vanish along open directions; edges sorted by centre, then neighbour
    assert not e.shift[:, ~s.pbc].any()
    order = np.lexsort((e.j, e.i))
    np.testing.assert_array_equal(order, np.arange(len(e)))
    assert e.i.dtype == e.j.dtype == e.shift.dtype == np.int64
    return e


def random_triclinic(rng, n: int, scale: float = 4.0, pbc=(True, True, True)) -> Structure:
    """A skewed cell (angles far from 90 degrees) with atoms partly outside it."""
    while True:
        cell = np.diag(rng.uniform(0.7, 1.3, 3) * scale)
        cell[np.tril_indices(3, -1)] = rng.uniform(-0.6, 0.6, 3) * scale  # strong tilt
        cell = cell @ np.linalg.qr(rng.normal(size=(3, 3)))[0]  # arbitrary orientation
        frac = rng.uniform(-0.5, 1.5, (n, 3))  # not wrapped into the cell
        s = Structure(numbers=rng.integers(1, 90, n), positions=frac @ cell, cell=cell, pbc=pbc)
        d = np.linalg.norm(s.positions[:, None] - s.positions[None], axis=-1)
        if n == 1 or d[np.triu_indices(n, 1)].min() > 0.3:
            return s


@pytest.mark.parametrize("seed", range(6))
def test_random_skewed_triclinic_cells_match_ase(seed):
    rng = np.random.default_rng(seed)
    s = random_triclinic(rng, n=int(rng.integers(2, 12)))
    e = check_contract(s, cutoff=float(rng.uniform(2.5, 6.0)))
    assert len(e) > 0


def test_atoms_many_cells_outside_the_box():
    rng = np.random.default_rng(3)
    s = random_triclinic(rng, 6)
    far = Structure(numbers=s.numbers, cell=s.cell, pbc=True,
                    positions=s.positions + rng.integers(-50, 50, (6, 3)) @ s.cell)
    e = check_contract(far, cutoff=4.0)
    assert np.abs(e.shift).max() > 10
    # same physical edges as the wrapped structure: compare sorted distances
    np.testing.assert_allclose(np.sort(e.distances), np.sort(neighbor_list(s, 4.0).distances),
                               rtol=1e-10)


@pytest.mark.parametrize("pbc", [(True, False, True), (False, True, False), (True, True, False)])
def test_mixed_pbc_matches_ase(pbc):
    rng = np.random.default_rng(sum(pbc) + 10 * pbc[0])
    s = random_triclinic(rng, n=10, scale=4.0, pbc=pbc)
    e = check_contract(s, cutoff=4.5)
    assert e.shift[:, list(pbc)].any(), "expected some periodic images"


@pytest.mark.parametrize("pbc", [(True, False, False), (True, True, False)])
def test_zero_cell_vectors_along_open_directions(pbc):
    """A wire / slab whose open directions have no cell vector (as ASE allows)."""
    rng = np.random.default_rng(5)
    cell = np.array([[2.9, 0.0, 0.0], [0.8, 2.6, 0.0], [0.0, 0.0, 0.0]])
    if not pbc[1]:
        cell[1] = 0.0
    s = Structure(numbers=[13] * 6, positions=rng.uniform(-2, 4, (6, 3)) * [1, 1, 0.5],
                  cell=cell, pbc=pbc)
    e = check_contract(s, cutoff=5.0)
    assert e.shift[:, 0].any()


def test_tiny_cell_with_large_cutoff_has_many_images():
    rng = np.random.default_rng(7)
    cell = np.array([[1.6, 0.0, 0.0], [0.7, 1.5, 0.0], [0.3, -0.4, 1.7]])
    s = Structure(numbers=[29, 30], positions=[[0.1, 0.2, 0.3], [0.9, 0.8, 0.6]],
                  cell=cell, pbc=True)
    e = check_contract(s, cutoff=6.0)
    assert np.abs(e.shift).max() >= 4  # images several cells away
    assert len(e) > 200
    # an atom is a neighbour of its own images
    assert np.any((e.i == e.j) & e.shift.any(axis=1))
    del rng


def test_single_atom_periodic_and_open():
    periodic = Structure(numbers=[18], positions=[[0.3, 0.1, 0.2]], cell=np.eye(3) * 3.0,
                         pbc=True)
    e = check_contract(periodic, cutoff=3.5)
    assert len(e) == 6 and np.all(e.i == 0) and np.all(e.j == 0)
    np.testing.assert_allclose(e.distances, 3.0)
    e = check_contract(periodic, cutoff=4.5)  # + 12 face diagonals at 4.243
    assert len(e) == 18
    open_atom = Structure(numbers=[18], positions=[[0.3, 0.1, 0.2]])
    e = check_contract(open_atom, cutoff=10.0)
    assert len(e) == 0 and e.vectors.shape == (0, 3) and e.shift.shape == (0, 3)


def test_open_molecule_matches_ase_and_all_pairs():
    rng = np.random.default_rng(3)
    pos = rng.normal(scale=1.5, size=(12, 3))
    s = Structure(numbers=[6] * 12, positions=pos)  # no cell, no pbc
    e = check_contract(s, cutoff=100.0)
    assert len(e) == 12 * 11  # every ordered pair once
    assert not e.shift.any()


def test_structure_with_no_pairs():
    s = Structure(numbers=[1, 1, 1], positions=[[0, 0, 0], [5, 0, 0], [0, 5, 0]],
                  cell=np.eye(3) * 10, pbc=True)
    e = check_contract(s, cutoff=2.0)
    assert len(e) == 0
    g = build_graph([s], 2.0)
    assert g.i.shape == (0,) and g.edge_vectors().shape == (0, 3)


def test_cutoff_is_strict():
    # distances exactly representable in binary: 2.0 and 3.0
    pair = Structure(numbers=[1, 1], positions=[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert len(neighbor_list(pair, 2.0)) == 0
    assert len(neighbor_list(pair, np.nextafter(2.0, 3.0))) == 2
    lattice = Structure(numbers=[1], positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * 3.0, pbc=True)
    assert len(neighbor_list(lattice, 3.0)) == 0
    assert len(neighbor_list(lattice, np.nextafter(3.0, 4.0))) == 6


def test_bad_cutoff_and_overlapping_atoms():
    s = Structure(numbers=[1, 1], positions=[[0, 0, 0], [1, 0, 0]], name="h2.xyz:4")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="cutoff must be >= 0"):
            neighbor_list(s, bad)
    assert len(neighbor_list(s, 0.0)) == 0  # purely bonded models ask for no pairs
    overlap = Structure(numbers=[1, 1, 8], positions=[[0, 0, 0], [1e-8, 0, 0], [1, 0, 0]],
                        name="w.xyz:2")
    with pytest.raises(StructureError, match=r"w\.xyz:2.*'positions'.*atoms 0 and 1"):
        neighbor_list(overlap, 3.0)
    # the same atom overlapping its own image is impossible in a valid cell, but an atom on
    # top of another atom's periodic image is caught too
    image = Structure(numbers=[1, 1], positions=[[0, 0, 0], [3.0, 0, 0]],
                      cell=np.eye(3) * 3.0, pbc=True, name="img")
    with pytest.raises(StructureError, match="overlapping"):
        neighbor_list(image, 2.0)


def test_build_graph_equals_separate_lists():
    rng = np.random.default_rng(11)
    structures = [random_triclinic(rng, 5), Structure(numbers=[8, 1, 1],
                  positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
                  random_triclinic(rng, 3, pbc=(True, False, True)),
                  Structure(numbers=[2], positions=[[0, 0, 0]])]
    cutoff = 3.7
    g = build_graph(structures, cutoff, dtype=torch.float64)
    assert isinstance(g, Graph) and g.n_structures == 4 and g.cutoff == cutoff
    offsets = np.cumsum([0] + [len(s) for s in structures])
    vec = g.edge_vectors().numpy()  # (edges, 3)
    for k, s in enumerate(structures):
        e = neighbor_list(s, cutoff)
        mask = g.edge_batch.numpy() == k
        np.testing.assert_array_equal(g.i.numpy()[mask], e.i + offsets[k])
        np.testing.assert_array_equal(g.j.numpy()[mask], e.j + offsets[k])
        np.testing.assert_array_equal(g.shift.numpy()[mask], e.shift)
        np.testing.assert_allclose(vec[mask], e.vectors, atol=1e-12)
        np.testing.assert_array_equal(g.batch.numpy()[offsets[k]:offsets[k + 1]], k)
        np.testing.assert_array_equal(g.cell[k].numpy(), s.cell)
        np.testing.assert_array_equal(g.pbc[k].numpy(), s.pbc)
    np.testing.assert_array_equal(g.n_atoms.numpy(), [len(s) for s in structures])
    assert g.positions.dtype == torch.float64
    g32 = g.to(dtype=torch.float32)
    assert g32.positions.dtype == torch.float32 and g32.i.dtype == torch.int64


def test_edge_vectors_are_differentiable_in_positions_and_cell():
    rng = np.random.default_rng(12)
    s = random_triclinic(rng, 4)
    g = build_graph(s, 3.0)
    pos = g.positions.clone().requires_grad_(True)
    cell = g.cell.clone().requires_grad_(True)

    def total_length(p, c):
        return g.edge_vectors(p, c).norm(dim=1).sum()

    assert torch.autograd.gradcheck(total_length, (pos, cell))


def test_empty_structure_and_empty_batch():
    empty = Structure(numbers=[], positions=np.zeros((0, 3)))
    e = neighbor_list(empty, 3.0)
    assert len(e) == 0 and e.vectors.shape == (0, 3)
    g = build_graph([empty, Structure(numbers=[1], positions=[[0, 0, 0]])], 3.0)
    assert g.n_atoms.tolist() == [0, 1] and g.batch.tolist() == [1] and g.i.shape == (0,)
    g = build_graph([], 3.0)
    assert g.cell.shape == (0, 3, 3) and g.positions.shape == (0, 3) and g.n_structures == 0
