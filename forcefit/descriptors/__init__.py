"""Atom-centred descriptors with analytic derivatives.

Units: Angstrom in, dimensionless descriptor values out, derivatives in 1/Angstrom; forces
from :func:`contract` in (energy unit of dE/dD) / Angstrom, dE/d(strain) in the energy unit.

Public API:

- :class:`DescriptorSet`: G1, G2, G4, G5 and the sigmoid family per species (pair), with
  ``values`` (autograd path), ``compute`` (analytic per-edge derivatives), ``layout``,
  ``feature_names``, ``to_config``/``from_config``; ``backend="auto"|"torch"|"numba"``
  picks the kernels of ``compute`` on CPU (numba: compiled loops, the optional ``fast``
  extra; ``auto`` uses them when numba is installed, else torch; autograd and GPU always
  use torch);
- :func:`contract`: forces and dE/d(strain) of any E(D) from dE/dD and the derivatives;
- :func:`compute_dataset`: values and derivatives for many structures, in chunks, returned
  concatenated in a :class:`DescriptorData` (with the graph and per-structure offsets);
- parameter generators :func:`radial_grid`, :func:`angular_grid` and the RuNNer/n2p2 reader
  :func:`read_runner_symfunctions` / :func:`from_runner`;
- :func:`cutoff_function` (cosine and polynomial).
"""

from .acsf import DescriptorError, DescriptorSet
from .cutoff import cutoff_function
from .dataset import DescriptorData, compute_dataset, contract, estimate_bytes
from .params import (
    RunnerFunction,
    angular_grid,
    from_runner,
    radial_grid,
    read_runner_symfunctions,
)

__all__ = ["DescriptorData", "DescriptorError", "DescriptorSet", "RunnerFunction",
           "angular_grid", "compute_dataset", "contract", "cutoff_function", "estimate_bytes",
           "from_runner", "radial_grid", "read_runner_symfunctions"]
