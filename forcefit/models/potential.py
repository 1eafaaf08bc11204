"""The fitted potential: descriptors + normalisation + atomic model + reference energies + prior.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE stress sign).

Per-atom energy of atom i with species s (index into ``species``):

    e_i = e_ref[s] + scale * f_s((D_i - mean) / std) + e_prior,i

where D_i are the descriptors, (mean, std) the training-set standardisation, e_ref the
least-squares per-species reference energies, ``scale`` (eV) the network output scale, f_s the
atomic model (:class:`~forcefit.models.networks.AtomicNetwork` or
:class:`~forcefit.models.linear.LinearAtomic`) and e_prior a reference potential (e.g. ZBL)
that the model is fitted on top of (the model learns the residual label - prior).

Two paths give the same numbers (tested):

- on the fly, the energy-model protocol ``forward(graph, vectors) -> (atoms,)`` with
  descriptors from ``descriptors.values(graph, vectors)``; forces and stress by autograd
  (:func:`forcefit.potentials.base.evaluate`);
- cached (training), :meth:`FittedPotential.predict_cached`: from the dataset's D and per-edge
  dD, with dE/dD by autograd through the network only and one sparse contraction
  g_e = sum_F dE/dD[i_e, F] dD[e, F, :], F_i += g_e, F_j -= g_e,
  dE/deps = sum_e r_e (x) g_e, stress = sym(dE/deps) / V.
"""

from __future__ import annotations

import dataclasses

import torch
from ase.data import chemical_symbols
from torch import nn

from ..neighbors import Graph
from ..potentials.base import stress_from_strain_derivative
from .linear import LinearAtomic
from .networks import AtomicNetwork


def contract(de_dd: torch.Tensor, dd: torch.Tensor, graph: Graph, vectors: torch.Tensor,
             *, stress: bool = True):
    """Forces (atoms, 3) and dE/deps (structures, 3, 3) (None when ``stress=False``).

    g_e = sum_F dE/dD[i_e, F] dD[e, F, :]; F_i += g_e, F_j -= g_e; dE/deps = sum_e r_e (x) g_e:
    the formula of :func:`forcefit.descriptors.contract` (a test holds the two equal), with
    the option to skip the virial when no stress is needed (training without stress).
    """
    # index_select, not de_dd[graph.i]: same values, and its backward is an index_add
    # (cheaper than the accumulating index_put of advanced indexing)
    g = torch.bmm(de_dd.index_select(0, graph.i).unsqueeze(1),
                  dd.to(de_dd.dtype)).squeeze(1)  # (edges, 3)
    forces = torch.zeros(de_dd.shape[0], 3, dtype=g.dtype, device=g.device)
    forces = forces.index_add(0, graph.i, g).index_add(0, graph.j, -g)  # (atoms, 3)
    if not stress:
        return forces, None
    outer = vectors.to(g.dtype)[:, :, None] * g[:, None, :]  # (edges, 3, 3)
    de_deps = torch.zeros(graph.n_structures, 3, 3, dtype=g.dtype, device=g.device)
    return forces, de_deps.index_add(0, graph.edge_batch, outer)


#: the same contraction (kept under the name the tests and older callers use)
contract_reference = contract


def atomic_model_from_config(config: dict) -> nn.Module:
    kind = config.get("type")
    args = {k: v for k, v in config.items() if k != "type"}
    if kind == "AtomicNetwork":
        return AtomicNetwork(**args)
    if kind == "LinearAtomic":
        return LinearAtomic(**args)
    raise ValueError(f"unknown atomic model type {kind!r}")


