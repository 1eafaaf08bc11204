"""Coarse-grained frames: site positions and mapped forces, in the user's units.

Units: whatever the user's trajectory is in, recorded in :attr:`CGData.units` (the ethane
example: length nm, energy kJ/mol, forces kJ/mol/nm). Nothing is converted here; potentials
fitted to these frames carry the same units (:mod:`forcefit.cg.fit`).

All frames of a CG system share one set of sites (same count, same order, same site types), so a
batch of frames is a (frames, sites, 3) tensor and is turned into a
:class:`~forcefit.neighbors.Graph` directly by :func:`frames_graph`: with no edges at all for a
purely bonded model (cutoff 0), or with all site pairs inside the cutoff by the minimum image,
computed in torch for the whole batch at once (no per-frame neighbour-list call).

Index names: ``frames`` (F), ``sites`` (I, the "atoms" of the graph), ``edges`` (E).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..neighbors import Graph
from ..structure import MAX_Z
from .mapping import Mapping

__all__ = ["CGData", "frames_graph"]


def _pbc3(pbc) -> torch.Tensor:
    p = np.asarray(pbc, dtype=bool)
    p = np.repeat(p, 3) if p.ndim == 0 else p.reshape(-1)
    if p.shape != (3,):
        raise ValueError(f"CGData: 'pbc' must be a bool or 3 bools, got {pbc!r}")
    return torch.as_tensor(p)


def _min_width(cell: torch.Tensor, pbc: torch.Tensor) -> float:
    """Smallest distance between opposite faces of the cells (F, 3, 3) along periodic axes."""
    vol = torch.linalg.det(cell).abs()  # (F,)
    widths = []
    for a in range(3):
        if bool(pbc[a]):
            b, c = cell[:, (a + 1) % 3], cell[:, (a + 2) % 3]
            widths.append(vol / torch.linalg.cross(b, c).norm(dim=-1))  # (F,)
    return float(torch.stack(widths).min()) if widths else float("inf")


def frames_graph(positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor | None,
                 pbc: torch.Tensor, cutoff: float,
                 exclude: torch.Tensor | None = None) -> Graph:
    """A :class:`Graph` of a batch of CG frames (F, sites, 3) that share the site list.

    ``numbers`` (sites,) site types; ``cell`` (F, 3, 3) or None (open); ``pbc`` (3,).
    ``cutoff`` <= 0 gives a graph with no edges (bonded models). Otherwise every ordered site pair
    (i != j) with minimum-image distance < cutoff is an edge, except pairs with
    ``exclude[i, j]`` True (sites, sites) (e.g. bonded neighbours). The minimum image needs
    cutoff < half the smallest cell width (checked).
    """
    n_frames, n_sites, _ = positions.shape
    dtype, device = positions.dtype, positions.device
    periodic = cell is not None and bool(pbc.any())
    if cell is None:
        cell = torch.zeros((n_frames, 3, 3), dtype=dtype, device=device)
    pbc_rows = pbc.to(device).expand(n_frames, 3)  # (F, 3)
    batch = torch.arange(n_frames, device=device).repeat_interleave(n_sites)  # (F*I,)
    empty_i = torch.zeros(0, dtype=torch.int64, device=device)
    common = {"numbers": numbers.to(device).repeat(n_frames),
              "positions": positions.reshape(-1, 3), "batch": batch, "cell": cell,
              "pbc": pbc_rows,
              "n_atoms": torch.full((n_frames,), n_sites, dtype=torch.int64, device=device)}
    if cutoff <= 0:
        return Graph(**common, i=empty_i, j=empty_i.clone(),
                     shift=torch.zeros((0, 3), dtype=dtype, device=device),
                     edge_batch=empty_i.clone(), cutoff=0.0)
    if periodic:
        width = _min_width(cell, pbc)
        if not cutoff < 0.5 * width:
            raise ValueError(f"frames_graph: cutoff {cutoff} must be < half the smallest cell "
                             f"width ({0.5 * width:.6g}) for the minimum image")
    with torch.no_grad():
        d = positions[:, None, :, :] - positions[:, :, None, :]  # (F, I, I, 3) r_j - r_i
        if periodic:
            inv = torch.linalg.inv(cell)  # (F, 3, 3)
            frac = torch.einsum("fija,fab->fijb", d, inv)  # (F, I, I, 3)
            shift = -torch.round(frac) * pbc.to(device)  # (F, I, I, 3)
            d = d + torch.einsum("fija,fab->fijb", shift, cell)
        else:
            shift = torch.zeros_like(d)
        dist = d.norm(dim=-1)  # (F, I, I)
        keep = dist < cutoff
        keep &= ~torch.eye(n_sites, dtype=torch.bool, device=device)
        if exclude is not None:
            keep &= ~exclude.to(device)
        f, i, j = torch.nonzero(keep, as_tuple=True)  # (E,) each, sorted by frame then i
    return Graph(**common, i=f * n_sites + i, j=f * n_sites + j, shift=shift[f, i, j],
                 edge_batch=f, cutoff=float(cutoff))


@dataclasses.dataclass
class CGData:
    """Frames of a coarse-grained system with reference forces.

    - ``positions``: (frames, sites, 3) | float64 | user length unit (sites may lie outside the
      box: bonded terms and :func:`frames_graph` use the minimum image)
    - ``forces``: (frames, sites, 3) | float64 | user energy / length
    - ``cell``: (3, 3), (frames, 3, 3) or None | float64 | user length unit, rows = box vectors
    - ``pbc``: (3,) | bool
    - ``numbers``: (sites,) | int64 | site types as pseudo atomic numbers (1..118), used by
      pair potentials with per-species parameters
    - ``units``: dict with "length" and "energy" (e.g. {"length": "nm", "energy": "kJ/mol"})
    """

    positions: torch.Tensor
    forces: torch.Tensor
    cell: torch.Tensor | None = None
    pbc: torch.Tensor | bool = False
    numbers: torch.Tensor | None = None
    units: dict = dataclasses.field(default_factory=lambda: {"length": "?", "energy": "?"})

    def __post_init__(self) -> None:
        self.positions = torch.as_tensor(np.asarray(self.positions, dtype=np.float64))
        self.forces = torch.as_tensor(np.asarray(self.forces, dtype=np.float64))
        if self.positions.ndim != 3 or self.positions.shape[-1] != 3:
            raise ValueError(f"CGData: 'positions' must be (frames, sites, 3), got "
                             f"{tuple(self.positions.shape)}")
        if self.forces.shape != self.positions.shape:
            raise ValueError(f"CGData: 'forces' shape {tuple(self.forces.shape)} differs from "
                             f"'positions' {tuple(self.positions.shape)}")
        for name in ("positions", "forces"):
            ok = torch.isfinite(getattr(self, name)).reshape(len(self.positions), -1).all(1)
            if not bool(ok.all()):
                raise ValueError(f"CGData: '{name}' has NaN or infinite values in frame "
                                 f"{int(torch.nonzero(~ok)[0])}")
        n_frames, n_sites, _ = self.positions.shape
        self.pbc = _pbc3(self.pbc)
        if self.cell is not None:
            cell = torch.as_tensor(np.asarray(self.cell, dtype=np.float64))
            if cell.shape == (3, 3):
                cell = cell.expand(n_frames, 3, 3)
            if cell.shape != (n_frames, 3, 3):
                raise ValueError(f"CGData: 'cell' must be (3, 3) or ({n_frames}, 3, 3), got "
                                 f"{tuple(cell.shape)}")
            if bool(self.pbc.any()) and float(torch.linalg.det(cell).abs().min()) < 1e-12:
                raise ValueError("CGData: 'cell' is singular in a periodic system")
            self.cell = cell
        elif bool(self.pbc.any()):
            raise ValueError("CGData: 'pbc' is set but no 'cell' was given")
        nums = (np.ones(n_sites, dtype=np.int64) if self.numbers is None
                else np.asarray(self.numbers, dtype=np.int64).reshape(-1))
        if nums.shape != (n_sites,) or (nums < 1).any() or (nums > MAX_Z).any():
            raise ValueError(f"CGData: 'numbers' must be {n_sites} site types in 1..{MAX_Z}")
        self.numbers = torch.as_tensor(nums)
        units = dict(self.units or {})
        for key in ("length", "energy"):
            if not isinstance(units.get(key), str) or not units[key]:
                raise ValueError(f"CGData: 'units' must name the '{key}' unit, got {self.units!r}")
        self.units = units

    @classmethod
    def from_trajectory(cls, mapping: Mapping, positions, forces, *, cell=None, pbc=False,
                        numbers=None, units: dict) -> CGData:
        """Map an all-atom trajectory (frames, atoms, 3) with ``mapping`` (vectorised)."""
        pos, frc = mapping(positions, forces, cell=cell, pbc=pbc)
        if pos.ndim == 2:
            pos, frc = pos[None], frc[None]
        return cls(pos, frc, cell=cell, pbc=pbc, numbers=numbers, units=units)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_sites(self) -> int:
        return int(self.positions.shape[1])

    def subset(self, frames: Sequence[int] | torch.Tensor | slice) -> CGData:
        idx = frames if isinstance(frames, slice) else torch.as_tensor(frames, dtype=torch.int64)
        return CGData(self.positions[idx], self.forces[idx],
                      cell=None if self.cell is None else self.cell[idx], pbc=self.pbc,
                      numbers=self.numbers, units=self.units)

    def graph(self, frames: torch.Tensor, cutoff: float, exclude: torch.Tensor | None = None,
              dtype: torch.dtype = torch.float64) -> Graph:
        """Graph of the frames ``frames`` (indices) for a model with ``cutoff``."""
        cell = None if self.cell is None else self.cell[frames].to(dtype)
        return frames_graph(self.positions[frames].to(dtype), self.numbers, cell, self.pbc,
                            cutoff, exclude)

    def pair_distances(self, i: int, j: int) -> torch.Tensor:
        """Minimum-image distance between sites i and j in every frame (frames,)."""
        return self.pair_vectors(i, j).norm(dim=-1)

    def pair_vectors(self, i: int, j: int) -> torch.Tensor:
        """Minimum-image vectors r_j - r_i in every frame (frames, 3)."""
        from ..potentials.bonded import minimum_image

        d = self.positions[:, j] - self.positions[:, i]  # (F, 3)
        if self.cell is None or not bool(self.pbc.any()):
            return d
        return minimum_image(d, self.cell, self.pbc.expand(len(d), 3))

    def projected_forces(self, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance r_ij (frames,) and the force on each of the two sites projected on the
        outward axis (away from the other site), (frames, 2): F_i.(-u) and F_j.u with
        u = (r_j - r_i)/r. For a bond energy E(r) both equal -dE/dr."""
        d = self.pair_vectors(i, j)  # (F, 3)
        r = d.norm(dim=-1)  # (F,)
        u = d / r[:, None]  # (F, 3)
        proj = torch.stack([-(self.forces[:, i] * u).sum(-1), (self.forces[:, j] * u).sum(-1)],
                           1)  # (F, 2)
        return r, proj  # (F,), (F, 2)
