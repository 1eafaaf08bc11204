"""Datasets of labelled structures with cached descriptors, groups, splits, normalisation.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE stress sign); see
:mod:`forcefit.data.dataset` for every field's shape and unit.
"""

from .dataset import Batch, FeatureDataset, structures_hash
from .groups import (
                     GlobalOverrides,
                     GroupSpec,
                     Split,
                     resolve_groups,
                     split_by_group,
                     structure_weights,
)
from .normalize import composition, energy_scale, feature_statistics, reference_energies

__all__ = [
    "Batch", "FeatureDataset", "GlobalOverrides", "GroupSpec", "Split", "composition",
    "energy_scale", "feature_statistics", "reference_energies", "resolve_groups",
    "split_by_group", "structure_weights", "structures_hash",
]