class FittedPotential(nn.Module):
    """A fitted energy model (see the module docstring); ``cutoff`` = max(descriptor, prior)."""

    def __init__(self, descriptors, species: list[int], atomic: nn.Module,
                 prior: nn.Module | None = None) -> None:
        super().__init__()
        # the descriptor set is configuration, not trained state: keep it out of state_dict
        object.__setattr__(self, "descriptors", descriptors)
        self.species = [int(z) for z in species]
        self.atomic = atomic
        self.prior = prior
        n_f = int(descriptors.n_features)
        self.register_buffer("feature_mean", torch.zeros(n_f, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(n_f, dtype=torch.float64))
        self.register_buffer("ref_energy", torch.zeros(len(species), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        lookup = torch.full((max(self.species) + 1,), -1, dtype=torch.int64)
        lookup[torch.as_tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("lookup", lookup, persistent=False)
        self.descriptor_cutoff = float(descriptors.cutoff)
        self.cutoff = max(self.descriptor_cutoff, float(prior.cutoff) if prior is not None else 0.0)
        self.to(torch.float64)  # one dtype for the whole model; training may cast to float32

    # -- configuration --------------------------------------------------------
    def to_config(self) -> dict:
        return {
            "type": "FittedPotential",
            "species": self.species,
            "descriptors": self.descriptors.to_config(),
            "atomic": self.atomic.config(),
            "prior": None if self.prior is None else self.prior.to_config(),
        }

    def calculator(self, dtype=torch.float64):
        """An ASE calculator (:class:`forcefit.calculator.ForcefitCalculator`) of this model."""
        from ..calculator import ForcefitCalculator

        return ForcefitCalculator(self, dtype=dtype)

    # -- species --------------------------------------------------------------
    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """(atoms,) index into ``species``; unknown species -> ValueError naming them."""
        lookup = self.lookup.to(numbers.device)
        known = numbers < lookup.shape[0]
        idx = torch.where(known, lookup[numbers.clamp(max=lookup.shape[0] - 1)],
                          torch.full_like(numbers, -1))  # (atoms,)
        if bool((idx < 0).any()):
            bad = sorted({int(z) for z in numbers[idx < 0].tolist()})
            names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in bad)
            have = ", ".join(chemical_symbols[z] for z in self.species)
            raise ValueError(f"species {names} not known to this potential (fitted for {have})")
        return idx

    # -- energies -------------------------------------------------------------
    def atom_energies(self, values: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (atoms,) without the prior, from raw descriptors (atoms, F)."""
        x = (values - self.feature_mean.to(values.dtype)) / self.feature_std.to(values.dtype)
        e = self.atomic(x, species)  # (atoms,)
        return self.ref_energy.to(e.dtype)[species] + self.energy_scale.to(e.dtype) * e

    def atom_energies_and_grad(self, values: torch.Tensor, species: torch.Tensor):
        """Per-atom energies (atoms,) without the prior and dE/dD (atoms, F), by the atomic
        model's explicit chain rule (dE/dD = scale * de/dx / std)."""
        std = self.feature_std.to(values.dtype)
        x = (values - self.feature_mean.to(values.dtype)) / std  # (atoms, F)
        e, g = self.atomic.energy_and_grad(x, species)  # (atoms,), (atoms, F)
        scale = self.energy_scale.to(e.dtype)
        return self.ref_energy.to(e.dtype)[species] + scale * e, scale * g / std

    def _within(self, graph: Graph, vectors: torch.Tensor, cutoff: float):
        keep = vectors.norm(dim=1) < cutoff  # (edges,)
        if bool(keep.all()):
            return dataclasses.replace(graph, cutoff=cutoff), vectors
        sub = dataclasses.replace(graph, i=graph.i[keep], j=graph.j[keep], shift=graph.shift[keep],
                                  edge_batch=graph.edge_batch[keep], cutoff=cutoff)
        return sub, vectors[keep]

    def forward(self, graph: Graph, vectors: torch.Tensor) -> torch.Tensor:
        sp = self.species_index(graph.numbers)  # (atoms,)
        g, v = self._within(graph, vectors, self.descriptor_cutoff)
        values = self.descriptors.values(g, v)  # (atoms, F)
        e = self.atom_energies(values, sp)  # (atoms,)
        if self.prior is not None:
            gp, vp = self._within(graph, vectors, float(self.prior.cutoff))
            e = e + self.prior(gp, vp).to(e.dtype)
        return e

    def fused_loss(self, batch, *, per_atom_energy: bool = True, forces: bool = True,
                   stress: bool = True) -> torch.Tensor:
        """The training loss on a cached batch with its parameter gradients computed in one
        pass (no double backward); needs a network atomic model. See
        :mod:`forcefit.models.fused`."""
        from .fused import fused_loss

        return fused_loss(self, batch, per_atom_energy=per_atom_energy, forces=forces,
                          stress=stress)

    def predict_cached(self, batch, *, forces: bool = True, stress: bool = True,
                       create_graph: bool = True) -> dict[str, torch.Tensor]:
        """Energy (S,), forces (atoms, 3), stress (S, 3, 3) of a collated
        :class:`~forcefit.data.Batch` from its cached descriptors, prior included."""
        dtype = self.feature_mean.dtype
        want_grad = forces or stress
        values = batch.values.to(dtype)
        sp = self.species_index(batch.graph.numbers)  # (atoms,)
        if want_grad and batch.derivatives is None:
            raise ValueError("forces/stress requested but the dataset has no cached "
                             "descriptor derivatives (build it with derivatives=True)")
        explicit = want_grad and hasattr(self.atomic, "energy_and_grad")
        if explicit:  # dE/dD written out: a first-order graph for training
            e, de_dd = self.atom_energies_and_grad(values, sp)  # (atoms,), (atoms, F)
            if not create_graph:
                e, de_dd = e.detach(), de_dd.detach()
        elif want_grad:
            values = values.detach().requires_grad_(True)
        with torch.enable_grad():
            if not explicit:
                e = self.atom_energies(values, sp)  # (atoms,)
            energy = torch.zeros(len(batch), dtype=e.dtype).index_add(0, batch.graph.batch, e)
            out = {"energy": energy + batch.prior_energy.to(e.dtype), "energies": e}
            if not want_grad:
                return out
            if not explicit:
                (de_dd,) = torch.autograd.grad(e.sum(), values, create_graph=create_graph)
        f, de_deps = contract(de_dd, batch.derivatives, batch.graph, batch.vectors,
                              stress=stress)
        if forces:
            out["forces"] = f + batch.prior_forces.to(f.dtype)
        if stress:
            out["stress"] = (stress_from_strain_derivative(de_deps, batch.graph)
                             + batch.prior_stress.to(f.dtype))
        return out
