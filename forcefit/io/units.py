"""Unit names understood by the readers and their factors to forcefit units.

forcefit units: length Angstrom, energy eV, force eV/Angstrom, stress eV/Angstrom^3 (ASE sign).
A value ``x`` given in unit ``u`` is ``x * FACTOR[u]`` in forcefit units. Constants are
CODATA 2018 (exact SI definitions of e, N_A; Bohr radius and Hartree energy as measured),
the same values :mod:`forcefit.structure` uses for bar, GPa, kJ/mol and kcal/mol.
"""

from __future__ import annotations

from ..structure import BAR, GPA, KCAL_PER_MOL, KJ_PER_MOL

#: Bohr radius in Angstrom (CODATA 2018).
BOHR = 0.529177210903
#: Hartree energy in eV (CODATA 2018).
HARTREE = 27.211386245988

LENGTH = {
    "angstrom": 1.0, "a": 1.0, "ang": 1.0, "\u00e5": 1.0,
    "nm": 10.0, "nanometer": 10.0,
    "pm": 0.01, "bohr": BOHR,
}
ENERGY = {
    "ev": 1.0, "electronvolt": 1.0, "mev": 1e-3,
    "kj/mol": KJ_PER_MOL, "kcal/mol": KCAL_PER_MOL,
    "hartree": HARTREE, "ha": HARTREE, "ry": HARTREE / 2, "rydberg": HARTREE / 2,
}
STRESS = {
    "ev/a^3": 1.0, "ev/angstrom^3": 1.0, "bar": BAR, "kbar": 1e3 * BAR, "gpa": GPA,
    "pa": 1e-9 * GPA, "atm": 1.01325 * BAR,
}


def _lookup(table: dict[str, float], kind: str, name: str) -> float:
    key = str(name).strip().lower()
    if key not in table:
        raise ValueError(f"unknown {kind} unit {name!r}; known: {sorted(table)}")
    return table[key]


def length_factor(name: str) -> float:
    """Angstrom per ``name`` (e.g. ``'nm'`` -> 10)."""
    return _lookup(LENGTH, "length", name)


def energy_factor(name: str) -> float:
    """eV per ``name`` (e.g. ``'kJ/mol'`` -> 0.010364...)."""
    return _lookup(ENERGY, "energy", name)


def stress_factor(name: str) -> float:
    """eV/Angstrom^3 per ``name`` (e.g. ``'bar'`` -> 6.2415e-7)."""
    return _lookup(STRESS, "stress", name)
