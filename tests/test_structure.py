"""The Structure type: validation, Voigt <-> matrix, ASE round trip, unit constants.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE sign).
"""

from __future__ import annotations

import ase.units
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from forcefit.structure import (
    BAR,
    GPA,
    KCAL_PER_MOL,
    KJ_PER_MOL,
    Structure,
    StructureError,
    matrix_to_voigt,
    voigt_to_matrix,
)


def water(**kw) -> Structure:
    base = {"numbers": [8, 1, 1], "positions": [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]}
    base.update(kw)
    return Structure(**base)


@pytest.mark.parametrize(
    "kw, field, why",
    [
        ({"positions": [[0, 0, 0], [1, 0, 0]]}, "positions", r"shape \(3, 3\)"),
        ({"positions": [[0, 0, 0], [1, 0, np.nan], [0, 1, 0]]}, "positions", "NaN"),
        ({"positions": [[0, 0, 0], [1, 0, "x"], [0, 1, 0]]}, "positions", "not numeric"),
        ({"numbers": [8, 0, 1]}, "numbers", "unknown element Z=0"),
        ({"numbers": [8, 1, 200]}, "numbers", "unknown element Z=200"),
        ({"energy": np.inf}, "energy", "not finite"),
        ({"forces": np.zeros((2, 3))}, "forces", r"shape \(3, 3\), got \(2, 3\)"),
        ({"forces": [[0, 0, 0], [0, np.nan, 0], [0, 0, 0]]}, "forces", "NaN"),
        ({"stress": np.zeros(5)}, "stress", r"shape \(3, 3\), got \(5,\)"),
        ({"stress": np.full((3, 3), np.nan)}, "stress", "NaN"),
        ({"energies": np.zeros(4)}, "energies", r"shape \(3,\)"),
        ({"pbc": [True, False]}, "pbc", "3 booleans"),
        ({"pbc": True}, "cell", "singular"),
        ({"pbc": True, "cell": [[3, 0, 0], [0, 3, 0], [3, 3, 0]]}, "cell", "singular"),
        ({"weight": -1.0}, "weight", ">= 0"),
        ({"weight": np.nan}, "weight", "finite"),
        ({"cell": np.eye(2)}, "cell", r"shape \(3, 3\)"),
        ({"pbc": [True, False, False]}, "cell", "singular"),
        ({"pbc": [True, True, False], "cell": [[3, 0, 0], [6, 0, 0], [0, 0, 0]]}, "cell",
         "linearly dependent"),
        ({"numbers": [8.0, 1.5, 1.0]}, "numbers", "integer atomic numbers"),
        ({"numbers": ["O", "H", "H"]}, "numbers", "integers"),
    ],
)
def test_validation_errors_name_structure_and_field(kw, field, why):
    with pytest.raises(StructureError, match=rf"water\.xyz:7: field '{field}': .*{why}"):
        water(name="water.xyz:7", **kw)


def test_structure_error_is_a_value_error_and_works_without_name():
    with pytest.raises(ValueError, match=r"^structure: field 'numbers'") as info:
        water(numbers=[8, 1, -3])
    assert info.value.field == "numbers" and info.value.why == "unknown element Z=-3"


def test_open_directions_may_have_zero_cell_vectors():
    wire = water(cell=[[3.0, 0, 0], [0, 0, 0], [0, 0, 0]], pbc=[True, False, False])
    slab = water(cell=[[3.0, 0, 0], [1.0, 2.5, 0], [0, 0, 0]], pbc=[True, True, False])
    assert wire.volume == 0.0 and slab.volume == 0.0
    np.testing.assert_array_equal(water(numbers=np.array([8.0, 1.0, 1.0])).numbers, [8, 1, 1])


def test_normalisation_of_fields():
    s = water(pbc=1, cell=np.eye(3) * 5, energy=np.float32(-1.5), weight=2)
    assert s.pbc.dtype == bool and s.pbc.tolist() == [True] * 3
    assert isinstance(s.energy, float) and s.energy == -1.5
    assert isinstance(s.weight, float)
    assert s.numbers.dtype == np.int64 and s.positions.dtype == np.float64
    assert len(s) == 3 and s.symbols == ["O", "H", "H"]
    assert s.volume == pytest.approx(125.0)
    assert s.has_labels == {"energy": True, "forces": False, "stress": False}
    assert water().volume == 0.0


