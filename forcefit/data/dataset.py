"""A dataset of labelled structures with descriptors and their derivatives cached once.

Units: lengths Angstrom, energies eV (total per structure), forces eV/Angstrom, stress
eV/Angstrom^3 (ASE sign, positive is tensile), descriptors in the descriptor set's own units.

Storage is compact: every per-atom and per-edge array of all structures is concatenated, and
``atom_offsets`` / ``edge_offsets`` (structures + 1,) give each structure's slice. Edge indices
``i``, ``j`` are stored *local* to their structure and re-offset when a batch is collated.

Fields of :class:`FeatureDataset` (shape | dtype | unit):

- ``numbers`` (atoms,) int64; ``positions`` (atoms, 3) float64 | A
- ``cell`` (S, 3, 3) | A; ``pbc`` (S, 3) bool; ``n_atoms`` (S,) int64
- ``i``, ``j`` (edges,) int64 local centre / neighbour; ``shift`` (edges, 3) float64;
  ``vectors`` (edges, 3) float64 | A, r_ij = r_j - r_i + shift @ cell
- ``values`` (atoms, F) descriptor values D; ``derivatives`` (edges, F, 3) or None:
  dD[e] = dD_{i_e} / dr_e for the edge e with centre i_e (float32 storage is an option).
  Stored edge-major with the Cartesian axis before the feature axis, (edges, 3, F) in memory,
  and exposed as its (edges, F, 3) transposed view: the force contraction then reads each
  edge's three rows of F contiguous numbers (``dd.transpose(1, 2)`` is contiguous).
- ``energy`` (S,) eV, ``forces`` (atoms, 3) eV/A, ``stress`` (S, 3, 3) eV/A^3, zero where the
  label is missing, with masks ``has_energy`` (S,), ``has_forces`` (S,), ``has_stress`` (S,)
- ``prior_energy`` (S,), ``prior_forces`` (atoms, 3), ``prior_stress`` (S, 3, 3): the reference
  potential (e.g. ZBL) evaluated once; the model learns label - prior
- ``weights`` (S, 3): (energy, force, stress) loss weights (see :mod:`forcefit.data.groups`)
- ``names``, ``groups``: lists of str (S,)

How miniff's containers map onto this: miniff's ``PerCellDataset`` holds per-structure
quantities (total ``energy`` (S, 1)) and ``PerPointDataset`` holds per-atom ones (``features``
(S, atoms_max, F) padded, with a ``mask`` (S, atoms_max) of real atoms). Here the per-cell
pieces are the (S,) / (S, 3, 3) fields (energy, stress, masks, weights), and the per-point pieces
are the concatenated per-atom fields (values, forces, numbers) with ``atom_offsets`` replacing
padding and the mask: ``values[atom_offsets[s]:atom_offsets[s+1]]`` is miniff's
``features[s, mask[s] > 0]``. miniff's one-PerPointDataset-per-species becomes the ``numbers``
column (the models select per species). :meth:`FeatureDataset.from_tensors` builds a dataset
from such generic feature tensors directly (no geometry), as in miniff's toy fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..neighbors import Graph, build_graph, neighbor_list
from ..structure import Structure


@dataclasses.dataclass
class Batch:
    """Whole structures concatenated; atom/edge indices global within the batch.

    ``graph`` is a :class:`~forcefit.neighbors.Graph` (numbers, positions, batch, cell, pbc,
    n_atoms, i, j, shift, edge_batch) and ``vectors`` (edges, 3) its edge vectors.
    ``index`` (S,) are the dataset indices of the structures; the other fields are the
    dataset's fields restricted to them (see :class:`FeatureDataset`).
    """

    index: torch.Tensor
    graph: Graph
    vectors: torch.Tensor
    values: torch.Tensor
    derivatives: torch.Tensor | None
    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    has_energy: torch.Tensor
    has_forces: torch.Tensor
    has_stress: torch.Tensor
    prior_energy: torch.Tensor
    prior_forces: torch.Tensor
    prior_stress: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_atoms(self) -> torch.Tensor:
        return self.graph.n_atoms


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of arange(starts[k], starts[k] + counts[k]) over k, without a loop."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64)
    first = torch.cumsum(counts, 0) - counts  # (k,) position of each range in the output
    base = torch.repeat_interleave(starts - first, counts)  # (total,)
    return base + torch.arange(total, dtype=torch.int64)


def _offsets(counts) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(counts, dtype=np.int64))
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(c, 0)])


class FeatureDataset:
    """Concatenated structures, labels, cached descriptors (see the module docstring).

    Build with :meth:`build` (structures + descriptor set) or :meth:`from_tensors` (generic
    per-atom features). Items are structure indices; :meth:`collate` turns a list of them into a
    :class:`Batch`. ``len(dataset)`` is the number of structures.
    """

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)
        if getattr(self, "derivatives", None) is not None:
            self.derivatives = _cartesian_major(self.derivatives)
        self.atom_offsets = _offsets(self.n_atoms)  # (S + 1,)
        self.edge_offsets = _offsets(self.n_edges)  # (S + 1,)

    # -- construction ---------------------------------------------------------
    @classmethod
    def build(
        cls,
        structures: Sequence[Structure],
        descriptor_set,
        *,
        prior: torch.nn.Module | None = None,
        derivatives: bool = True,
        dtype: torch.dtype = torch.float64,
        derivative_dtype: torch.dtype | None = None,
        weights: np.ndarray | None = None,
        chunk: int = 64,
        progress: bool = False,
    ) -> FeatureDataset:
        """Compute descriptors (and per-edge derivatives) of ``structures`` once.

        ``dtype`` is the storage type of the values, ``derivative_dtype`` (default ``dtype``)
        that of dD (float32 halves the dominant memory). ``prior`` is evaluated once here.
        ``weights`` (S, 3) loss weights; default: ones times ``Structure.weight``.
        """
        structures = list(structures)
        if not structures:
            raise ValueError("cannot build a dataset from an empty list of structures")
        derivative_dtype = derivative_dtype or dtype
        cutoff = float(descriptor_set.cutoff)
        edges = [neighbor_list(s, cutoff) for s in structures]
        geo = cls._geometry(structures, edges)
        values, dd = _compute_descriptors(
            descriptor_set, structures, derivatives, dtype, derivative_dtype, chunk, progress,
            n_atoms=geo["n_atoms"], n_edges=geo["n_edges"],
        )
        labels = cls._labels(structures)
        if weights is None:
            own = np.array([s.weight for s in structures])  # (structures,)
            weights = np.ones((len(structures), 3)) * own[:, None]
        ds = cls(values=values, derivatives=dd,
                 weights=torch.as_tensor(weights, dtype=torch.float64),
                 names=[s.name or f"structure_{k}" for k, s in enumerate(structures)],
                 groups=[s.group for s in structures], cutoff=cutoff, **geo, **labels)
        ds._set_prior(prior, structures, chunk)
        return ds

    @classmethod
    def from_tensors(
        cls,
        values: torch.Tensor,
        n_atoms: Sequence[int],
        *,
        energy: torch.Tensor | None = None,
        numbers: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
    ) -> FeatureDataset:
        """Dataset of generic per-atom features (atoms, F) with per-structure energies (S,).

        No geometry: no edges, no derivatives, no force or stress labels (miniff's
        ``PerPointDataset`` features + ``PerCellDataset`` energy). ``numbers`` defaults to 1.
        """
        values = torch.as_tensor(values)
        if values.ndim != 2:
            raise ValueError(f"values: expected shape (atoms, features), got {tuple(values.shape)}")
        nat = np.asarray(n_atoms, dtype=np.int64)
        if nat.sum() != values.shape[0]:
            raise ValueError(f"n_atoms sums to {nat.sum()} but values has {values.shape[0]} rows")
        s, n = len(nat), int(nat.sum())
        numbers = torch.ones(n, dtype=torch.int64) if numbers is None else torch.as_tensor(numbers)
        e = torch.zeros(s, dtype=torch.float64) if energy is None else torch.as_tensor(
            energy, dtype=torch.float64).reshape(-1)
        if e.shape != (s,):
            raise ValueError(f"energy: expected shape ({s},), got {tuple(e.shape)}")
        z = torch.zeros
        return cls(
            numbers=numbers.to(torch.int64), positions=z(n, 3, dtype=torch.float64),
            cell=z(s, 3, 3, dtype=torch.float64), pbc=z(s, 3, dtype=torch.bool),
            n_atoms=torch.as_tensor(nat), n_edges=torch.zeros(s, dtype=torch.int64),
            i=z(0, dtype=torch.int64), j=z(0, dtype=torch.int64),
            shift=z(0, 3, dtype=torch.float64), vectors=z(0, 3, dtype=torch.float64),
            values=values, derivatives=None,
            energy=e, has_energy=torch.full((s,), energy is not None),
            forces=z(n, 3, dtype=torch.float64), has_forces=torch.zeros(s, dtype=torch.bool),
            stress=z(s, 3, 3, dtype=torch.float64), has_stress=torch.zeros(s, dtype=torch.bool),
            prior_energy=z(s, dtype=torch.float64), prior_forces=z(n, 3, dtype=torch.float64),
            prior_stress=z(s, 3, 3, dtype=torch.float64),
            weights=torch.ones(s, 3, dtype=torch.float64),
            names=list(names) if names else [f"structure_{k}" for k in range(s)],
            groups=list(groups) if groups else ["default"] * s, cutoff=0.0,
        )

    @staticmethod
    def _geometry(structures, edges) -> dict:
        def t(parts, dt):
            return torch.as_tensor(np.concatenate(parts), dtype=dt)

        vec = t([e.vectors for e in edges], torch.float64)  # (edges, 3)
        return dict(
            numbers=t([s.numbers for s in structures], torch.int64),
            positions=t([s.positions for s in structures], torch.float64),
            cell=torch.as_tensor(np.array([s.cell for s in structures]), dtype=torch.float64),
            pbc=torch.as_tensor(np.array([s.pbc for s in structures], dtype=bool)),
            n_atoms=torch.as_tensor([len(s) for s in structures], dtype=torch.int64),
            n_edges=torch.as_tensor([len(e) for e in edges], dtype=torch.int64),
            i=t([e.i for e in edges], torch.int64), j=t([e.j for e in edges], torch.int64),
            shift=t([e.shift for e in edges], torch.float64), vectors=vec,
        )

    @staticmethod
    def _labels(structures) -> dict:
        s = len(structures)
        energy = np.array([st.energy if st.energy is not None else 0.0 for st in structures])
        forces = np.concatenate([st.forces if st.forces is not None else np.zeros((len(st), 3))
                                 for st in structures])
        stress = np.array([st.stress if st.stress is not None else np.zeros((3, 3))
                           for st in structures]).reshape(s, 3, 3)
        return dict(
            energy=torch.as_tensor(energy, dtype=torch.float64),
            forces=torch.as_tensor(forces, dtype=torch.float64),
            stress=torch.as_tensor(stress, dtype=torch.float64),
            has_energy=torch.as_tensor([st.energy is not None for st in structures]),
            has_forces=torch.as_tensor([st.forces is not None for st in structures]),
            has_stress=torch.as_tensor([st.stress is not None and bool(st.pbc.all())
                                        for st in structures]),
        )

    def _set_prior(self, prior, structures, chunk) -> None:
        n, s = int(self.n_atoms.sum()), len(self)
        self.prior_energy = torch.zeros(s, dtype=torch.float64)
        self.prior_forces = torch.zeros(n, 3, dtype=torch.float64)
        self.prior_stress = torch.zeros(s, 3, 3, dtype=torch.float64)
        if prior is None:
            return
        from ..potentials.base import evaluate

        prior = prior.to(torch.float64)
        for start in range(0, s, chunk):  # chunks of structures: bounded memory, done once
            part = structures[start:start + chunk]
            out = evaluate(prior, build_graph(part, prior.cutoff), forces=True, stress=True)
            a0, a1 = int(self.atom_offsets[start]), int(self.atom_offsets[start + len(part)])
            self.prior_energy[start:start + len(part)] = out["energy"].detach()
            self.prior_forces[a0:a1] = out["forces"].detach()
            self.prior_stress[start:start + len(part)] = out["stress"].detach()

    # -- access ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def nbytes(self) -> int:
        """Bytes held by the tensors of the dataset."""
        return sum(v.numel() * v.element_size() for v in self.__dict__.values()
                   if isinstance(v, torch.Tensor))

    def set_weights(self, weights) -> None:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if w.shape != (len(self), 3):
            raise ValueError(f"weights: expected shape ({len(self)}, 3), got {tuple(w.shape)}")
        self.weights = w

    def atom_slice(self, k: int) -> slice:
        return slice(int(self.atom_offsets[k]), int(self.atom_offsets[k + 1]))

    def collate(self, items) -> Batch:
        """Concatenate whole structures ``items`` (dataset indices) into a :class:`Batch`."""
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64).reshape(-1))
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"structure index out of range [0, {len(self)}): {idx.tolist()}")
        nat = self.n_atoms[idx]  # (S,)
        ned = self.n_edges[idx]  # (S,)
        atoms = _ranges(self.atom_offsets[idx], nat)  # (atoms,) rows into the atom arrays
        edges = _ranges(self.edge_offsets[idx], ned)  # (edges,) rows into the edge arrays
        new_off = torch.cumsum(nat, 0) - nat  # (S,) first atom of each structure in the batch
        s_of_atom = torch.repeat_interleave(torch.arange(len(idx)), nat)  # (atoms,)
        s_of_edge = torch.repeat_interleave(torch.arange(len(idx)), ned)  # (edges,)
        shift_e = new_off[s_of_edge]  # (edges,)
        graph = Graph(
            numbers=self.numbers[atoms], positions=self.positions[atoms], batch=s_of_atom,
            cell=self.cell[idx], pbc=self.pbc[idx], n_atoms=nat,
            i=self.i[edges] + shift_e, j=self.j[edges] + shift_e, shift=self.shift[edges],
            edge_batch=s_of_edge, cutoff=float(getattr(self, "cutoff", 0.0)),
        )
        return Batch(
            index=idx, graph=graph, vectors=self.vectors[edges], values=self.values[atoms],
            derivatives=(None if self.derivatives is None
                         else _take_edges(self.derivatives, edges)),
            energy=self.energy[idx], forces=self.forces[atoms], stress=self.stress[idx],
            has_energy=self.has_energy[idx], has_forces=self.has_forces[idx],
            has_stress=self.has_stress[idx], prior_energy=self.prior_energy[idx],
            prior_forces=self.prior_forces[atoms], prior_stress=self.prior_stress[idx],
            weights=self.weights[idx],
        )

    def collate_many(self, groups: Sequence[Sequence[int]],
                     dtype: torch.dtype | None = None) -> list[Batch]:
        """``[collate(g) for g in groups]``, bit for bit, with every field gathered once for all
        groups (one index op per field for a whole epoch) and each batch a view of the result
        (contiguous slices; only the atom / structure indices of a batch are recomputed).
        The trainer calls it once per epoch: per-step collation is then a few slices.
        ``dtype``: cast the floating-point labels, priors, weights and edge vectors to it once
        here (the training precision) instead of in every step's loss; the descriptor values
        and derivatives keep their cached dtype."""
        sizes = torch.as_tensor([len(g) for g in groups], dtype=torch.int64)  # (B,)
        flat = [int(x) for g in groups for x in g]
        idx = torch.as_tensor(np.asarray(flat, dtype=np.int64).reshape(-1))  # (S_all,)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"structure index out of range [0, {len(self)}): {flat}")
        nat, ned = self.n_atoms[idx], self.n_edges[idx]  # (S_all,)
        atoms = _ranges(self.atom_offsets[idx], nat)  # (atoms_all,)
        edges = _ranges(self.edge_offsets[idx], ned)  # (edges_all,)
        s_start = torch.cumsum(sizes, 0) - sizes  # (B,) first structure of each batch
        a_cum = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(nat, 0)])  # (S_all+1,)
        e_cum = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(ned, 0)])
        s_all = torch.arange(len(idx))  # (S_all,)
        s_of_atom = torch.repeat_interleave(s_all, nat)  # (atoms_all,)
        s_of_edge = torch.repeat_interleave(s_all, ned)  # (edges_all,)
        b_of_s = torch.repeat_interleave(torch.arange(len(groups)), sizes)  # (S_all,)
        # edge centre / neighbour relative to the first atom of the edge's batch
        base = (a_cum[:-1] - a_cum[s_start[b_of_s]])[s_of_edge]  # (edges_all,)
        i_all, j_all = self.i[edges] + base, self.j[edges] + base  # (edges_all,)
        s_local_atom = s_of_atom - s_start[b_of_s][s_of_atom]  # (atoms_all,)
        s_local_edge = s_of_edge - s_start[b_of_s][s_of_edge]  # (edges_all,)
        def take(name, rows):  # index_select: the same rows as v[rows], ~4x faster on CPU
            return getattr(self, name).index_select(0, rows)

        def cast(name, rows):
            v = take(name, rows)
            return v if dtype is None else v.to(dtype)

        per_atom = {k: take(k, atoms) for k in ("numbers", "positions", "values")}
        per_atom.update({k: cast(k, atoms) for k in ("forces", "prior_forces")})
        per_edge = {"shift": take("shift", edges), "vectors": cast("vectors", edges)}
        deriv = None if self.derivatives is None else _take_edges(self.derivatives, edges)
        per_s = {k: take(k, idx) for k in
                 ("cell", "pbc", "has_energy", "has_forces", "has_stress")}
        per_s.update({k: cast(k, idx) for k in
                      ("energy", "stress", "prior_energy", "prior_stress", "weights")})
        cutoff = float(getattr(self, "cutoff", 0.0))
        out = []
        bounds = torch.cat([s_start, sizes.sum().reshape(1)]).tolist()  # (B+1,)
        a_b, e_b = a_cum[bounds].tolist(), e_cum[bounds].tolist()
        for k in range(len(groups)):  # slices only: views into the epoch's arrays
            s0, s1 = bounds[k], bounds[k + 1]
            a0, a1, e0, e1 = a_b[k], a_b[k + 1], e_b[k], e_b[k + 1]
            ps = {n: v[s0:s1] for n, v in per_s.items()}
            graph = Graph(
                numbers=per_atom["numbers"][a0:a1], positions=per_atom["positions"][a0:a1],
                batch=s_local_atom[a0:a1], cell=ps["cell"], pbc=ps["pbc"], n_atoms=nat[s0:s1],
                i=i_all[e0:e1], j=j_all[e0:e1], shift=per_edge["shift"][e0:e1],
                edge_batch=s_local_edge[e0:e1], cutoff=cutoff)
            out.append(Batch(
                index=idx[s0:s1], graph=graph, vectors=per_edge["vectors"][e0:e1],
                values=per_atom["values"][a0:a1],
                derivatives=None if deriv is None else deriv[e0:e1], energy=ps["energy"],
                forces=per_atom["forces"][a0:a1], stress=ps["stress"],
                has_energy=ps["has_energy"], has_forces=ps["has_forces"],
                has_stress=ps["has_stress"], prior_energy=ps["prior_energy"],
                prior_forces=per_atom["prior_forces"][a0:a1], prior_stress=ps["prior_stress"],
                weights=ps["weights"]))
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the geometry and labels (the "hash of the training data")."""
        h = hashlib.sha256()
        for name in ("numbers", "positions", "cell", "pbc", "energy", "forces", "stress",
                     "has_energy", "has_forces", "has_stress", "values"):
            t = getattr(self, name).detach().cpu().contiguous()
            h.update(name.encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()


def structures_hash(structures: Sequence[Structure]) -> str:
    """SHA-256 over geometry and labels of ``structures`` (order-sensitive)."""
    h = hashlib.sha256()
    for s in structures:
        for a in (s.numbers, s.positions, s.cell, s.pbc, s.forces, s.stress):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(s.energy).encode())
    return h.hexdigest()


