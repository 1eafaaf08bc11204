"""The one data type that flows through forcefit, and its units.

Units inside forcefit (converted only at the I/O boundary):

=========  ==============  =========================================
quantity   unit            convention
=========  ==============  =========================================
length     Angstrom
energy     eV              total energy of the structure
forces     eV/Angstrom     F = -dE/dr
stress     eV/Angstrom^3   ASE sign: positive is tensile, sigma = (1/V) dE/d(strain)
=========  ==============  =========================================

Index names used across the package (suffix convention, as ASE writes it):
``atoms`` (N), ``edges`` (E, directed neighbour pairs), ``structures`` (S), ``features`` (F).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from ase.data import chemical_symbols

#: 1 bar in eV/Angstrom^3.
BAR = 1e5 / 1.602176634e-19 / 1e30
#: 1 GPa in eV/Angstrom^3.
GPA = 1e9 / 1.602176634e-19 / 1e30
#: 1 kcal/mol in eV.
KCAL_PER_MOL = 4184.0 / 6.02214076e23 / 1.602176634e-19
#: 1 kJ/mol in eV.
KJ_PER_MOL = 1000.0 / 6.02214076e23 / 1.602176634e-19

MAX_Z = len(chemical_symbols) - 1


class StructureError(ValueError):
    """A structure or one of its labels is malformed; the message names the field.

    ``field`` and ``why`` hold the field name and the reason separately when known (readers
    use them to add the file and frame to the message).
    """

    def __init__(self, message: str, *, field: str | None = None, why: str | None = None):
        super().__init__(message)
        self.field = field
        self.why = message if why is None else why


def voigt_to_matrix(voigt) -> np.ndarray:
    """ASE Voigt order (xx, yy, zz, yz, xz, xy) -> symmetric (3, 3) matrix."""
    v = np.asarray(voigt, dtype=np.float64)
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def matrix_to_voigt(m) -> np.ndarray:
    """(3, 3) matrix -> ASE Voigt order (xx, yy, zz, yz, xz, xy)."""
    m = np.asarray(m, dtype=np.float64)
    return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])


@dataclasses.dataclass
class Structure:
    """An atomic structure with optional reference labels.

    Fields (shape | dtype | unit):

    - ``numbers``: (atoms,) | int64 | atomic numbers Z, 1 <= Z <= 118
    - ``positions``: (atoms, 3) | float64 | Angstrom, Cartesian
    - ``cell``: (3, 3) | float64 | Angstrom, rows are the lattice vectors a, b, c
      (the periodic ones must be independent; along an open direction a row may be zero)
    - ``pbc``: (3,) | bool | periodicity along a, b, c
    - ``energy``: float or None | eV, total energy
    - ``forces``: (atoms, 3) or None | float64 | eV/Angstrom
    - ``stress``: (3, 3) or None | float64 | eV/Angstrom^3, ASE sign (positive is tensile);
      a Voigt 6-vector (xx, yy, zz, yz, xz, xy) is accepted and stored as (3, 3)
    - ``energies``: (atoms,) or None | float64 | eV, per-atom energies
    - ``group``: str | name of the training group (FitSNAP's groups)
    - ``weight``: float | per-structure weight multiplying every loss term of it
    - ``name``: str | where it came from (file name, frame), used in output tables
    - ``info``: dict | free-form metadata, never interpreted

    Construction validates shapes, finiteness, elements and the cell; errors are
    :class:`StructureError` naming ``name`` and the field.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    energies: np.ndarray | None = None
    group: str = "default"
    weight: float = 1.0
    name: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = self._numbers(self.numbers)
        n = len(self.numbers)
        self.positions = self._array("positions", self.positions, (n, 3))
        self.cell = self._array("cell", self.cell, (3, 3))
        pbc = np.asarray(self.pbc, dtype=bool)
        self.pbc = np.repeat(pbc, 3) if pbc.ndim == 0 else pbc.reshape(-1)
        if self.pbc.shape != (3,):
            self._fail("pbc", f"expected 3 booleans, got shape {pbc.shape}")
        bad = (self.numbers < 1) | (self.numbers > MAX_Z)
        if bad.any():
            self._fail("numbers", f"unknown element Z={int(self.numbers[bad][0])}")
        if self.pbc.any():
            # the periodic lattice vectors must span their directions (Gram determinant > 0);
            # vectors along open directions may be zero (a wire or slab without vacuum box)
            per = self.cell[self.pbc]  # (periodic, 3)
            gram = np.linalg.det(per @ per.T)
            scale = np.prod(np.sum(per**2, axis=1))
            if not (scale > 0 and gram > 1e-12 * scale):
                self._fail("cell", "periodic structure with a singular (zero-volume) cell: "
                                   "the periodic lattice vectors are zero or linearly dependent")
        if self.energy is not None:
            e = float(np.asarray(self.energy).reshape(()))
            if not np.isfinite(e):
                self._fail("energy", f"not finite ({e})")
            self.energy = e
        if self.forces is not None:
            self.forces = self._array("forces", self.forces, (n, 3))
        if self.stress is not None:
            s = np.asarray(self.stress, dtype=np.float64)
            if s.shape == (6,):
                s = voigt_to_matrix(s)
            self.stress = self._array("stress", s, (3, 3))
        if self.energies is not None:
            self.energies = self._array("energies", self.energies, (n,))
        w = float(self.weight)
        if not (np.isfinite(w) and w >= 0):
            self._fail("weight", f"must be finite and >= 0, got {self.weight}")
        self.weight = w

    # -- validation helpers -------------------------------------------------
    def _numbers(self, value) -> np.ndarray:
        try:
            a = np.asarray(value).reshape(-1)
            z = a.astype(np.int64)
        except (TypeError, ValueError) as err:
            self._fail("numbers", f"expected atomic numbers (integers), got {err}")
        if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.array_equal(a, z)):
            self._fail("numbers", f"expected integer atomic numbers, got dtype {a.dtype}")
        return z

    def _fail(self, field: str, why: str):
        where = f" in {self.name}" if self.name else ""
        raise StructureError(f"structure{where}: field '{field}': {why}", field=field, why=why)

    def _array(self, field: str, value, shape: tuple[int, ...]) -> np.ndarray:
        try:
            a = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            self._fail(field, f"not numeric ({err})")
        if a.shape != shape:
            self._fail(field, f"expected shape {shape}, got {a.shape}")
        if not np.isfinite(a).all():
            self._fail(field, "contains NaN or infinite values")
        return a

    # -- derived properties -------------------------------------------------
    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def volume(self) -> float:
        """Cell volume in Angstrom^3 (0 for a cell that is not fully defined)."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.numbers]

    @property
    def has_labels(self) -> dict[str, bool]:
        return {
            "energy": self.energy is not None,
            "forces": self.forces is not None,
            "stress": self.stress is not None,
        }

    def copy(self) -> Structure:
        return dataclasses.replace(
            self,
            numbers=self.numbers.copy(),
            positions=self.positions.copy(),
            cell=self.cell.copy(),
            pbc=self.pbc.copy(),
            forces=None if self.forces is None else self.forces.copy(),
            stress=None if self.stress is None else self.stress.copy(),
            energies=None if self.energies is None else self.energies.copy(),
            info=dict(self.info),
        )

    # -- ASE ---------------------------------------------------------------
    def to_ase(self, labels: bool = True):
        """Return an ``ase.Atoms``; labels go into a SinglePointCalculator."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        atoms.info.update(self.info)
        if self.group != "default":
            atoms.info["group"] = self.group
        if self.weight != 1.0:
            atoms.info["weight"] = self.weight
        if self.name:
            atoms.info["name"] = self.name
        if labels:
            results = {}
            if self.energy is not None:
                results["energy"] = self.energy
                results["free_energy"] = self.energy
            if self.forces is not None:
                results["forces"] = self.forces.copy()
            if self.stress is not None:
                results["stress"] = matrix_to_voigt(self.stress)
            if self.energies is not None:
                results["energies"] = self.energies.copy()
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    @classmethod
    def from_ase(
        cls,
        atoms,
        *,
        energy: float | None = None,
        forces=None,
        stress=None,
        energies=None,
        group: str = "default",
        weight: float = 1.0,
        name: str = "",
    ) -> Structure:
        """Geometry from ``atoms``; labels only as passed explicitly (see :mod:`forcefit.io`)."""
        return cls(
            numbers=atoms.get_atomic_numbers(),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.get_cell()),
            pbc=atoms.get_pbc(),
            energy=energy,
            forces=forces,
            stress=stress,
            energies=energies,
            group=group,
            weight=weight,
            name=name,
            info=dict(atoms.info),
        )
