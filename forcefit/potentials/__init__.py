"""Classical energy models and the energy-model protocol.

Units: Angstrom, eV (see each module). Every model is a ``torch.nn.Module`` with a
``cutoff`` (Angstrom) and ``forward(graph, vectors) -> per-atom energies (atoms,)``;
:func:`~forcefit.potentials.base.evaluate` gives forces and stress by autograd.
Models are rebuilt from ``to_config()`` by :func:`from_config`; new model types join the
registry with the :func:`register` decorator. Bonded terms over an explicit topology
(:mod:`forcefit.potentials.bonded`) are exported here too, so they are registered.
"""

from .base import evaluate, evaluate_structures
from .bonded import HarmonicAngle, HarmonicBond, PeriodicDihedral, SplineBond
from .kernels import (
    cubic_spline,
    lj_energy,
    morse_energy,
    smoothstep_switch,
    soft_repulsion_energy,
    sw_three_body,
    sw_two_body,
    xplor_switch,
    zbl_energy,
)
from .pair import ZBL, LennardJones, Morse, PairFunction, PairPotential, SoftRepulsion, SplinePair
from .registry import from_config, register, registered
from .sum import Sum
from .sw import StillingerWeber

__all__ = [
    "ZBL",
    "HarmonicAngle",
    "HarmonicBond",
    "LennardJones",
    "Morse",
    "PairFunction",
    "PairPotential",
    "PeriodicDihedral",
    "SoftRepulsion",
    "SplineBond",
    "SplinePair",
    "StillingerWeber",
    "Sum",
    "cubic_spline",
    "evaluate",
    "evaluate_structures",
    "from_config",
    "lj_energy",
    "morse_energy",
    "register",
    "registered",
    "smoothstep_switch",
    "soft_repulsion_energy",
    "sw_three_body",
    "sw_two_body",
    "xplor_switch",
    "zbl_energy",
]
