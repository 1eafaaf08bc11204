"""Normalisation statistics computed from the training set (stored later inside the model).

Units: feature mean/std in the descriptors' units; reference energies in eV per atom of each
species; the energy scale in eV.

- Descriptor standardisation: D' = (D - mean) / s per feature column over the training
  atoms, with the floored spread s = max(std, floor |mean|) (``std_floor``, default 1e-2), and
  s = 1 when that is still below ``1e-12`` (an all-zero column). Without the floor a feature that
  is nearly constant on the training set (a long-range G2 in bulk crystals, std ~1e-6 |mean|)
  would turn a 1 % change on new data into a 10^4-sigma input and the network's output into
  noise; with it such a change stays O(1). The guard is ours (FitSNAP and DScribe divide by the
  plain std).
- Per-species reference energies e_s: least squares of the (prior-subtracted) structure energy
  on composition, min_e sum_m (E_m - E_prior,m - sum_s n_ms e_s)^2 (``numpy.linalg.lstsq``,
  minimum-norm for rank-deficient compositions, e.g. a single species: e = mean(E/N)).
  Groups with huge energies then no longer dominate the residual the network fits.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import FeatureDataset, _ranges


def training_atoms(dataset: FeatureDataset, train: np.ndarray) -> torch.Tensor:
    """Row indices (atoms,) of the atoms of the training structures."""
    idx = torch.as_tensor(np.asarray(train, dtype=np.int64))
    return _ranges(dataset.atom_offsets[idx], dataset.n_atoms[idx])


def feature_statistics(dataset: FeatureDataset, train: np.ndarray, std_floor: float = 1e-2
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (F,), floored std (F,)) of the descriptor values over the training atoms, float64
    (the floor is in the module docstring; ``std_floor=0`` gives the plain std)."""
    if not (np.isfinite(std_floor) and std_floor >= 0):
        raise ValueError(f"feature_statistics: std_floor must be finite and >= 0, got "
                         f"{std_floor}")
    rows = training_atoms(dataset, train)
    if rows.numel() == 0:
        raise ValueError("no training atoms: the training set is empty")
    v = dataset.values[rows].to(torch.float64)  # (atoms, F)
    mean = v.mean(0)
    std = torch.maximum(v.std(0, unbiased=False), std_floor * mean.abs())  # (F,)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean, std


def composition(dataset: FeatureDataset, species: list[int]) -> torch.Tensor:
    """(S, species) float64 count of each species in each structure."""
    lookup = torch.full((int(max(species)) + 1,), -1, dtype=torch.int64)
    lookup[torch.as_tensor(species)] = torch.arange(len(species))
    present = dataset.numbers.clamp(max=len(lookup) - 1)
    sp = lookup[present]  # (atoms,)
    if (sp < 0).any() or (dataset.numbers >= len(lookup)).any():
        raise ValueError(f"dataset has species not in {species}")
    s_of_atom = torch.repeat_interleave(torch.arange(len(dataset)), dataset.n_atoms)  # (atoms,)
    counts = torch.zeros(len(dataset), len(species), dtype=torch.float64)
    counts.index_put_((s_of_atom, sp), torch.ones(len(sp), dtype=torch.float64), accumulate=True)
    return counts


def reference_energies(dataset: FeatureDataset, train: np.ndarray,
                       species: list[int]) -> torch.Tensor:
    """Per-species energies e_s (species,) eV by least squares on composition (training set)."""
    idx = np.asarray(train, dtype=np.int64)
    idx = idx[dataset.has_energy[idx].numpy()]
    if len(idx) == 0:
        return torch.zeros(len(species), dtype=torch.float64)
    counts = composition(dataset, species)[idx].numpy()  # (S_train, species)
    target = (dataset.energy[idx] - dataset.prior_energy[idx]).numpy()  # (S_train,)
    e, *_ = np.linalg.lstsq(counts, target, rcond=None)
    return torch.as_tensor(e, dtype=torch.float64)


def energy_scale(dataset: FeatureDataset, train: np.ndarray, ref: torch.Tensor,
                 species: list[int]) -> float:
    """Output scale (eV) of the network: the larger of the RMS of the training force
    components of the residual (label - prior; eV/A times 1 A) and the standard deviation of the
    residual energy per atom (after the reference energies), so that the network's raw output
    is O(1) for both the force-dominated and the energy-dominated (e.g. compressed volume
    scans) parts of the data; 1 when neither label exists or both are zero."""
    idx = torch.as_tensor(np.asarray(train, dtype=np.int64))
    scales = []
    has_f = idx[dataset.has_forces[idx]]
    if len(has_f):
        rows = _ranges(dataset.atom_offsets[has_f], dataset.n_atoms[has_f])
        f = dataset.forces[rows] - dataset.prior_forces[rows]  # (atoms, 3)
        scales.append(float(f.pow(2).mean().sqrt()))
    has_e = idx[dataset.has_energy[idx]]
    if len(has_e) > 1:
        counts = composition(dataset, species)[has_e]  # (S, species)
        resid = dataset.energy[has_e] - dataset.prior_energy[has_e] - counts @ ref  # (S,)
        scales.append(float((resid / dataset.n_atoms[has_e]).std()))
    scale = max(scales, default=0.0)
    return scale if scale > 1e-8 else 1.0