def test_voigt_matrix_conversions_agree_with_ase():
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.normal(size=6)
        m = voigt_to_matrix(v)
        np.testing.assert_array_equal(m, m.T)
        np.testing.assert_array_equal(m, voigt_6_to_full_3x3_stress(v))
        np.testing.assert_array_equal(matrix_to_voigt(m), v)
        np.testing.assert_array_equal(matrix_to_voigt(m), full_3x3_to_voigt_6_stress(m))
    # the ASE Voigt order is xx, yy, zz, yz, xz, xy
    m = voigt_to_matrix([1, 2, 3, 4, 5, 6])
    assert (m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]) == (1, 2, 3, 4, 5, 6)


def test_stress_accepted_as_voigt_and_stored_as_matrix():
    v = np.array([1.0, 2.0, 3.0, 0.4, 0.5, 0.6]) * 1e-3
    s = water(cell=np.eye(3) * 4, pbc=True, stress=v)
    assert s.stress.shape == (3, 3)
    np.testing.assert_array_equal(s.stress, voigt_6_to_full_3x3_stress(v))


def _labelled(rng) -> Structure:
    cell = np.eye(3) * 5 + rng.normal(scale=0.2, size=(3, 3))
    m = rng.normal(size=(3, 3)) * 1e-3
    return Structure(numbers=[29, 29, 30, 13], positions=rng.uniform(0, 5, (4, 3)), cell=cell,
                     pbc=[True, True, False], energy=-12.5, forces=rng.normal(size=(4, 3)),
                     stress=m + m.T, energies=rng.normal(size=4), group="md", weight=0.5,
                     name="cu.xyz:3", info={"temperature": 300.0})


def test_ase_round_trip_keeps_geometry_and_labels():
    rng = np.random.default_rng(1)
    s = _labelled(rng)
    atoms = s.to_ase()
    np.testing.assert_array_equal(atoms.numbers, s.numbers)
    np.testing.assert_array_equal(atoms.positions, s.positions)
    np.testing.assert_array_equal(np.asarray(atoms.cell), s.cell)
    np.testing.assert_array_equal(atoms.pbc, s.pbc)
    assert atoms.get_potential_energy() == s.energy
    np.testing.assert_array_equal(atoms.get_forces(), s.forces)
    np.testing.assert_array_equal(atoms.get_stress(voigt=False), s.stress)
    np.testing.assert_array_equal(atoms.get_potential_energies(), s.energies)
    assert atoms.info["group"] == "md" and atoms.info["weight"] == 0.5
    assert atoms.info["name"] == "cu.xyz:3" and atoms.info["temperature"] == 300.0
    back = Structure.from_ase(atoms, energy=atoms.get_potential_energy(),
                              forces=atoms.get_forces(), stress=atoms.get_stress(),
                              energies=atoms.get_potential_energies(), group="md",
                              weight=0.5, name="cu.xyz:3")
    for field in ("numbers", "positions", "cell", "pbc", "forces", "stress", "energies"):
        np.testing.assert_array_equal(getattr(back, field), getattr(s, field), err_msg=field)
    assert (back.energy, back.group, back.weight, back.name) == (s.energy, "md", 0.5, s.name)
    bare = s.to_ase(labels=False)
    assert bare.calc is None


def test_from_ase_takes_labels_only_when_passed():
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
    atoms.calc = SinglePointCalculator(atoms, energy=-0.01, forces=np.ones((2, 3)))
    s = Structure.from_ase(atoms)
    assert s.energy is None and s.forces is None and s.stress is None


def test_copy_is_deep():
    rng = np.random.default_rng(2)
    s = _labelled(rng)
    c = s.copy()
    c.positions[0, 0] += 1.0
    c.forces[0, 0] += 1.0
    c.stress[0, 0] += 1.0
    c.energies[0] += 1.0
    c.info["new"] = 1
    assert c.positions[0, 0] != s.positions[0, 0] and c.forces[0, 0] != s.forces[0, 0]
    assert c.stress[0, 0] != s.stress[0, 0] and c.energies[0] != s.energies[0]
    assert "new" not in s.info


def test_unit_constants_agree_with_ase():
    # ase.units is CODATA 2014, forcefit CODATA 2018 (exact e, N_A): ~1e-8 apart
    assert BAR == pytest.approx(ase.units.bar, rel=1e-7)
    assert GPA == pytest.approx(ase.units.GPa, rel=1e-7)
    assert KJ_PER_MOL == pytest.approx(ase.units.kJ / ase.units.mol, rel=1e-7)
    assert KCAL_PER_MOL == pytest.approx(ase.units.kcal / ase.units.mol, rel=1e-7)
