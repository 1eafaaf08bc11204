"""Export fitted CG potentials: LAMMPS tables, an ASE calculator, saved files.

Units: tables are written in the potential's own units (the user's, e.g. nm and kJ/mol; pick
the LAMMPS ``units`` style that matches, or convert first); :func:`ase_calculator` converts to
ASE's Angstrom and eV at the boundary (:class:`UnitScaled`). Saved files record the units.

LAMMPS table files (LAMMPS manual, ``pair_style table`` and ``bond_style table``): comment lines
start with ``#``; a section begins with its keyword line, then a parameter line, a blank line,
and N lines ``index r energy force`` with force = -dE/dr:

- pair: ``N n R rlo rhi`` (the r values are then rlo + (rhi - rlo)(i-1)/(n-1), as listed);
- bond: ``N n FP fplo fphi EQ r0`` (FP: dF/dr at both ends, so LAMMPS' splines need not guess
  them; EQ: the equilibrium distance, used by ``fix shake`` and the like).

Index names: ``points`` (P, table rows).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, atomic_write_text
from ..neighbors import Graph
from ..potentials.base import evaluate
from ..structure import KCAL_PER_MOL, KJ_PER_MOL

__all__ = [
    "ENERGY_UNITS",
    "LENGTH_UNITS",
    "UnitScaled",
    "ase_calculator",
    "load_potential",
    "save_potential",
    "tabulate_bond",
    "tabulate_pair",
    "write_lammps_table",
]

#: Angstrom per unit of length.
LENGTH_UNITS = {"A": 1.0, "Angstrom": 1.0, "nm": 10.0, "bohr": 0.529177210903}
#: eV per unit of energy (per particle: kJ/mol and kcal/mol are molar).
ENERGY_UNITS = {"eV": 1.0, "kJ/mol": KJ_PER_MOL, "kcal/mol": KCAL_PER_MOL,
                "Hartree": 27.211386245988}


def _write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically (temporary file in the same folder + os.replace)."""
    return atomic_write_text(path, text)


