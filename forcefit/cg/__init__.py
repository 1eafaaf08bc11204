"""Coarse-grained force matching: mappings, CG frames, fitting, export.

Units: the user's (e.g. nm and kJ/mol for the ethane example), recorded in
:attr:`CGData.units` and carried by every fitted potential (``units`` in ``to_config()`` and in
saved files); :func:`ase_calculator` converts to ASE's Angstrom and eV at the boundary.

Layers used: :mod:`forcefit.potentials` (energy models, including the bonded terms in
:mod:`forcefit.potentials.bonded`) and :mod:`forcefit.train` (the generic trainer).
"""

from ..potentials.bonded import HarmonicAngle, HarmonicBond, PeriodicDihedral, SplineBond
from .data import CGData, frames_graph
from .export import (
    UnitScaled,
    ase_calculator,
    load_potential,
    save_potential,
    tabulate_bond,
    tabulate_pair,
    write_lammps_table,
)
from .fit import (
    FitResult,
    ForceMatchingConfig,
    force_errors,
    force_matching,
    least_squares_harmonic_bond,
    least_squares_linear,
    predict_forces,
    split_frames,
)
from .mapping import Mapping
from .plot import plot_distance_histogram, plot_projected_force
from .potentials import NetworkPair

__all__ = [
    "CGData", "FitResult", "ForceMatchingConfig", "HarmonicAngle", "HarmonicBond", "Mapping",
    "NetworkPair", "PeriodicDihedral", "SplineBond", "UnitScaled", "ase_calculator",
    "force_errors", "force_matching", "frames_graph", "least_squares_harmonic_bond",
    "least_squares_linear", "load_potential", "plot_distance_histogram", "plot_projected_force",
    "predict_forces", "save_potential", "split_frames", "tabulate_bond", "tabulate_pair",
    "write_lammps_table",
]
