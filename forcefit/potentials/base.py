"""The energy-model protocol and autograd forces and stress.

Every energy model in forcefit (classical potentials, fitted networks, linear models,
coarse-grained potentials) is a ``torch.nn.Module`` with

- ``cutoff: float``: the neighbour-list radius it needs (Angstrom, or the user's length unit
  in the coarse-grained module), and
- ``forward(graph, vectors) -> energies``: per-atom energies, shape (atoms,), from a
  :class:`~forcefit.neighbors.Graph` and its edge vectors ``vectors`` (edges, 3).
  Edges with ``|r| >= cutoff`` must contribute nothing: a graph built with a larger radius
  (a :class:`~forcefit.potentials.Sum` of terms, a calculator's neighbour-list skin) must give
  the same energies (``forcefit.testing.check_extra_edges_ignored``).

Energy is the primitive: :func:`evaluate` obtains forces F = -dE/dr and the stress
sigma = (1/V) dE/d(epsilon) (ASE sign, positive is tensile) by differentiating through a
homogeneous strain epsilon applied to positions and cell, so any model gets consistent forces
and stress with no code of its own. Models that use only edge vectors see the strain through
``vectors``; models that use positions (bonded terms) see it through ``graph.positions``.
"""

from __future__ import annotations

import dataclasses

import torch

from ..neighbors import Graph, build_graph


def _strained(graph: Graph, strain: torch.Tensor) -> Graph:
    """Apply (I + strain[s]) to the positions and cell of each structure s."""
    deform = torch.eye(3, dtype=graph.positions.dtype, device=graph.positions.device) + strain
    pos = torch.einsum("na,nab->nb", graph.positions, deform[graph.batch])  # (atoms, 3)
    cell = torch.einsum("sia,sab->sib", graph.cell, deform)  # (structures, 3, 3)
    return dataclasses.replace(graph, positions=pos, cell=cell)


def stress_from_strain_derivative(dedeps: torch.Tensor, graph: Graph) -> torch.Tensor:
    """sigma = sym(dE/d epsilon) / V per structure, (structures, 3, 3), ASE sign.

    Zero for structures not periodic in all three directions (no volume to divide by).
    """
    vol = torch.linalg.det(graph.cell.to(dedeps.dtype)).abs()  # (structures,)
    periodic = graph.pbc.all(dim=1)  # (structures,)
    safe = torch.where(periodic, vol, torch.ones_like(vol))
    sym = 0.5 * (dedeps + dedeps.transpose(1, 2)) / safe[:, None, None]  # (structures, 3, 3)
    return torch.where(periodic[:, None, None], sym, torch.zeros_like(sym))


def evaluate(
    model: torch.nn.Module,
    graph: Graph,
    *,
    forces: bool = True,
    stress: bool = True,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Energies, forces and stress of every structure in ``graph``.

    Returns a dict with ``energy`` (structures,) eV, ``energies`` (atoms,) eV, and on request
    ``forces`` (atoms, 3) eV/A and ``stress`` (structures, 3, 3) eV/A^3 (ASE sign; zero for
    structures that are not periodic in all three directions).
    ``create_graph=True`` keeps the graph for training on forces.
    """
    pos = graph.positions.detach().requires_grad_(forces)
    strain = torch.zeros(
        (graph.n_structures, 3, 3), dtype=pos.dtype, device=pos.device, requires_grad=stress
    )
    g = dataclasses.replace(graph, positions=pos)
    if stress:
        g = _strained(g, strain)
    vectors = g.edge_vectors()
    energies = model(g, vectors)  # (atoms,)
    energy = torch.zeros(graph.n_structures, dtype=energies.dtype, device=energies.device)
    energy = energy.index_add(0, graph.batch, energies)
    out = {"energy": energy, "energies": energies}
    wrt = [t for t, want in ((pos, forces), (strain, stress)) if want]
    if wrt:
        grads = torch.autograd.grad(
            energy.sum(), wrt, create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(wrt, grads)]
        if forces:
            out["forces"] = -grads[0]
        if stress:
            out["stress"] = stress_from_strain_derivative(grads[-1], graph)
    return out


def evaluate_structures(model: torch.nn.Module, structures, *, forces=True, stress=True,
                        dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Convenience: build the graph of ``structures`` at ``model.cutoff`` and evaluate."""
    graph = build_graph(structures, model.cutoff, dtype=dtype)
    return evaluate(model, graph, forces=forces, stress=stress)
