"""ASE calculator for any forcefit energy model.

Units: ASE's (Angstrom, eV, eV/Angstrom, eV/Angstrom^3 with ASE's stress sign, Voigt
order xx, yy, zz, yz, xz, xy), which are forcefit's own: nothing is converted.

Work reuse: the neighbour list is built with ``cutoff + skin`` (a Verlet skin) and reused
while only positions change and no atom has moved more than ``skin / 2`` since it was
built (then every pair inside the cutoff is still in the list); the model ignores the
extra edges beyond its cutoff (the energy-model protocol, see
:func:`forcefit.testing.check_extra_edges_ignored`). A change of cell, pbc, atomic numbers
or number of atoms rebuilds the list. The model is copied once to ``dtype``/``device``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .neighbors import build_graph
from .potentials.base import stress_from_strain_derivative
from .structure import Structure, matrix_to_voigt


def evaluate_edges(model: torch.nn.Module, graph, *, stress: bool = True) -> dict:
    """Energy, per-atom energies, forces and stress of ``graph`` (one or more structures).

    The same numbers as :func:`forcefit.potentials.base.evaluate`, obtained faster: the
    edge vectors r_e, the positions and the cell are independent leaves, and
    F_n = -dE/dpos_n (direct) - sum_{e: j_e = n} g_e + sum_{e: i_e = n} g_e with
    g_e = dE/dr_e (r_e = pos[j] - pos[i] + shift @ cell), one ``index_add`` instead of
    autograd through the gathers; dE/d(strain) = sum_e r_e (x) g_e + sum_n pos_n (x)
    dE/dpos_n + sum_k cell_k (x) dE/dcell_k (rows k), and sigma = sym(dE/d strain) / V.
    Models that use only ``vectors`` get no direct terms; models that also read positions or
    the cell (bonded terms) are handled by the direct terms.
    """
    pos = graph.positions.detach().requires_grad_(True)
    cell = graph.cell.detach().requires_grad_(stress)
    g = dataclasses.replace(graph, positions=pos, cell=cell)
    with torch.no_grad():
        if graph.n_structures == 1:  # the calculator's case: one small matmul
            offset = graph.shift @ graph.cell[0]  # (edges, 3)
        else:
            offset = torch.einsum("ea,eab->eb", graph.shift, graph.cell[graph.edge_batch])
        vectors = graph.positions[graph.j] - graph.positions[graph.i] + offset  # (edges, 3)
    vectors.requires_grad_(True)
    energies = model(g, vectors)  # (atoms,)
    energy = torch.zeros(graph.n_structures, dtype=energies.dtype, device=energies.device)
    energy = energy.index_add(0, graph.batch, energies.detach())  # (structures,)
    wrt = [vectors, pos] + ([cell] if stress else [])
    if energies.requires_grad:
        grads = torch.autograd.grad(energies.sum(), wrt, allow_unused=True)
    else:  # the energy does not depend on the geometry (e.g. a constant model)
        grads = [None] * len(wrt)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(wrt, grads)]
    g_e, g_pos = grads[0], grads[1]  # (edges, 3), (atoms, 3)
    forces = -g_pos.index_add(0, graph.j, g_e).index_add(0, graph.i, -g_e)  # (atoms, 3)
    out = {"energy": energy, "energies": energies.detach(), "forces": forces}
    if stress:
        dedeps = torch.zeros_like(graph.cell).index_add(  # (structures, 3, 3)
            0, graph.edge_batch, vectors.detach()[:, :, None] * g_e[:, None, :])
        dedeps = dedeps.index_add(0, graph.batch, pos.detach()[:, :, None] * g_pos[:, None, :])
        dedeps = dedeps + torch.einsum("ska,skb->sab", graph.cell, grads[2])
        out["stress"] = stress_from_strain_derivative(dedeps, graph)
    return out


class ForcefitCalculator(Calculator):
    """ASE calculator: ``energy``, ``free_energy``, ``energies``, ``forces``, ``stress``.

    ``stress`` is available only for structures periodic in all three directions (ASE
    raises ``PropertyNotImplementedError`` otherwise). ``skin`` (Angstrom, >= 0) is the
    Verlet skin; ``skin=0`` rebuilds the neighbour list at every new geometry.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces",
                                                   "stress"]

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float64,
                 device: str | torch.device | None = None, skin: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not hasattr(model, "cutoff"):
            raise ValueError(f"ForcefitCalculator: {type(model).__name__} is not an energy "
                             "model (no cutoff attribute)")
        self.skin = float(skin)
        if not self.skin >= 0:
            raise ValueError(f"ForcefitCalculator: skin must be >= 0, got {skin}")
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._graph = None
        self._ref_positions: np.ndarray | None = None
        self.n_builds = 0  # how many neighbour lists were built (for tests and tuning)

    def _needs_rebuild(self, atoms, system_changes) -> bool:
        if self._graph is None:
            return True
        if not system_changes:  # same geometry, another property asked for
            return False
        if self.skin == 0 or set(system_changes) - {"positions"}:
            return True
        disp = np.linalg.norm(atoms.positions - self._ref_positions, axis=1)  # (atoms,)
        # written so that NaN positions rebuild (and the Structure check reports them)
        return not bool(disp.max(initial=0.0) <= 0.5 * self.skin)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        periodic = bool(np.all(atoms.pbc))
        if want_stress and not periodic:
            from ase.calculators.calculator import PropertyNotImplementedError
            raise PropertyNotImplementedError(
                "ForcefitCalculator: stress needs a structure periodic in all 3 directions")
        if self._needs_rebuild(atoms, system_changes):
            structure = Structure.from_ase(atoms)
            self._graph = build_graph([structure], float(self.model.cutoff) + self.skin,
                                      dtype=self.dtype, device=self.device)
            self._ref_positions = atoms.positions.copy()
            self.n_builds += 1
            graph = self._graph
        else:
            pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)
            graph = dataclasses.replace(self._graph, positions=pos)
        out = evaluate_edges(self.model, graph, stress=want_stress)
        energy = float(out["energy"][0].detach())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["energies"].detach().cpu().numpy().astype(np.float64)
        self.results["forces"] = out["forces"].detach().cpu().numpy().astype(np.float64)
        if want_stress:
            self.results["stress"] = matrix_to_voigt(out["stress"][0].detach().cpu().numpy())
