"""Neighbour lists and batched graphs.

Contract of :func:`neighbor_list` (every later layer relies on it):

- **Full list**: every pair appears in both directions, i->j and j->i.
- **No self pairs**: an atom is never its own neighbour in the same image; it *is* a
  neighbour of its own periodic images when they lie inside the cutoff (small cells).
- **Strict cutoff**: a pair is listed iff ``0 < |r_ij| < cutoff``; ``cutoff == 0`` gives no
  edges (models over an explicit topology need none).
- **Shift convention**: ``r_ij = positions[j] - positions[i] + shift @ cell`` with an
  integer ``shift`` (3,) per edge; shifts are zero along non-periodic directions.
- **Ordering**: edges are sorted by centre ``i`` (then by ``j``), so per-centre
  segments are contiguous.
- Triclinic cells, cells smaller than the cutoff (many images), mixed pbc and open
  structures (cell ignored when ``pbc`` is all False) are supported. vesin computes the
  candidate pairs underneath.

Two atoms closer than ``min_distance`` (default 1e-6 Angstrom) raise
:class:`~forcefit.structure.StructureError`: they make every descriptor singular.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from .structure import Structure, StructureError


@dataclasses.dataclass
class Edges:
    """Directed neighbour pairs of one structure (numpy).

    - ``i``: (edges,) | int64 | centre atom index
    - ``j``: (edges,) | int64 | neighbour atom index
    - ``shift``: (edges, 3) | int64 | cell shift, r_ij = r_j - r_i + shift @ cell
    - ``vectors``: (edges, 3) | float64 | Angstrom, r_ij
    - ``distances``: (edges,) | float64 | Angstrom, |r_ij|
    """

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    vectors: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.i)


def _open_box(positions: np.ndarray) -> np.ndarray:
    return np.zeros((3, 3))


def neighbor_list(
    structure: Structure, cutoff: float, *, min_distance: float = 1e-6
) -> Edges:
    """Full neighbour list of ``structure`` with a strict cutoff (see module contract)."""
    cutoff = float(cutoff)
    if not cutoff >= 0:
        raise ValueError(f"cutoff must be >= 0, got {cutoff}")
    from vesin import NeighborList

    pos = np.ascontiguousarray(structure.positions, dtype=np.float64)
    pbc = np.asarray(structure.pbc, dtype=bool)
    n = len(pos)
    if n == 0 or cutoff == 0:  # cutoff 0: purely bonded models need no pairs
        z = np.zeros(0, dtype=np.int64)
        return Edges(z, z.copy(), np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0))
    box = np.asarray(structure.cell, dtype=np.float64) if pbc.any() else _open_box(pos)
    # vesin's cutoff test is not guaranteed strict; ask slightly wider and filter below
    calc = NeighborList(cutoff=cutoff * (1 + 1e-9) + 1e-12, full_list=True)
    i, j, shift, vec = calc.compute(
        points=pos, box=box, periodic=pbc.tolist() if pbc.any() else False, quantities="ijSD"
    )
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1, 3)
    # recompute vectors in float64 from our own convention (independent of the backend)
    vec = pos[j] - pos[i] + shift @ structure.cell if pbc.any() else pos[j] - pos[i]
    d = np.linalg.norm(vec, axis=1)
    keep = d < cutoff
    self_image = (i == j) & ~shift.any(axis=1)
    keep &= ~self_image
    i, j, shift, vec, d = i[keep], j[keep], shift[keep], vec[keep], d[keep]
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        where = f" in {structure.name}" if structure.name else ""
        raise StructureError(
            f"structure{where}: field 'positions': atoms {i[k]} and {j[k]} are "
            f"{d[k]:.3g} Angstrom apart (overlapping atoms)"
        )
    order = np.lexsort((j, i))
    return Edges(i[order], j[order], shift[order], vec[order], d[order])


@dataclasses.dataclass
class Graph:
    """A batch of whole structures as one disconnected graph (torch).

    Atom-level (atoms = total over the batch):

    - ``numbers``: (atoms,) | int64 | atomic numbers
    - ``positions``: (atoms, 3) | float | Angstrom
    - ``batch``: (atoms,) | int64 | index of the structure each atom belongs to

    Structure-level:

    - ``cell``: (structures, 3, 3) | float | Angstrom, rows are lattice vectors
    - ``pbc``: (structures, 3) | bool
    - ``n_atoms``: (structures,) | int64

    Edge-level (indices are global atom indices into the batch):

    - ``i``, ``j``: (edges,) | int64 | centre, neighbour
    - ``shift``: (edges, 3) | float | integer cell shifts stored as float
    - ``edge_batch``: (edges,) | int64 | structure of each edge

    ``cutoff`` is the radius the edges were built with.
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    batch: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    n_atoms: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    shift: torch.Tensor
    edge_batch: torch.Tensor
    cutoff: float

    @property
    def n_structures(self) -> int:
        return int(self.cell.shape[0])

    def edge_vectors(self, positions: torch.Tensor | None = None,
                     cell: torch.Tensor | None = None) -> torch.Tensor:
        """r_ij = pos[j] - pos[i] + shift @ cell, differentiable in positions and cell.

        Returns (edges, 3).
        """
        pos = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        offset = torch.einsum("ea,eab->eb", self.shift, cell[self.edge_batch])  # (edges, 3)
        return pos[self.j] - pos[self.i] + offset

    def to(self, device=None, dtype=None) -> Graph:
        def conv(t: torch.Tensor) -> torch.Tensor:
            if t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return dataclasses.replace(
            self, **{f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)
                     if isinstance(getattr(self, f.name), torch.Tensor)}
        )


def build_graph(
    structures: Structure | Sequence[Structure],
    cutoff: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Graph:
    """Concatenate ``structures`` into one :class:`Graph` with edges within ``cutoff``."""
    if isinstance(structures, Structure):
        structures = [structures]
    nums, pos, batch, cells, pbcs, nat = [], [], [], [], [], []
    ii, jj, shifts, eb = [], [], [], []
    offset = 0
    for s_idx, s in enumerate(structures):
        e = neighbor_list(s, cutoff)
        nums.append(s.numbers)
        pos.append(s.positions)
        batch.append(np.full(len(s), s_idx, dtype=np.int64))
        cells.append(s.cell)
        pbcs.append(s.pbc)
        nat.append(len(s))
        ii.append(e.i + offset)
        jj.append(e.j + offset)
        shifts.append(e.shift)
        eb.append(np.full(len(e), s_idx, dtype=np.int64))
        offset += len(s)

    def cat(parts, dt, shape_tail=()):
        if not parts:
            return torch.zeros((0, *shape_tail), dtype=dt, device=device)
        return torch.as_tensor(np.concatenate(parts), dtype=dt, device=device)

    return Graph(
        numbers=cat(nums, torch.int64),
        positions=cat(pos, dtype, (3,)),
        batch=cat(batch, torch.int64),
        cell=torch.as_tensor(np.array(cells).reshape(-1, 3, 3), dtype=dtype, device=device),
        pbc=torch.as_tensor(np.array(pbcs, dtype=bool).reshape(-1, 3), device=device),
        n_atoms=torch.as_tensor(nat, dtype=torch.int64, device=device),
        i=cat(ii, torch.int64),
        j=cat(jj, torch.int64),
        shift=cat(shifts, dtype, (3,)),
        edge_batch=cat(eb, torch.int64),
        cutoff=float(cutoff),
    )
