"""Forces from descriptor derivatives, and descriptors of whole datasets.

Units: edge vectors in Angstrom; dD in 1/Angstrom; with dE/dD in eV the forces come out in
eV/Angstrom and dE/d(strain) in eV (stress = sym(dE/d eps) / V in eV/Angstrom^3, ASE sign).

Contraction (the chain rule through the edge vectors, see ``../shared/DESIGN.md``): for an
energy E(D) with D_i depending on the edges centred on i,

    g_e = sum_F dE/dD[i_e, F] dD[e, F, :]          (edges, 3)
    F_i += g_e,  F_j -= g_e                          (forces = -dE/dr)
    dE/d eps = sum_e outer(r_e, g_e)                 (structures, 3, 3)

since r_e = r_j - r_i + shift @ cell and a homogeneous strain maps r_e -> r_e (1 + eps).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Sequence

import numpy as np
import torch

from ..neighbors import Graph, neighbor_list
from ..structure import Structure, StructureError
from .acsf import DescriptorError, DescriptorSet


def contract(dE_dD: torch.Tensor, dD: torch.Tensor, graph: Graph, vectors: torch.Tensor):
    """Forces (atoms, 3) and dE/d(strain) (structures, 3, 3) of E(D).

    ``dE_dD`` (atoms, F), ``dD`` (edges, F, 3) from :meth:`DescriptorSet.compute` (float32
    storage is promoted to the dtype of ``dE_dD``), ``vectors`` (edges, 3) the edge vectors.
    Differentiable in ``dE_dD`` (training on forces needs that).
    """
    n_atoms = int(graph.numbers.shape[0])
    if dE_dD.shape[0] != n_atoms or dD.shape[0] != vectors.shape[0] or \
            dE_dD.shape[1] != dD.shape[1]:
        raise DescriptorError(f"contract: shapes do not fit: dE_dD {tuple(dE_dD.shape)} "
                              f"(atoms={n_atoms}, F), dD {tuple(dD.shape)} "
                              f"(edges={vectors.shape[0]}, F, 3)")
    dtype = dE_dD.dtype
    g = torch.bmm(dE_dD[graph.i].unsqueeze(1), dD.to(dtype)).squeeze(1)  # (edges, 3)
    forces = torch.zeros((n_atoms, 3), dtype=dtype, device=g.device)
    forces = forces.index_add(0, graph.i, g).index_add(0, graph.j, -g)  # (atoms, 3)
    outer = vectors.to(dtype)[:, :, None] * g[:, None, :]  # (edges, 3, 3)
    dedeps = torch.zeros((graph.n_structures, 3, 3), dtype=dtype, device=g.device)
    return forces, dedeps.index_add(0, graph.edge_batch, outer)


@dataclasses.dataclass
class DescriptorData:
    """Descriptors of a list of structures, concatenated in their order.

    - ``values``: (atoms, F) | float64 (or the ``dtype`` asked) | dimensionless
    - ``derivatives``: (edges, F, 3) or None | ``derivative_dtype`` | 1/Angstrom;
      row e is d values[i_e] / d r_e
    - ``graph``: :class:`~forcefit.neighbors.Graph` of all structures (global atom indices;
      ``graph.edge_vectors()`` gives the r_e the derivatives refer to)
    - ``atom_offsets``: (structures + 1,) int64, atoms of structure s are
      ``atom_offsets[s]:atom_offsets[s+1]``; ``edge_offsets`` likewise for edges.
    """

    values: torch.Tensor
    derivatives: torch.Tensor | None
    graph: Graph
    atom_offsets: torch.Tensor
    edge_offsets: torch.Tensor

    def structure(self, s: int):
        """(values (atoms_s, F), derivatives (edges_s, F, 3) or None) of structure s, views."""
        a0, a1 = int(self.atom_offsets[s]), int(self.atom_offsets[s + 1])
        e0, e1 = int(self.edge_offsets[s]), int(self.edge_offsets[s + 1])
        der = None if self.derivatives is None else self.derivatives[e0:e1]
        return self.values[a0:a1], der


def estimate_bytes(n_atoms: int, n_edges: int, n_features: int, *, derivatives: bool = True,
                   dtype=torch.float64, derivative_dtype=None) -> int:
    """Bytes of the stored result: values + derivatives + graph (excluding transients)."""
    item = torch.empty((), dtype=dtype).element_size()
    ditem = torch.empty((), dtype=derivative_dtype or dtype).element_size()
    total = n_atoms * n_features * item + n_atoms * (3 * item + 16)
    total += n_edges * (16 + 8 + 3 * item)  # i, j, edge_batch, shift
    if derivatives:
        total += n_edges * n_features * 3 * ditem
    return int(total)


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def _graph_from_edges(structures: Sequence[Structure], edges, cutoff: float,
                      dtype: torch.dtype) -> Graph:
    nat = np.array([len(s) for s in structures], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(nat)[:-1]]).astype(np.int64)
    ne = np.array([len(e) for e in edges], dtype=np.int64)

    def cat(parts, tail=()):
        return np.concatenate(parts) if parts else np.zeros((0, *tail))

    return Graph(
        numbers=torch.as_tensor(cat([s.numbers for s in structures]).astype(np.int64)),
        positions=torch.as_tensor(cat([s.positions for s in structures], (3,)), dtype=dtype),
        batch=torch.as_tensor(np.repeat(np.arange(len(structures)), nat)),
        cell=torch.as_tensor(np.array([s.cell for s in structures]).reshape(-1, 3, 3),
                             dtype=dtype),
        pbc=torch.as_tensor(np.array([s.pbc for s in structures], dtype=bool).reshape(-1, 3)),
        n_atoms=torch.as_tensor(nat),
        i=torch.as_tensor(cat([e.i + o for e, o in zip(edges, offs)]).astype(np.int64)),
        j=torch.as_tensor(cat([e.j + o for e, o in zip(edges, offs)]).astype(np.int64)),
        shift=torch.as_tensor(cat([e.shift for e in edges], (3,)), dtype=dtype).reshape(-1, 3),
        edge_batch=torch.as_tensor(np.repeat(np.arange(len(structures)), ne)),
        cutoff=float(cutoff),
    )


def compute_dataset(descriptor_set: DescriptorSet, structures: Sequence[Structure], *,
                    derivatives: bool = True, dtype: torch.dtype = torch.float64,
                    derivative_dtype: torch.dtype | None = None, chunk_atoms: int = 4096,
                    progress: bool = True, max_bytes: int | None = None,
                    stream=None, chunk: int | None = None) -> DescriptorData:
    """Values (and derivatives) of ``descriptor_set`` for every structure, concatenated.

    Neighbour lists are built first; the memory of the result is then estimated and printed
    (to ``stream``, default stderr) before any descriptor is computed, and a
    ``MemoryError`` is raised if it exceeds ``max_bytes``. Structures are processed in
    chunks of whole structures of about ``chunk_atoms`` atoms (in float64), with a tqdm
    progress bar when ``progress``. ``derivative_dtype=torch.float32`` halves the storage of
    the derivatives (computed in float64, stored rounded).

    Errors name the structure (index and ``name``): overlapping atoms, unknown species.
    ``chunk`` is an alias of ``chunk_atoms`` (the name in the team's interface list).
    """
    if chunk is not None:
        chunk_atoms = chunk
    structures = list(structures)
    if not structures:
        raise DescriptorError("compute_dataset: no structures given")
    if int(chunk_atoms) < 1:
        raise DescriptorError(f"chunk_atoms must be >= 1, got {chunk_atoms}")
    derivative_dtype = derivative_dtype or dtype
    stream = sys.stderr if stream is None else stream
    known = set(descriptor_set.species)
    edges = []
    for n, s in enumerate(structures):
        if not isinstance(s, Structure):
            raise DescriptorError(f"structure {n}: expected a forcefit Structure, got "
                                  f"{type(s).__name__}")
        unknown = sorted({int(z) for z in np.unique(s.numbers)} - known)
        if unknown:
            from ase.data import chemical_symbols
            raise DescriptorError(
                f"structure {n} ({s.name or 'unnamed'}): species "
                f"{', '.join(chemical_symbols[z] for z in unknown)} not in the descriptor set "
                f"({', '.join(chemical_symbols[z] for z in sorted(known))})")
        try:
            edges.append(neighbor_list(s, descriptor_set.cutoff))
        except StructureError as err:
            raise DescriptorError(f"structure {n}: {err}") from None
    nat = np.array([len(s) for s in structures])
    ne = np.array([len(e) for e in edges])
    need = estimate_bytes(int(nat.sum()), int(ne.sum()), descriptor_set.n_features,
                          derivatives=derivatives, dtype=dtype,
                          derivative_dtype=derivative_dtype)
    print(f"forcefit descriptors: {len(structures)} structures, {int(nat.sum())} atoms, "
          f"{int(ne.sum())} edges, {descriptor_set.n_features} features: about "
          f"{_human(need)} to store"
          + (f" (derivatives in {str(derivative_dtype).replace('torch.', '')})"
             if derivatives else " (no derivatives)"), file=stream, flush=True)
    if max_bytes is not None and need > max_bytes:
        raise MemoryError(f"compute_dataset: the result needs about {_human(need)}, more than "
                          f"max_bytes={_human(max_bytes)}; use derivative_dtype=torch.float32, "
                          "derivatives=False or fewer structures per call")
    graph = _graph_from_edges(structures, edges, descriptor_set.cutoff, dtype)
    atom_off = np.concatenate([[0], np.cumsum(nat)])
    edge_off = np.concatenate([[0], np.cumsum(ne)])
    values = torch.empty((int(nat.sum()), descriptor_set.n_features), dtype=dtype)
    ders = None
    if derivatives:
        ders = torch.empty((int(ne.sum()), descriptor_set.n_features, 3),
                           dtype=derivative_dtype)
    # chunks of whole structures of about chunk_atoms atoms
    bounds = [0]
    acc = 0
    for n, k in enumerate(nat.tolist()):
        acc += k
        if acc >= chunk_atoms:
            bounds.append(n + 1)
            acc = 0
    if bounds[-1] != len(structures):
        bounds.append(len(structures))
    names = [s.name for s in structures]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(structures), unit="structure", desc="descriptors", file=stream)
    try:
        for s0, s1 in itertools.pairwise(bounds):
            sub = _graph_from_edges(structures[s0:s1], edges[s0:s1], descriptor_set.cutoff,
                                    torch.float64)
            with torch.no_grad():
                try:
                    d, dd = descriptor_set._evaluate(sub, sub.edge_vectors(), derivatives,
                                                     names=names[s0:s1])
                except DescriptorError as err:
                    raise DescriptorError(f"{err} (structure numbers count within the chunk "
                                          f"of dataset structures {s0}..{s1 - 1})") from None
            values[atom_off[s0]:atom_off[s1]] = d.to(dtype)
            if derivatives:
                ders[edge_off[s0]:edge_off[s1]] = dd.to(derivative_dtype)
            if bar is not None:
                bar.update(s1 - s0)
    finally:
        if bar is not None:
            bar.close()
    return DescriptorData(values=values, derivatives=ders, graph=graph,
                          atom_offsets=torch.as_tensor(atom_off, dtype=torch.int64),
                          edge_offsets=torch.as_tensor(edge_off, dtype=torch.int64))