def _grid(r_min: float, r_max: float, n: int) -> np.ndarray:
    r_min, r_max, n = float(r_min), float(r_max), int(n)
    if not (np.isfinite(r_min) and np.isfinite(r_max) and 0 < r_min < r_max):
        raise ValueError(f"table: need 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    if n < 2:
        raise ValueError(f"table: need at least 2 points, got n={n}")
    return np.linspace(r_min, r_max, n)


def tabulate_bond(model: nn.Module, r, bond_type: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Energy (P,) and force -dE/dr (P,) of one bond of ``bond_type`` at distances ``r`` (P,).

    ``model`` provides ``bond_energy(r, bond_type)`` (HarmonicBond, SplineBond).
    """
    if not hasattr(model, "bond_energy"):
        raise ValueError(f"tabulate_bond: {type(model).__name__} has no bond_energy(r, type)")
    if not 0 <= int(bond_type) < int(getattr(model, "n_types", 1)):
        raise ValueError(f"tabulate_bond: bond_type {bond_type} outside 0.."
                         f"{int(getattr(model, 'n_types', 1)) - 1}")
    rr = torch.as_tensor(np.asarray(r, dtype=np.float64)).requires_grad_(True)  # (P,)
    e = model.bond_energy(rr, int(bond_type))  # (P,)
    (de,) = torch.autograd.grad(e.sum(), rr)
    return e.detach().numpy(), -de.numpy()


def tabulate_pair(model: nn.Module, r, numbers: tuple[int, int] = (1, 1)
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Energy (P,) and force -dE/dr (P,) of an isolated pair of types ``numbers`` at ``r``.

    Works for any pair energy model: each distance is a two-site structure with both directed
    edges, all evaluated as one batch; force is minus the derivative along the pair axis.
    """
    r_t = torch.as_tensor(np.asarray(r, dtype=np.float64))  # (P,)
    n = len(r_t)
    pos = torch.zeros((n, 2, 3), dtype=torch.float64)
    pos[:, 1, 0] = r_t
    idx = torch.arange(n)
    graph = Graph(
        numbers=torch.as_tensor(list(numbers), dtype=torch.int64).repeat(n),
        positions=pos.reshape(-1, 3), batch=idx.repeat_interleave(2),
        cell=torch.zeros((n, 3, 3), dtype=torch.float64),
        pbc=torch.zeros((n, 3), dtype=torch.bool), n_atoms=torch.full((n,), 2),
        i=torch.stack([2 * idx, 2 * idx + 1], 1).reshape(-1),
        j=torch.stack([2 * idx + 1, 2 * idx], 1).reshape(-1),
        shift=torch.zeros((2 * n, 3), dtype=torch.float64), edge_batch=idx.repeat_interleave(2),
        cutoff=float(max(getattr(model, "cutoff", 0.0), float(r_t.max()) + 1e-9)))
    out = evaluate(copy.deepcopy(model).double(), graph, forces=True, stress=False)
    forces = out["forces"].detach().reshape(n, 2, 3)  # (P, 2, 3)
    return out["energy"].detach().numpy(), forces[:, 1, 0].numpy()


def write_lammps_table(path: str | os.PathLike, model: nn.Module, *, style: str, r_min: float,
                       r_max: float, n: int = 1000, keyword: str = "FORCEFIT",
                       bond_type: int = 0, numbers: tuple[int, int] = (1, 1),
                       units: dict | None = None) -> dict:
    """Write a LAMMPS ``pair_style table`` (``style="pair"``) or ``bond_style table``
    (``style="bond"``) file with ``n`` evenly spaced rows on [r_min, r_max].

    Returns {"r", "energy", "force", "path", "keyword"} (arrays (n,)). The header comment names
    the model and the units (``units``, else ``model.units``).
    """
    if style not in ("pair", "bond"):
        raise ValueError(f"write_lammps_table: style must be 'pair' or 'bond', got {style!r}")
    if not keyword or any(c.isspace() for c in keyword):
        raise ValueError(f"write_lammps_table: keyword must be one word, got {keyword!r}")
    r = _grid(r_min, r_max, n)
    if style == "bond":
        e, f = tabulate_bond(model, r, bond_type)
    else:
        e, f = tabulate_pair(model, r, numbers)
    if not (np.isfinite(e).all() and np.isfinite(f).all()):
        raise ValueError("write_lammps_table: the model gives non-finite values on "
                         f"[{r_min}, {r_max}]")
    units = units or getattr(model, "units", None) or {}
    lines = [f"# forcefit {style} table of {type(model).__name__}",
             (f"# units: length {units.get('length', '?')}, energy "
              f"{units.get('energy', '?')}; columns: index r energy force(-dE/dr)"), "", keyword]
    if style == "pair":
        lines.append(f"N {len(r)} R {r[0]:.17g} {r[-1]:.17g}")
    else:
        # dF/dr at the ends by one-sided second-order differences of the tabulated force
        h = r[1] - r[0]
        fplo = (-3 * f[0] + 4 * f[1] - f[2]) / (2 * h) if len(r) > 2 else (f[1] - f[0]) / h
        fphi = (3 * f[-1] - 4 * f[-2] + f[-3]) / (2 * h) if len(r) > 2 else fplo
        eq = float(r[np.argmin(e)])
        lines.append(f"N {len(r)} FP {fplo:.17g} {fphi:.17g} EQ {eq:.17g}")
    lines.append("")
    lines += [f"{k + 1} {r[k]:.17g} {e[k]:.17g} {f[k]:.17g}" for k in range(len(r))]
    out = _write_text(path, "\n".join(lines) + "\n")
    return {"r": r, "energy": e, "force": f, "path": out, "keyword": keyword}


class UnitScaled(nn.Module):
    """An energy model in forcefit's Angstrom / eV wrapping a model in other units.

    E_eV(x_A) = energy_scale * E_user(x_A / length_scale), with ``length_scale`` Angstrom per
    user length unit and ``energy_scale`` eV per user energy unit (:data:`LENGTH_UNITS`,
    :data:`ENERGY_UNITS`). Positions, cell and edge vectors are divided by ``length_scale``
    before the inner model sees them, so autograd gives forces in eV/A and stress in eV/A^3.
    """

    def __init__(self, model: nn.Module, units: dict) -> None:
        super().__init__()
        try:
            self.length_scale = LENGTH_UNITS[units["length"]]
            self.energy_scale = ENERGY_UNITS[units["energy"]]
        except (KeyError, TypeError):
            raise ValueError(f"UnitScaled: units {units!r} not known; length one of "
                             f"{sorted(LENGTH_UNITS)}, energy one of {sorted(ENERGY_UNITS)}"
                             ) from None
        self.model = model
        self.units = dict(units)
        self.cutoff = float(getattr(model, "cutoff", 0.0)) * self.length_scale

    def forward(self, graph: Graph, vectors: torch.Tensor) -> torch.Tensor:
        s = self.length_scale
        inner = dataclasses.replace(graph, positions=graph.positions / s, cell=graph.cell / s,
                                    cutoff=graph.cutoff / s)
        return self.energy_scale * self.model(inner, vectors / s)  # (atoms,)


def ase_calculator(model: nn.Module, units: dict | None = None, **kwargs):
    """A :class:`forcefit.calculator.ForcefitCalculator` (ASE units) for a model in ``units``
    (default ``model.units``)."""
    from ..calculator import ForcefitCalculator

    units = units or getattr(model, "units", None)
    if not units:
        raise ValueError("ase_calculator: the model records no units; pass units={'length': "
                         "..., 'energy': ...}")
    return ForcefitCalculator(UnitScaled(model, units), **kwargs)


FORMAT = "forcefit-cg-potential"


def save_potential(path: str | os.PathLike, model: nn.Module, units: dict | None = None,
                   metadata: dict | None = None) -> Path:
    """Save ``model`` as data: its JSON config, units and metadata plus its tensors.

    Loaded by :func:`load_potential` with ``torch.load(weights_only=True)``; written atomically.
    """
    import forcefit

    units = units or getattr(model, "units", None)
    if not units:
        raise ValueError("save_potential: the model records no units; pass units=")
    payload = {
        "format": FORMAT,
        "version": forcefit.__version__,
        "config": json.dumps(model.to_config()),
        "units": json.dumps(dict(units)),
        "metadata": json.dumps(metadata or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_potential(path: str | os.PathLike) -> tuple[nn.Module, dict, dict]:
    """(model, units, metadata) from :func:`save_potential`; the model is rebuilt through
    :func:`forcefit.potentials.from_config`."""
    from .. import potentials

    try:
        payload = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, TypeError,
            pickle.UnpicklingError) as err:
        # unreadable, not a torch file, or holding objects weights_only refuses
        raise ValueError(f"{path}: not a readable forcefit CG potential ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format': expected {FORMAT!r}")
    config = json.loads(payload["config"])
    model = potentials.from_config(config, payload["state_dict"])
    units = json.loads(payload["units"])
    model.units = units
    return model, units, json.loads(payload["metadata"])