def _cartesian_major(dd: torch.Tensor) -> torch.Tensor:
    """(edges, F, 3) with (edges, 3, F) memory layout (see the module docstring)."""
    t = dd.transpose(1, 2)
    return dd if t.is_contiguous() else t.contiguous().transpose(1, 2)


def _take_edges(dd: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``dd[rows]`` keeping the (edges, 3, F) memory layout."""
    return dd.transpose(1, 2).index_select(0, rows).transpose(1, 2)


def _normalise_result(result, n_atoms, n_edges, derivatives):
    """Turn what ``compute_dataset`` returned into concatenated (D, dD)."""
    if isinstance(result, dict):
        result = (result.get("values", result.get("D")),
                  result.get("derivatives", result.get("dD")))
    if (hasattr(result, "values") and hasattr(result, "derivatives")
            and not isinstance(result, tuple)):
        result = (result.values, result.derivatives)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor):
        return result[0], result[1]
    if isinstance(result, (list, tuple)) and result and isinstance(result[0], (tuple, list)):
        vals = torch.cat([r[0] for r in result])
        dd = torch.cat([r[1] for r in result]) if derivatives else None
        return vals, dd
    raise TypeError(f"unrecognised compute_dataset result of type {type(result).__name__}")


def _compute_descriptors(dset, structures, derivatives, dtype, ddtype, chunk, progress,
                         *, n_atoms, n_edges):
    """Concatenated D (atoms, F) and dD (edges, F, 3) for ``structures``.

    Goes through ``forcefit.descriptors.compute_dataset`` when available; otherwise (or for a
    descriptor object of another family that only follows the protocol) computes chunks of
    whole structures with ``dset.compute(graph, derivatives)``.
    """
    n_at, n_ed = int(n_atoms.sum()), int(n_edges.sum())
    vals = dd = None
    try:
        from ..descriptors import compute_dataset
    except ImportError:
        compute_dataset = None
    if compute_dataset is not None and type(dset).__module__.startswith("forcefit.descriptors"):
        try:
            res = compute_dataset(dset, structures, derivatives=derivatives, dtype=dtype,
                                  derivative_dtype=ddtype, progress=progress)
            vals, dd = _normalise_result(res, n_atoms, n_edges, derivatives)
        except TypeError as err:
            warnings.warn(f"compute_dataset result not understood ({err}); computing per chunk",
                          stacklevel=2)
            vals = dd = None
    if vals is None:
        parts_v, parts_d = [], []
        for start in range(0, len(structures), chunk):
            graph = build_graph(structures[start:start + chunk], dset.cutoff, dtype=dtype)
            v, d = dset.compute(graph, derivatives=derivatives)
            parts_v.append(v.detach())
            if derivatives:
                parts_d.append(d.detach().to(ddtype))
        vals = torch.cat(parts_v)
        dd = torch.cat(parts_d) if derivatives else None
    vals = vals.detach().to(dtype)
    if tuple(vals.shape[:1]) != (n_at,):
        raise ValueError(f"descriptor values have {vals.shape[0]} rows, expected {n_at} atoms")
    if derivatives:
        if dd is None or dd.shape[0] != n_ed or dd.shape[1:] != (vals.shape[1], 3):
            got = None if dd is None else tuple(dd.shape)
            raise ValueError(f"descriptor derivatives have shape {got}, expected "
                             f"({n_ed}, {vals.shape[1]}, 3)")
        dd = dd.detach().to(ddtype)
    if not torch.isfinite(vals).all():
        bad = int(torch.nonzero(~torch.isfinite(vals).all(1))[0])
        s = int(np.searchsorted(np.cumsum(n_atoms.numpy()), bad, side="right"))
        raise ValueError(f"descriptor values not finite for structure {structures[s].name or s}")
    return vals, dd
