"""Linear maps from all-atom coordinates and forces to coarse-grained sites.

Units: none of its own. Positions, cells and forces keep whatever units the caller's arrays are
in (the ethane example: nm and kJ/mol/nm); weights are dimensionless.

A map is given by two matrices of shape (sites, atoms) (Noid et al., J. Chem. Phys. 128,
244114 (2008), eqs. 5 and 13):

- position weights c: R_I = sum_i c_Ii r_i, each row summing to 1 (so a rigid translation of
  the atoms translates the sites);
- force weights d: F_I = sum_i d_Ii f_i.

Constructors: :meth:`Mapping.center_of_mass`, :meth:`Mapping.center_of_geometry` (both with
the force of a site the sum of its atoms' forces) and :meth:`Mapping.select` (one atom per site;
the site force is that atom's force: chemtrain's ethane map onto the two carbons).

Periodic boxes: a site's atoms may be split over the boundary. Each atom of a site is first
unwrapped to the minimum image relative to the site's reference atom (its atom with the largest
position weight): R_I = r_ref + sum_i c_Ii mic(r_i - r_ref). This is exact when every site is
smaller than half the box. Forces need no unwrapping.

Index names: ``frames`` (F), ``atoms`` (N), ``sites`` (I), ``pairs`` (P: non-zero position
weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..potentials.bonded import minimum_image

__all__ = ["Mapping"]


def _matrix(value, name: str) -> np.ndarray:
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Mapping: '{name}' is not numeric ({err})") from None
    if m.ndim != 2:
        raise ValueError(f"Mapping: '{name}' must be a (sites, atoms) matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"Mapping: '{name}' contains NaN or infinite values")
    return m


@dataclasses.dataclass
class Mapping:
    """Linear all-atom -> CG map (see module docstring).

    - ``position_weights``: (sites, atoms) | float64 | rows sum to 1
    - ``force_weights``: (sites, atoms) | float64
    """

    position_weights: np.ndarray
    force_weights: np.ndarray

    def __post_init__(self) -> None:
        c = _matrix(self.position_weights, "position_weights")
        d = _matrix(self.force_weights, "force_weights")
        if c.shape != d.shape:
            raise ValueError(f"Mapping: 'position_weights' {c.shape} and 'force_weights' "
                             f"{d.shape} must have the same shape (sites, atoms)")
        sums = c.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-8)
        if len(bad):
            raise ValueError(f"Mapping: 'position_weights' row of site {int(bad[0])} sums to "
                             f"{sums[bad[0]]:.6g}, must sum to 1")
        self.position_weights, self.force_weights = c, d

    @property
    def n_sites(self) -> int:
        return self.position_weights.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.position_weights.shape[1]

    # -- constructors ------------------------------------------------------------------------
    @staticmethod
    def _groups(groups: Sequence[Sequence[int]], n_atoms: int) -> list[np.ndarray]:
        out = []
        for s, g in enumerate(groups):
            g = np.asarray(g, dtype=np.int64).reshape(-1)
            if len(g) == 0:
                raise ValueError(f"Mapping: site {s} has no atoms")
            if (g < 0).any() or (g >= n_atoms).any():
                raise ValueError(f"Mapping: site {s} refers to atoms {g.tolist()} outside "
                                 f"0..{n_atoms - 1}")
            if len(np.unique(g)) != len(g):
                raise ValueError(f"Mapping: site {s} lists an atom twice: {g.tolist()}")
            out.append(g)
        return out

    @classmethod
    def center_of_mass(cls, groups: Sequence[Sequence[int]], masses) -> Mapping:
        """Sites at the centres of mass of ``groups`` (atom indices); site force = sum of forces."""
        m = np.asarray(masses, dtype=np.float64).reshape(-1)
        if not (np.isfinite(m).all() and (m > 0).all()):
            raise ValueError("Mapping: 'masses' must be finite and > 0")
        gs = cls._groups(groups, len(m))
        c = np.zeros((len(gs), len(m)))
        d = np.zeros_like(c)
        for s, g in enumerate(gs):
            c[s, g] = m[g] / m[g].sum()
            d[s, g] = 1.0
        return cls(c, d)

    @classmethod
    def center_of_geometry(cls, groups: Sequence[Sequence[int]], n_atoms: int) -> Mapping:
        """Sites at the mean position of ``groups``; site force = sum of its atoms' forces."""
        gs = cls._groups(groups, int(n_atoms))
        c = np.zeros((len(gs), int(n_atoms)))
        d = np.zeros_like(c)
        for s, g in enumerate(gs):
            c[s, g] = 1.0 / len(g)
            d[s, g] = 1.0
        return cls(c, d)

    @classmethod
    def select(cls, atoms: Sequence[int], n_atoms: int) -> Mapping:
        """One atom per site; the site's position and force are that atom's (chemtrain ethane)."""
        gs = cls._groups([[a] for a in atoms], int(n_atoms))
        c = np.zeros((len(gs), int(n_atoms)))
        for s, g in enumerate(gs):
            c[s, g] = 1.0
        return cls(c, c.copy())

    # -- application -------------------------------------------------------------------------
    def _check(self, arr: torch.Tensor, name: str) -> None:
        if arr.ndim != 3 or arr.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"Mapping: '{name}' must have shape (frames, {self.n_atoms}, 3) or "
                             f"({self.n_atoms}, 3), got {tuple(arr.shape)}")
        if not torch.isfinite(arr).all():
            bad = int(torch.nonzero(~torch.isfinite(arr).reshape(len(arr), -1).all(1))[0])
            raise ValueError(f"Mapping: '{name}' has NaN or infinite values in frame {bad}")

    def map_positions(self, positions, cell=None, pbc=None) -> torch.Tensor:
        """Site positions (frames, sites, 3) from atom positions (frames, atoms, 3).

        ``cell``: (3, 3) or (frames, 3, 3), rows are lattice vectors; ``pbc``: bool or (3,).
        With no cell (or pbc all False) the weights apply directly. A single frame (atoms, 3)
        gives (sites, 3). Vectorised over frames.
        """
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        single = x.ndim == 2
        if single:
            x = x[None]
        self._check(x, "positions")
        c = torch.as_tensor(self.position_weights)  # (I, N)
        periodic = cell is not None and (pbc is None or np.any(pbc))
        if not periodic:
            out = torch.einsum("in,fnx->fix", c, x)  # (F, I, 3)
            return out[0] if single else out
        n_frames = x.shape[0]
        box = torch.as_tensor(np.asarray(cell, dtype=np.float64))
        if box.shape == (3, 3):
            box = box.expand(n_frames, 3, 3)
        if box.shape != (n_frames, 3, 3):
            raise ValueError(f"Mapping: 'cell' must have shape (3, 3) or ({n_frames}, 3, 3), "
                             f"got {tuple(box.shape)}")
        flags = torch.as_tensor(np.broadcast_to(np.asarray(True if pbc is None else pbc,
                                                           dtype=bool), (3,)).copy())
        if abs(torch.linalg.det(box)).min() < 1e-12:
            raise ValueError("Mapping: 'cell' is singular in a periodic mapping")
        ref = np.argmax(self.position_weights, axis=1)  # (I,) reference atom per site
        site, atom = np.nonzero(self.position_weights)  # (P,), (P,)
        w = torch.as_tensor(self.position_weights[site, atom])  # (P,)
        d = x[:, atom] - x[:, ref[site]]  # (F, P, 3)
        n_pairs = len(site)
        cells = box[:, None].expand(n_frames, n_pairs, 3, 3).reshape(-1, 3, 3)  # (F*P, 3, 3)
        flags_rows = flags.expand(n_frames * n_pairs, 3)  # (F*P, 3)
        d = minimum_image(d.reshape(-1, 3), cells, flags_rows).reshape(n_frames, n_pairs, 3)
        out = x[:, ref].clone()  # (F, I, 3) reference atom positions (rows of c sum to 1)
        out.index_add_(1, torch.as_tensor(site), w[None, :, None] * d)
        return out[0] if single else out

    def map_forces(self, forces) -> torch.Tensor:
        """Site forces F_I = sum_i d_Ii f_i: (frames, sites, 3) from (frames, atoms, 3)."""
        f = torch.as_tensor(np.asarray(forces, dtype=np.float64))
        single = f.ndim == 2
        if single:
            f = f[None]
        self._check(f, "forces")
        out = torch.einsum("in,fnx->fix", torch.as_tensor(self.force_weights), f)  # (F, I, 3)
        return out[0] if single else out

    def __call__(self, positions, forces=None, cell=None, pbc=None):
        """Map a trajectory: returns (site positions, site forces or None)."""
        pos = self.map_positions(positions, cell=cell, pbc=pbc)
        return pos, (None if forces is None else self.map_forces(forces))

    def to_config(self) -> dict:
        return {"position_weights": self.position_weights.tolist(),
                "force_weights": self.force_weights.tolist()}
