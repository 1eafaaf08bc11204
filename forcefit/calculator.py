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

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .neighbors import build_graph
from .potentials.base import evaluate
from .structure import Structure, matrix_to_voigt


class ForcefitCalculator(Calculator):
    """ASE calculator: ``energy``, ``free_energy``, ``energies``, ``forces``, ``stress``.

    ``stress`` is available only for structures periodic in all three directions (ASE
    raises ``PropertyNotImplementedError`` otherwise). ``skin`` (Angstrom, >= 0) is the
    Verlet skin; ``skin=0`` rebuilds the neighbour list at every new geometry.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

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
        if self._graph is None or self.skin == 0:
            return True
        if set(system_changes) - {"positions"}:
            return True
        disp = np.linalg.norm(atoms.positions - self._ref_positions, axis=1)  # (atoms,)
        return bool(disp.max(initial=0.0) > 0.5 * self.skin)

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
        out = evaluate(self.model, graph, forces=True, stress=periodic)
        energy = float(out["energy"][0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["energies"].detach().cpu().numpy().astype(np.float64)
        self.results["forces"] = out["forces"].detach().cpu().numpy().astype(np.float64)
        if periodic:
            self.results["stress"] = matrix_to_voigt(out["stress"][0].detach().cpu().numpy())
