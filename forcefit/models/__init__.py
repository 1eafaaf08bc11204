"""Models: per-species networks, linear/quadratic models, and the full fitted potential.

Units: per-atom energies in eV; inputs are standardised descriptors (see
:mod:`forcefit.models.potential` for the full energy expression).
"""

from .linear import LinearAtomic, LinearLeastSquares, NormalEquations, solve_linear
from .networks import ACTIVATIONS, AtomicNetwork, parse_layers
from .potential import FittedPotential, atomic_model_from_config, contract, contract_reference

__all__ = [
    "ACTIVATIONS", "AtomicNetwork", "FittedPotential", "LinearAtomic", "LinearLeastSquares",
    "NormalEquations",
    "atomic_model_from_config", "contract", "contract_reference", "parse_layers", "solve_linear",
]
