"""Weighted energy / force / stress losses for fitting potentials on cached descriptors.

Units: energies eV (or eV/atom), forces eV/Angstrom, stress eV/Angstrom^3; the loss is in the
squares of those units times the (dimensionless) weights.

For a batch of M structures with labels (FitSNAP's PyTorch loss, extended by stress and by
masks of missing labels):

    L = sum_m w^E_m (dE_m / N_m)^2 / M_E                       (per_atom_energy=True)
        [or sum_m w^E_m dE_m^2 / M_E]                            (per_atom_energy=False)
      + sum_m w^F_m sum_{i in m, c} dF_{ic}^2 / (3 N_F)
      + sum_m w^V_m sum_{ab} dsigma_{m,ab}^2 / (9 M_V)

dX = prediction - label; M_E, M_V count structures with energy / stress labels and N_F the atoms
of structures with force labels in the batch (so each term is a weighted mean squared error);
w^E, w^F, w^V are the per-structure weights of :mod:`forcefit.data.groups` (group eweight,
fweight, vweight or the global overrides, times ``Structure.weight``). A term with no labels in
the batch contributes 0.
"""

from __future__ import annotations

import dataclasses

import torch

from ..models.fused import supports_fused


@dataclasses.dataclass
class LossParts:
    """The three terms of the loss (0-d tensors) and their sum."""

    total: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor


def weighted_mse(pred: dict, batch, *, per_atom_energy: bool = True) -> LossParts:
    """Loss terms of ``pred`` (energy (S,), forces (atoms, 3), stress (S, 3, 3)) vs ``batch``."""
    w = batch.weights  # (S, 3)
    zero = pred["energy"].new_zeros(())
    de = pred["energy"] - batch.energy.to(pred["energy"].dtype)  # (S,)
    if per_atom_energy:
        de = de / batch.n_atoms.to(de.dtype)
    m_e = batch.has_energy.to(de.dtype)  # (S,)
    n_e = m_e.sum()
    l_e = (w[:, 0].to(de.dtype) * m_e * de.square()).sum() / n_e if n_e > 0 else zero
    l_f = zero
    if "forces" in pred and bool(batch.has_forces.any()):
        df = pred["forces"] - batch.forces.to(pred["forces"].dtype)  # (atoms, 3)
        wa = (w[:, 1] * batch.has_forces).to(df.dtype)[batch.graph.batch]  # (atoms,)
        n_f = batch.has_forces.to(df.dtype)[batch.graph.batch].sum()
        l_f = (wa[:, None] * df.square()).sum() / (3 * n_f)
    l_s = zero
    if "stress" in pred and bool(batch.has_stress.any()):
        ds = pred["stress"] - batch.stress.to(pred["stress"].dtype)  # (S, 3, 3)
        ws = (w[:, 2] * batch.has_stress).to(ds.dtype)  # (S,)
        l_s = (ws[:, None, None] * ds.square()).sum() / (9 * batch.has_stress.sum())
    return LossParts(l_e + l_f + l_s, l_e, l_f, l_s)


class PotentialLoss:
    """``loss_fn(model, batch) -> scalar`` for :class:`forcefit.train.Trainer`.

    ``model`` is a :class:`~forcefit.models.FittedPotential`; predictions come from its cached
    path (:meth:`~forcefit.models.FittedPotential.predict_cached`). Forces / stress are only
    computed when ``use_forces`` / ``use_stress`` (e.g. skipped when all their weights are 0).

    ``fused=True`` (default): for network models the loss and its gradients come from
    :meth:`~forcefit.models.FittedPotential.fused_loss`, one pass without a double backward
    (the same numbers, tested; ~1.4x faster per step on small batches); ``False`` always
    differentiates ``weighted_mse`` by autograd.
    """

    def __init__(self, *, per_atom_energy: bool = True, use_forces: bool = True,
                 use_stress: bool = True, fused: bool = True) -> None:
        self.per_atom_energy = per_atom_energy
        self.use_forces, self.use_stress = use_forces, use_stress
        self.fused = fused

    def __call__(self, model, batch) -> torch.Tensor:
        if self.fused and torch.is_grad_enabled() and supports_fused(model):
            return model.fused_loss(batch, per_atom_energy=self.per_atom_energy,
                                    forces=self.use_forces, stress=self.use_stress)
        pred = model.predict_cached(batch, forces=self.use_forces, stress=self.use_stress,
                                    create_graph=True)
        return weighted_mse(pred, batch, per_atom_energy=self.per_atom_energy).total
