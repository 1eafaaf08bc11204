"""Atom-centred symmetry functions (Behler-Parrinello) and miniff's sigmoid family.

Units: distances and the cutoff in Angstrom; eta in 1/Angstrom^2; r_s, r0 and dr in
Angstrom; zeta and lambda are dimensionless. Descriptor values are dimensionless (sums of
dimensionless terms); derivatives dD/dr_ij are in 1/Angstrom.

Index names (as in :mod:`forcefit.structure`): ``atoms`` (N), ``edges`` (E, directed pairs
i->j of the full neighbour list), ``pairs`` (T, ordered pairs of edges (i->j, i->k) with the
same centre i and j != k, the "triplets"), ``features`` (F), ``species`` (S_p, the species of
the set), ``species pairs`` (unordered, S_p (S_p + 1) / 2).

Families (fc is the cutoff function of the set, see :mod:`forcefit.descriptors.cutoff`;
r_ij = |r_j - r_i|, cos theta_ijk = r_ij . r_ik / (r_ij r_ik)):

- ``G1`` (Behler 2011, eq. 5):  G1_i = sum_j fc(r_ij)
- ``G2`` (Behler 2011, eq. 6):  G2_i = sum_j exp(-eta (r_ij - r_s)^2) fc(r_ij)
- ``sigmoid`` (miniff's ``sigmoid_descriptor_family``, miniff docs "Computing descriptors"):
  S_i = sum_j fc(r_ij) / (1 + exp((r_ij - r0) / dr))
- ``G4`` (Behler 2011, eq. 8):
  G4_i = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
         exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) fc(r_ij) fc(r_ik) fc(r_jk),
  only triplets with r_jk < rc contribute (fc(r_jk) = 0 beyond).
- ``G5`` (Behler 2011, eq. 9):
  G5_i = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
         exp(-eta (r_ij^2 + r_ik^2)) fc(r_ij) fc(r_ik).

**Summation convention.** The angular sums run over *unordered* pairs of neighbours {j, k}
(j < k, each pair once), as DScribe (``dscribe/ext/acsf.cpp``, ``k < j`` loop) and n2p2 do.
Behler's 2011 paper writes the sum over all j, k != i, which double counts: his values are
twice ours. Periodic images are distinct neighbours.

**Species.** Radial functions come once per neighbour species; angular functions once per
unordered pair of neighbour species. The centre's species is not encoded (as in DScribe);
fit one network per centre species. Column layout (DScribe's, so its output is comparable
column by column): for each species s in ascending Z: [G1, G2..., sigmoid...]; then for each
unordered species pair (a <= b) in the order (0,0), (0,1), (1,1), (0,2), (1,2), (2,2), ...:
[G4..., G5...]. :meth:`DescriptorSet.layout` lists every column.

**Derivatives.** ``compute`` returns dD[e] = d D[i_e] / d r_e for each edge e (centre i_e),
shape (edges, features, 3); D_i depends only on the edges centred on i. For an angular term
g(r_ij, r_ik) of an ordered pair (j, k) (with v1 = r_ij, v2 = r_ik, r3 = |v2 - v1|,
c = cos theta):

    dg/dv1 = v1 [g_r1 / r1 + g_r3 / r3 - g_c c / r1^2] + v2 [g_c / (r1 r2) - g_r3 / r3]

and since D_i sums g over unordered pairs of a symmetric g, dD_i/dv_e sums dg/dv1 over the
ordered pairs whose first edge is e. Angular parts (per (zeta, lambda)) and distance parts
(per eta) are separable, so the sum over k is a batched matrix product per edge
(edges, zeta-lambda, k) @ (edges, k, eta x blocks), never an (pairs, features, 3) array.
Edges are bucketed by their number of partners k so that the padding stays small.

**Values only** (``values`` and ``compute(derivatives=False)``) sum the unordered pairs of
each centre, padded per centre, with the same separable product: an implementation
independent of the per-edge one, and the tests hold the two against each other.

**Implementation notes.** Triplets come from the centre-sorted edge list: each centre's
edges are padded into a (centres, n_max) block, r_jk^2 = r_ij^2 + r_ik^2 - 2 r_ij . r_ik
from one batched Gram product selects the pairs with r_jk < rc (G4), and all index arrays
are built with torch ops (no Python loop over atoms; a loop over a few chunks of centres
bounds the memory, see ``PAIR_BUDGET``). The per-pair arithmetic lives in pure functions
(:func:`_pair_sums`, :func:`_centre_sums`) that ``torch.compile`` can fuse
(``DescriptorSet(..., compiled=True)``).

**Backends.** ``compute`` (and ``values`` of vectors that do not require grad) on CPU runs
by default through compiled loops (:mod:`forcefit.descriptors._numba`, ``backend="numba"``,
chosen by ``backend="auto"`` when numba is installed): per centre, each unordered pair is
visited once, the exponential is computed once per distinct eta and the angular power once
per distinct (zeta, lambda), and the (eta x zeta-lambda) grid of columns is a product of
the two; values and per-edge derivatives accumulate in per-centre buffers, so nothing of
size (pairs, features) is ever stored. The torch kernels above remain the autograd and GPU
path and the fallback without numba; the tests hold the two to 1e-12 relative.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols

from ..neighbors import Graph
from . import _numba
from .cutoff import CUTOFF_FUNCTIONS, cutoff_function

#: Edges shorter than this (Angstrom) mean overlapping atoms.
MIN_DISTANCE = 1e-6
#: Ordered neighbour pairs (sum of n_i^2 over centres) handled at once; bounds the memory.
PAIR_BUDGET = 3_000_000

#: Kernel choices of :class:`DescriptorSet` (``backend=``).
BACKENDS = ("auto", "torch", "numba")

RADIAL_FAMILIES = ("G1", "G2", "sigmoid")
ANGULAR_FAMILIES = ("G4", "G5")
_PARAM_NAMES = {"G1": (), "G2": ("eta", "rs"), "sigmoid": ("r0", "dr"),
                "G4": ("eta", "zeta", "lambda"), "G5": ("eta", "zeta", "lambda")}


class DescriptorError(ValueError):
    """Bad descriptor parameters or input; the message names the parameter or structure."""


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _as_rows(name: str, rows, width: int) -> list[tuple[float, ...]]:
    out = []
    for n, row in enumerate(rows or ()):
        try:
            vals = tuple(float(x) for x in row)
        except (TypeError, ValueError) as err:
            raise DescriptorError(f"{name}[{n}]: not a row of numbers ({err})") from None
        if len(vals) != width:
            raise DescriptorError(f"{name}[{n}]: expected {width} numbers "
                                  f"({', '.join(_PARAM_NAMES[name])}), got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise DescriptorError(f"{name}[{n}]: not finite: {vals}")
        out.append(vals)
    return out


class DescriptorSet:
    """A set of symmetry functions with one cutoff and one cutoff function.

    Parameters
    ----------
    cutoff: radius rc in Angstrom (> 0).
    species: atomic numbers (or symbols) the set knows; stored sorted ascending.
    g1: include G1 = sum fc per neighbour species.
    g2: rows (eta [1/A^2] > 0, r_s [A]).
    sigmoid: rows (r0 [A], dr [A] > 0).
    g4, g5: rows (eta [1/A^2] >= 0, zeta >= 1, lambda in {-1, +1}). eta = 0 is allowed for
        the angular families (RuNNer/n2p2 parameter files use it routinely); negative eta,
        and eta = 0 for G2 (that is G1), are refused.
    cutoff_function: ``"cosine"`` or ``"polynomial"``.
    compiled: run the per-pair arithmetic through ``torch.compile`` (fused loops, several
        times faster on CPU after a one-off compilation of tens of seconds; falls back to
        eager with a warning if no compiler works). A runtime choice, not saved in
        :meth:`to_config`; it can be switched on an existing set (``dset.compiled = True``).
        It applies to the torch kernels (autograd, GPU, ``backend="torch"``), not to numba.
    backend: kernels of ``compute`` (and of ``values`` for vectors that do not require
        grad) on CPU tensors: ``"numba"`` (compiled loops of
        :mod:`forcefit.descriptors._numba`, computed in float64; needs numba, the optional
        ``fast`` extra), ``"torch"`` (the vectorised torch kernels), or ``"auto"`` (numba
        when it is installed, else torch). Autograd and non-CPU tensors always use torch.
        Both give the same numbers (tested to 1e-12 relative). A runtime choice like
        ``compiled``, not saved in :meth:`to_config`; settable (``dset.backend = "torch"``).
    """

    def __init__(self, cutoff: float, species: Sequence[int | str], *, g1: bool = False,
                 g2=(), sigmoid=(), g4=(), g5=(), cutoff_function: str = "cosine",
                 compiled: bool = False, backend: str = "auto"):
        try:
            cutoff = float(cutoff)
        except (TypeError, ValueError):
            raise DescriptorError(f"cutoff: not a number: {cutoff!r}") from None
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise DescriptorError(f"cutoff must be positive and finite, got {cutoff}")
        if cutoff_function not in CUTOFF_FUNCTIONS:
            raise DescriptorError(f"cutoff_function: unknown {cutoff_function!r}; choose "
                                  f"one of {', '.join(CUTOFF_FUNCTIONS)}")
        self.cutoff = cutoff
        self.cutoff_function = cutoff_function
        self.compiled = bool(compiled)
        self.backend = backend
        self.species = self._parse_species(species)
        self.g1 = bool(g1)
        self.g2 = _as_rows("G2", g2, 2)
        self.sigmoid = _as_rows("sigmoid", sigmoid, 2)
        self.g4 = _as_rows("G4", g4, 3)
        self.g5 = _as_rows("G5", g5, 3)
        for n, (eta, _rs) in enumerate(self.g2):
            if not eta > 0:
                raise DescriptorError(f"G2[{n}]: eta must be positive, got {eta} "
                                      "(eta = 0 is G1: pass g1=True)")
        for n, (_r0, dr) in enumerate(self.sigmoid):
            if not dr > 0:
                raise DescriptorError(f"sigmoid[{n}]: dr must be positive, got {dr}")
        for fam, rows in (("G4", self.g4), ("G5", self.g5)):
            for n, (eta, zeta, lam) in enumerate(rows):
                if eta < 0:
                    raise DescriptorError(f"{fam}[{n}]: eta must be >= 0, got {eta}")
                if zeta < 1:
                    raise DescriptorError(f"{fam}[{n}]: zeta must be >= 1, got {zeta}")
                if lam not in (-1.0, 1.0):
                    raise DescriptorError(f"{fam}[{n}]: lambda must be -1 or +1, got {lam}")
        self.n_species = len(self.species)
        self.n_radial = int(self.g1) + len(self.g2) + len(self.sigmoid)
        self.n_angular = len(self.g4) + len(self.g5)
        # unordered species pairs in DScribe's order: (a, b), a <= b, sorted by b then a
        self.species_pairs = [(a, b) for b in range(self.n_species) for a in range(b + 1)]
        self.n_pairs = len(self.species_pairs)
        table = torch.zeros((self.n_species, self.n_species), dtype=torch.int64)
        for p, (a, b) in enumerate(self.species_pairs):
            table[a, b] = table[b, a] = p
        self._pair_table = table  # (species, species) -> species-pair index
        self.n_features = self.n_species * self.n_radial + self.n_pairs * self.n_angular
        if self.n_features == 0:
            raise DescriptorError("the descriptor set has no functions (give g1, g2, "
                                  "sigmoid, g4 or g5)")
        self._layout = self._build_layout()
        self.feature_names = [c["name"] for c in self._layout]

    @property
    def backend(self) -> str:
        """Requested backend: ``"auto"``, ``"torch"`` or ``"numba"`` (settable)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise DescriptorError(f"backend: unknown {value!r}; choose one of "
                                  f"{', '.join(BACKENDS)}")
        if value == "numba" and not _numba.available():
            raise DescriptorError("backend 'numba' needs numba, which is not installed "
                                  "(pip install numba, or the forcefit[fast] extra); use "
                                  "backend='auto' to fall back to torch")
        self._backend = value

    def _use_numba(self, vectors: torch.Tensor) -> bool:
        """Whether the angular sums of ``vectors`` go through the numba kernel."""
        return (self._backend != "torch" and _numba.available()
                and vectors.device.type == "cpu" and not vectors.requires_grad)

    # -- construction helpers --------------------------------------------------------
    @staticmethod
    def _parse_species(species) -> list[int]:
        out = []
        for s in species:
            if isinstance(s, str):
                if s not in chemical_symbols[1:]:
                    raise DescriptorError(f"species: unknown element symbol {s!r}")
                out.append(chemical_symbols.index(s))
            else:
                z = int(s)
                if not 0 < z < len(chemical_symbols):
                    raise DescriptorError(f"species: unknown atomic number {z}")
                out.append(z)
        if not out:
            raise DescriptorError("species: at least one species is needed")
        if len(set(out)) != len(out):
            raise DescriptorError(f"species: repeated entries in {list(species)}")
        return sorted(out)

    def _radial_rows(self) -> list[tuple[str, dict]]:
        rows: list[tuple[str, dict]] = [("G1", {})] if self.g1 else []
        rows += [("G2", {"eta": e, "rs": r}) for e, r in self.g2]
        rows += [("sigmoid", {"r0": r0, "dr": dr}) for r0, dr in self.sigmoid]
        return rows

    def _angular_rows(self) -> list[tuple[str, dict]]:
        return ([("G4", dict(zip(("eta", "zeta", "lambda"), p))) for p in self.g4]
                + [("G5", dict(zip(("eta", "zeta", "lambda"), p))) for p in self.g5])

    def _build_layout(self) -> list[dict]:
        cols = []
        for s, z in enumerate(self.species):
            for fam, par in self._radial_rows():
                args = ",".join(f"{k}={_fmt(v)}" for k, v in par.items())
                cols.append({"family": fam, "species": (z,), **par,
                             "name": f"{fam}[{_symbol(z)}]({args})"})
        for a, b in self.species_pairs:
            za, zb = self.species[a], self.species[b]
            for fam, par in self._angular_rows():
                args = ",".join(f"{k}={_fmt(v)}" for k, v in par.items())
                cols.append({"family": fam, "species": (za, zb), **par,
                             "name": f"{fam}[{_symbol(za)}-{_symbol(zb)}]({args})"})
        for n, c in enumerate(cols):
            c["index"] = n
        return cols

    def layout(self, family: str | None = None, species=None) -> list[dict]:
        """Columns as dicts: index, family, species (tuple of Z), parameters, name.

        Filter by ``family`` (e.g. "G4") and ``species`` (a Z or symbol for radial columns,
        a pair for angular ones; the pair's order does not matter).
        """
        want = None
        if species is not None:
            items = [species] if isinstance(species, (int, str)) else list(species)
            want = tuple(sorted(self._parse_species_loose(items)))
        out = []
        for c in self._layout:
            if family is not None and c["family"] != family:
                continue
            if want is not None and tuple(sorted(c["species"])) != want:
                continue
            out.append(dict(c))
        return out

    @staticmethod
    def _parse_species_loose(items) -> list[int]:
        return [chemical_symbols.index(s) if isinstance(s, str) else int(s) for s in items]

    def __repr__(self) -> str:
        return (f"DescriptorSet(cutoff={self.cutoff}, species={self.species}, "
                f"n_features={self.n_features}, cutoff_function={self.cutoff_function!r})")

    # -- serialisation -----------------------------------------------------------------
    def to_config(self) -> dict:
        """JSON-able description; :meth:`from_config` rebuilds an equal set."""
        return {"type": "acsf", "cutoff": self.cutoff, "species": list(self.species),
                "cutoff_function": self.cutoff_function, "g1": self.g1,
                "g2": [list(r) for r in self.g2], "sigmoid": [list(r) for r in self.sigmoid],
                "g4": [list(r) for r in self.g4], "g5": [list(r) for r in self.g5]}

    @classmethod
    def from_config(cls, config: dict) -> DescriptorSet:
        cfg = dict(config)
        kind = cfg.pop("type", "acsf")
        if kind != "acsf":
            raise DescriptorError(f"descriptor config: unknown type {kind!r} (expected 'acsf')")
        known = {"cutoff", "species", "cutoff_function", "g1", "g2", "sigmoid", "g4", "g5"}
        extra = set(cfg) - known
        if extra:
            raise DescriptorError(f"descriptor config: unknown keys {sorted(extra)}")
        for key in ("cutoff", "species"):
            if key not in cfg:
                raise DescriptorError(f"descriptor config: missing key {key!r}")
        return cls(cfg.pop("cutoff"), cfg.pop("species"), **cfg)

    def __eq__(self, other) -> bool:
        return isinstance(other, DescriptorSet) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.to_config(), sort_keys=True))

    # -- public computation --------------------------------------------------------------
    def values(self, graph: Graph, vectors: torch.Tensor) -> torch.Tensor:
        """Descriptor values D, (atoms, features), differentiable by autograd in ``vectors``.

        ``vectors`` (edges, 3) are the edge vectors r_ij of ``graph`` (e.g.
        ``graph.edge_vectors()`` or the strained ones of
        :func:`forcefit.potentials.base.evaluate`).
        """
        d, _ = self._evaluate(graph, vectors, derivatives=False)
        return d

    def compute(self, graph: Graph, derivatives: bool = True, vectors: torch.Tensor | None = None):
        """Values D (atoms, features) and, if ``derivatives``, dD (edges, features, 3).

        dD[e] = d D[i_e] / d r_e, computed analytically (no autograd graph is built).
        """
        with torch.no_grad():
            vec = graph.edge_vectors() if vectors is None else vectors.detach()
            return self._evaluate(graph, vec, derivatives=derivatives)

    # -- internals -----------------------------------------------------------------------
    def species_index(self, graph: Graph, names: Sequence[str] | None = None) -> torch.Tensor:
        """(atoms,) index of each atom's species in ``self.species``; unknown species raise."""
        numbers = graph.numbers
        top = max(int(numbers.max()) if numbers.numel() else 0, max(self.species)) + 1
        lut = torch.full((top,), -1, dtype=torch.int64, device=numbers.device)
        lut[torch.tensor(self.species, device=numbers.device)] = torch.arange(
            self.n_species, device=numbers.device)
        idx = lut[numbers]  # (atoms,)
        bad = idx < 0
        if bool(bad.any()):
            n = int(torch.nonzero(bad)[0, 0])
            s = int(graph.batch[n])
            where = f"structure {s}" + (f" ({names[s]})" if names and names[s] else "")
            known = ", ".join(_symbol(z) for z in self.species)
            raise DescriptorError(f"{where}: atom {n - int(graph.n_atoms[:s].sum())} is "
                                  f"{_symbol(int(numbers[n]))}, a species the descriptor set "
                                  f"does not know (it knows {known})")
        return idx

    def _evaluate(self, graph: Graph, vectors: torch.Tensor, derivatives: bool,
                  names: Sequence[str] | None = None):
        n_atoms = int(graph.numbers.shape[0])
        n_edges = int(vectors.shape[0])
        dtype, device = vectors.dtype, vectors.device
        if graph.cutoff < self.cutoff * (1 - 1e-12):
            raise DescriptorError(f"graph was built with cutoff {graph.cutoff} Angstrom, less "
                                  f"than the descriptor cutoff {self.cutoff}: rebuild it")
        if vectors.shape != (int(graph.i.shape[0]), 3):
            raise DescriptorError(f"vectors: expected shape ({int(graph.i.shape[0])}, 3), "
                                  f"got {tuple(vectors.shape)}")
        sp_atom = self.species_index(graph, names)  # (atoms,)
        r_all = torch.linalg.vector_norm(vectors, dim=1)  # (edges,)
        if n_edges and float(r_all.detach().min()) < MIN_DISTANCE:
            e = int(torch.argmin(r_all.detach()))
            s = int(graph.edge_batch[e])
            off = int(graph.n_atoms[:s].sum())
            where = f"structure {s}" + (f" ({names[s]})" if names and names[s] else "")
            raise DescriptorError(
                f"{where}: atoms {int(graph.i[e]) - off} and {int(graph.j[e]) - off} are "
                f"{float(r_all[e]):.3g} Angstrom apart (overlapping atoms)")
        # edges used: inside the cutoff, grouped by centre (the neighbour list sorts them)
        with torch.no_grad():
            keep = r_all < self.cutoff
            centre = graph.i
            is_sorted = bool((centre[1:] >= centre[:-1]).all()) if n_edges > 1 else True
            if bool(keep.all()) and is_sorted:
                sel = None
            else:
                sel = torch.nonzero(keep).reshape(-1)
                sel = sel[torch.sort(centre[sel], stable=True).indices]
        if sel is None:
            vec, r, ci, nj = vectors, r_all, graph.i, graph.j
        else:
            vec, r, ci, nj = vectors[sel], r_all[sel], graph.i[sel], graph.j[sel]
        sp_j = sp_atom[nj]  # (E,) species index of the neighbour
        sp_i = sp_atom  # noqa: F841  (the centre's species is not encoded)
        E = int(vec.shape[0])
        fc, dfc = cutoff_function(r, self.cutoff, self.cutoff_function, derivative=True)

        dd = None
        if derivatives:
            dd = torch.zeros((E, self.n_features, 3), dtype=dtype, device=device)
        if self._use_numba(vec):
            parts = self._numba_parts(vec, r, fc, dfc, ci, sp_j, n_atoms, dd)
        else:
            parts = self._torch_parts(vec, r, fc, dfc, ci, sp_j, n_atoms, dd)
        d = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (atoms, F)
        if derivatives and sel is not None:
            full = torch.zeros((n_edges, self.n_features, 3), dtype=dtype, device=device)
            full[sel] = dd
            dd = full
        return d, dd

    def _radial(self, r, fc, dfc, derivatives):
        """Radial columns per edge: values (E, n_radial) and d/dr (E, n_radial)."""
        vals, ders = [], []
        if self.g1:
            vals.append(fc[:, None])
            ders.append(dfc[:, None])
        if self.g2:
            p = torch.tensor(self.g2, dtype=r.dtype, device=r.device)  # (n_g2, 2)
            eta, rs = p[:, 0], p[:, 1]
            x = r[:, None] - rs  # (E, n_g2)
            gauss = torch.exp(-eta * x * x)  # (E, n_g2)
            vals.append(gauss * fc[:, None])
            if derivatives:
                ders.append(gauss * (dfc[:, None] - 2.0 * eta * x * fc[:, None]))
        if self.sigmoid:
            p = torch.tensor(self.sigmoid, dtype=r.dtype, device=r.device)  # (n_sig, 2)
            r0, dr = p[:, 0], p[:, 1]
            sig = torch.sigmoid(-(r[:, None] - r0) / dr)  # (E, n_sig) = 1/(1+exp((r-r0)/dr))
            vals.append(sig * fc[:, None])
            if derivatives:
                ders.append(sig * (dfc[:, None] - (1.0 - sig) / dr * fc[:, None]))
        g = torch.cat(vals, dim=1)
        return g, (torch.cat(ders, dim=1) if derivatives else None)

    def _torch_parts(self, vec, r, fc, dfc, ci, sp_j, n_atoms, dd):
        """Radial and angular value blocks [(atoms, ...)] by the torch kernels; fills dd."""
        E, dtype, device = int(vec.shape[0]), vec.dtype, vec.device
        derivatives = dd is not None
        n_rad_cols = self.n_species * self.n_radial
        parts = []
        if self.n_radial:
            g, dg = self._radial(r, fc, dfc, derivatives)  # (E, n_radial) each
            flat = ci * self.n_species + sp_j  # (E,)
            d_rad = torch.zeros((n_atoms * self.n_species, self.n_radial), dtype=dtype,
                                device=device).index_add(0, flat, g)
            parts.append(d_rad.reshape(n_atoms, n_rad_cols))
            if derivatives:
                u = vec / r[:, None]  # (E, 3) unit vectors
                block = dd[:, :n_rad_cols].unflatten(1, (self.n_species, self.n_radial))
                block[torch.arange(E, device=device), sp_j] = dg[:, :, None] * u[:, None, :]
        if self.n_angular:
            parts.append(self._angular(vec, r, fc, dfc, ci, sp_j, n_atoms, dd, n_rad_cols))
        return parts

    def _numba_parts(self, vec, r, fc, dfc, ci, sp_j, n_atoms, dd):
        """Radial and angular value blocks [(atoms, ...)] by the numba kernels (float64);
        fills dd (written in place when it is float64, else through a float64 copy)."""
        tables = getattr(self, "_numba_tables", None)  # built once per set
        if tables is None:
            tables = self._numba_tables = _numba.function_tables(self.g4, self.g5)

        def f64(t):  # (n,) or (n, 3) float64 contiguous numpy view or copy
            return np.ascontiguousarray(t.detach().to(torch.float64).numpy())

        vec64, r64, fc64, dfc64 = f64(vec), f64(r), f64(fc), f64(dfc)
        sp = np.ascontiguousarray(sp_j.numpy(), dtype=np.int64)  # (E,)
        out = None
        if dd is not None:
            direct = dd.dtype == torch.float64 and dd.is_contiguous()
            out = dd.numpy() if direct else np.zeros((dd.shape[0], dd.shape[1], 3))
        parts = []
        if self.n_radial:
            parts.append(_numba.radial(self.g1, self.g2, self.sigmoid, vec64, r64, fc64, dfc64,
                                       np.ascontiguousarray(ci.numpy(), dtype=np.int64), sp,
                                       n_atoms, self.n_species, out))
        if self.n_angular:
            counts = torch.bincount(ci, minlength=n_atoms).numpy()  # (atoms,)
            parts.append(_numba.angular(tables, vec64, r64, fc64, dfc64, counts, sp,
                                        self._pair_table.numpy(), self.n_pairs, self.cutoff,
                                        self.cutoff_function, out,
                                        self.n_species * self.n_radial))
        if dd is not None and not direct:
            dd.copy_(torch.from_numpy(out))
        return [torch.from_numpy(p).to(vec.dtype) for p in parts]

    def _angular(self, vec, r, fc, dfc, ci, sp_j, n_atoms, dd, col0):
        """Angular columns: returns values (atoms, n_pairs * n_angular); fills dd in place."""
        device = vec.device
        derivatives = dd is not None
        counts = torch.bincount(ci, minlength=n_atoms)  # (atoms,) edges per centre
        # chunk whole centres so that sum n_i^2 stays within PAIR_BUDGET
        load = torch.cumsum(counts * counts, 0)  # (atoms,)
        chunk_of = torch.div(load - 1, PAIR_BUDGET, rounding_mode="floor").clamp(min=0)
        edge_bounds = torch.cumsum(counts, 0)  # (atoms,) end of each centre's edges
        n_chunks = int(chunk_of[-1]) + 1 if n_atoms else 0
        ends = torch.searchsorted(chunk_of, torch.arange(n_chunks, device=device), right=True)
        acc = vec.new_zeros((n_atoms * self.n_pairs, self.n_angular))
        a0 = 0
        if not derivatives:  # values only: unordered pairs per centre, no per-edge sums
            parts = []
            for a1 in ends.tolist():  # loop over chunks of centres (a handful), not atoms
                e0 = int(edge_bounds[a0 - 1]) if a0 > 0 else 0
                e1 = int(edge_bounds[a1 - 1]) if a1 > 0 else 0
                if e1 > e0:
                    sl = slice(e0, e1)
                    parts.append(self._centre_values(vec[sl], r[sl], fc[sl], ci[sl] - a0,
                                                     a1 - a0, sp_j[sl]))
                else:
                    parts.append(vec.new_zeros((a1 - a0, self.n_pairs, self.n_angular)))
                a0 = a1
            if not parts:
                return vec.new_zeros((n_atoms, self.n_pairs * self.n_angular))
            return torch.cat(parts, dim=0).reshape(n_atoms, self.n_pairs * self.n_angular)
        for a1 in ends.tolist():  # loop over chunks of centres (a handful), not atoms
            e0 = int(edge_bounds[a0 - 1]) if a0 > 0 else 0
            e1 = int(edge_bounds[a1 - 1]) if a1 > 0 else 0
            if e1 > e0:
                sl = slice(e0, e1)
                v_e, d_e = self._angular_chunk(vec[sl], r[sl], fc[sl], dfc[sl], ci[sl] - a0,
                                               a1 - a0, sp_j[sl], derivatives)
                # species-pair column of each (edge, other-species) combination
                pidx = self._pair_table.to(device)[sp_j[sl]]  # (E_c, n_species)
                flat = (ci[sl][:, None] * self.n_pairs + pidx).reshape(-1)  # (E_c * n_species,)
                acc = acc.index_add(0, flat, 0.5 * v_e.reshape(-1, self.n_angular))
                if derivatives:
                    block = dd[sl, col0:].unflatten(1, (self.n_pairs, self.n_angular))
                    idx = pidx[:, :, None, None].expand(-1, -1, self.n_angular, 3)
                    block.scatter_(1, idx, d_e)
            a0 = a1
        return acc.reshape(n_atoms, self.n_pairs * self.n_angular)

    def _pair_masks(self, vec, ci, n_centres):
        """Padded per-centre neighbour slots and the pair masks (no autograd).

        Returns starts (centres,), pair_ok (centres, nmax, nmax) for j != k, and near
        (same shape) for r_jk < rc (None without G4).
        """
        device = vec.device
        E = int(vec.shape[0])
        with torch.no_grad():
            counts = torch.bincount(ci, minlength=n_centres)  # (centres,)
            starts = torch.cumsum(counts, 0) - counts  # (centres,)
            nmax = int(counts.max())
            pos = torch.arange(E, device=device) - starts[ci]  # (E,) rank within the centre
            vpad = vec.new_zeros((n_centres, nmax, 3))
            vpad[ci, pos] = vec.detach()  # (centres, nmax, 3)
            filled = torch.zeros((n_centres, nmax), dtype=torch.bool, device=device)
            filled[ci, pos] = True
            pair_ok = filled[:, :, None] & filled[:, None, :]  # (centres, nmax, nmax)
            pair_ok &= ~torch.eye(nmax, dtype=torch.bool, device=device)
            near = None
            if self.g4:  # r_jk^2 = r_ij^2 + r_ik^2 - 2 r_ij . r_ik from the Gram matrix
                rsq = (vpad * vpad).sum(dim=2)  # (centres, nmax)
                r3sq = rsq[:, :, None] + rsq[:, None, :] - 2.0 * torch.bmm(
                    vpad, vpad.transpose(1, 2))  # (centres, nmax, nmax)
                near = pair_ok & (r3sq < self.cutoff**2 * (1 + 1e-9))
        return starts, pair_ok, near

    def _centre_values(self, vec, r, fc, ci, n_centres, sp_j):
        """Angular values (centres, n_pairs, n_angular) from unordered pairs j < k."""
        device = vec.device
        starts, pair_ok, near = self._pair_masks(vec, ci, n_centres)
        upper = torch.triu(torch.ones_like(pair_ok[0]), diagonal=1)  # (nmax, nmax) j < k
        table = self._pair_table.to(device)
        outs = []
        for fam, rows in (("G4", self.g4), ("G5", self.g5)):
            if not rows:
                continue
            with torch.no_grad():
                mask = (near if fam == "G4" else pair_ok) & upper
                cc, aa, bb = torch.nonzero(mask, as_tuple=True)  # sorted by centre
                per_c = torch.bincount(cc, minlength=n_centres)  # (centres,)
                tmax = max(int(per_c.max()) if cc.numel() else 0, 1)
                seg = torch.cumsum(per_c, 0) - per_c
                slot = cc * tmax + (torch.arange(cc.shape[0], device=device) - seg[cc])
                a_idx = torch.zeros(n_centres * tmax, dtype=torch.int64, device=device)
                b_idx = torch.zeros_like(a_idx)
                a_idx[slot] = starts[cc] + aa
                b_idx[slot] = starts[cc] + bb
                valid = torch.zeros(n_centres * tmax, dtype=torch.bool, device=device)
                valid[slot] = True
                a_idx, b_idx = a_idx.reshape(-1, tmax), b_idx.reshape(-1, tmax)
                valid = valid.reshape(-1, tmax)  # (centres, tmax)
                onehot = None
                if self.n_pairs > 1:
                    pidx = table[sp_j[a_idx], sp_j[b_idx]]  # (centres, tmax)
                    onehot = torch.nn.functional.one_hot(pidx, self.n_pairs)
                    onehot = onehot.to(vec.dtype).transpose(1, 2).contiguous()  # (C, n_pairs, T)
            eta_list, eta_idx, zl_list, zl_idx = _grid(rows)
            etas64 = torch.tensor(eta_list, dtype=torch.float64)
            n_eta, n_zl = len(eta_list), len(zl_list)
            kernel = self._kernel(_centre_sums)
            m = kernel(vec, r, fc, a_idx, b_idx, valid, onehot,
                       etas64.to(dtype=vec.dtype, device=device), fam=fam, zl=zl_list,
                       cutoff=self.cutoff, kind=self.cutoff_function)  # (C, np*n_eta, n_zl)
            m = m.reshape(n_centres, self.n_pairs, n_eta * n_zl)
            outs.append(_pick(m, eta_idx * n_zl + zl_idx))  # (C, n_pairs, F_fam)
        return torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]

    def _angular_chunk(self, vec, r, fc, dfc, ci, n_centres, sp_j, derivatives):
        """Per-edge angular sums for a contiguous block of centres.

        Returns v (E, n_species, n_angular): sum over ordered pairs (e, k) of g, split by the
        species of k; and, with derivatives, d (E, n_species, n_angular, 3) = sum_k dg/dv_e.
        """
        E = int(vec.shape[0])
        starts, pair_ok, near = self._pair_masks(vec, ci, n_centres)
        outs_v, outs_d = [], []
        for fam, rows in (("G4", self.g4), ("G5", self.g5)):
            if not rows:
                continue
            with torch.no_grad():
                cc, aa, bb = torch.nonzero(near if fam == "G4" else pair_ok, as_tuple=True)
                a, b = starts[cc] + aa, starts[cc] + bb  # (T,) first and second edge
            v, d = self._family_sums(fam, rows, vec, r, fc, dfc, sp_j, a, b, E, derivatives)
            outs_v.append(v)
            outs_d.append(d)
        v = torch.cat(outs_v, dim=-1) if len(outs_v) > 1 else outs_v[0]
        d = None
        if derivatives:
            d = torch.cat(outs_d, dim=-2) if len(outs_d) > 1 else outs_d[0]
        return v, d

    def _family_sums(self, fam, rows, vec, r, fc, dfc, sp_j, e1, e2, E, derivatives):
        """Sums over k for one angular family, in a padded per-edge layout (E, ., K).

        Slot (e, k) holds the k-th ordered pair whose first edge is e; empty slots point at
        e itself and are zeroed through the cutoff product, so every array is built in
        place for the batched product (no scatter of per-pair arrays). The per-slot
        arithmetic is :func:`_pair_sums` (compiled with ``torch.compile`` when the set was
        made with ``compiled=True``).
        """
        device = vec.device
        eta_list, eta_idx, zl_list, zl_idx = _grid(rows)
        n_eta, n_zl = len(eta_list), len(zl_list)
        T = int(e1.shape[0])
        etas = tuple(eta_list)  # static constants of the kernel
        kernel = self._kernel()
        b1 = (5 if fam == "G4" else 2) if derivatives else 1
        ns = self.n_species
        m1 = vec.new_zeros((E, ns * b1 * n_eta, n_zl))
        m2 = vec.new_zeros((E, ns * 4 * n_eta, n_zl)) if derivatives else None
        with torch.no_grad():
            k_per = torch.bincount(e1, minlength=E)  # (E,) pairs per first edge
            seg = torch.cumsum(k_per, 0) - k_per  # (E,) first pair of each edge
            # buckets of edges with similar pair counts, each padded to its own K
            qs = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
            bounds = sorted({math.ceil(float(b)) for b in
                             torch.quantile(k_per.double().cpu(), qs).tolist()} if E else set())
        lo = -1
        for hi in bounds:  # a handful of buckets, not atoms
            with torch.no_grad():
                rows = torch.nonzero((k_per > lo) & (k_per <= hi)).reshape(-1)  # (R,)
                lo = hi
                if rows.numel() == 0 or hi == 0:
                    continue
                K = hi
                kk = torch.arange(K, device=device)  # (K,)
                valid = kk[None, :] < k_per[rows][:, None]  # (R, K)
                at = (seg[rows][:, None] + kk[None, :]).clamp(max=max(T - 1, 0))  # (R, K)
                e2p = torch.where(valid, e2[at], rows[:, None])  # (R, K) empty slot -> e
                onehot = None
                if ns > 1:
                    onehot = torch.nn.functional.one_hot(sp_j[e2p], ns)  # (R, K, ns)
                    onehot = onehot.to(vec.dtype).transpose(1, 2).contiguous()  # (R, ns, K)
            b_m1, b_m2 = kernel(vec, r, fc, dfc, rows, e2p, valid, onehot, etas, fam=fam,
                                zl=zl_list, cutoff=self.cutoff, kind=self.cutoff_function,
                                derivatives=derivatives)
            m1[rows] = b_m1
            if derivatives:
                m2[rows] = b_m2
        cols = eta_idx * n_zl + zl_idx  # (F_fam,) column of each function in the grid
        m1 = _pick(m1.reshape(E, ns, b1, n_eta * n_zl), cols)  # (E, ns, b1, F_fam)
        val = m1[:, :, 0]  # (E, ns, F_fam)
        if not derivatives:
            return val, None
        m2 = _pick(m2.reshape(E, ns, 4, n_eta * n_zl), cols)  # (E, ns, 4, F_fam)
        coef = m1[:, :, 1] + m2[:, :, 0]  # (E, ns, F_fam) coefficient of v_e
        der = coef[:, :, None, :] * vec[:, None, :, None] + m2[:, :, 1:4]  # (E, ns, 3, F_fam)
        if fam == "G4":
            der = der + m1[:, :, 2:5]
        return val, der.transpose(2, 3)  # (E, ns, F_fam, 3)

    def _kernel(self, fn=None):
        """The per-pair kernel ``fn`` (default :func:`_pair_sums`), compiled if asked."""
        fn = _pair_sums if fn is None else fn
        if not self.compiled:
            return fn
        return functools.partial(_run_compiled, fn)



def _grid(rows):
    """Distinct etas and (zeta, lambda) of ``rows`` in order of first appearance, and the
    index of each row in them: (etas, eta_idx (F,), zl, zl_idx (F,))."""
    etas = list(dict.fromkeys(float(r[0]) for r in rows))
    zl = list(dict.fromkeys((float(r[1]), float(r[2])) for r in rows))
    eta_idx = torch.tensor([etas.index(float(r[0])) for r in rows], dtype=torch.int64)
    zl_idx = torch.tensor([zl.index((float(r[1]), float(r[2]))) for r in rows],
                          dtype=torch.int64)
    return etas, eta_idx, tuple(zl), zl_idx


def _products(pairs, rows: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """Stack the products a * b of ``pairs`` of (rows, k) tensors into (rows, n, k).

    (Writing each product into a preallocated slab with ``out=`` measured no faster in
    eager mode here; under ``torch.compile`` the stack is fused.)
    """
    del rows, k, like
    return torch.stack([a * b for a, b in pairs], dim=1)


def _pick(m: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Columns ``cols`` of the last axis of m (no copy when they are all, in order)."""
    if cols.shape[0] == m.shape[-1] and bool((cols == torch.arange(cols.shape[0])).all()):
        return m
    return m.index_select(m.dim() - 1, cols.to(m.device))


_COMPILED: dict = {}
_COMPILE_FAILED = False


def _run_compiled(fn, *args, **kwargs):
    """``fn`` through ``torch.compile`` (cached); on a compiler failure, a warning and eager."""
    global _COMPILE_FAILED
    if not _COMPILE_FAILED:
        try:
            if fn not in _COMPILED:
                _COMPILED[fn] = torch.compile(fn, dynamic=True)
            return _COMPILED[fn](*args, **kwargs)
        except Exception as err:  # noqa: BLE001  any backend failure: fall back, say so
            import warnings

            _COMPILE_FAILED = True
            warnings.warn(f"forcefit.descriptors: torch.compile failed ({type(err).__name__}: "
                          f"{err}); using the eager kernels", RuntimeWarning, stacklevel=2)
    return fn(*args, **kwargs)


def _powers(base: torch.Tensor, exponents) -> dict:
    """base**n for each n in ``exponents`` (integers by repeated squaring, else pow)."""
    out: dict = {}
    squares = {1: base}
    for n in sorted(set(exponents)):
        if n == 0:
            out[n] = torch.ones_like(base)
        elif float(n).is_integer() and n <= 64:
            n_int, acc, bit = int(n), None, 1
            while bit <= n_int:
                if bit not in squares:
                    squares[bit] = squares[bit // 2] * squares[bit // 2]
                if n_int & bit:
                    acc = squares[bit] if acc is None else acc * squares[bit]
                bit *= 2
            out[n] = acc
        else:
            out[n] = base.pow(n)
    return out


def _pair_sums(vec, r, fc, dfc, rows, e2p, valid, onehot, etas, *, fam: str, zl: tuple,
               cutoff: float, kind: str, derivatives: bool):
    """Per-edge sums over the padded pairs (e, k) of one angular family (pure function).

    Inputs: vec (E, 3), r, fc, dfc (E,) of all edges; rows (R,) the first edges e of this
    bucket; e2p (R, K) second edge of each slot, valid (R, K); onehot (R, ns, K) species
    of k or None; etas the distinct eta (floats); zl the distinct (zeta, lambda). Returns
    m1 (R, ns * b1 * n_eta, n_zl) = sum_k [w, y, vv v2] ang and, with derivatives,
    m2 (R, ns * 4 * n_eta, n_zl) = sum_k dang * [-w c / r1^2, w v2 / (r1 r2)] (formulas in
    the module docstring), constants 2^(1-zeta) and zeta lambda 2^(1-zeta) applied.
    """
    E, K = e2p.shape  # E here counts the rows of the bucket
    dtype = vec.dtype
    v1 = vec[rows]  # (R, 3)
    r1, fc1, dfc1 = r[rows][:, None], fc[rows][:, None], dfc[rows][:, None]  # (R, 1)
    v2 = vec.t()[:, e2p]  # (3, R, K) components of r_ik
    r2, fc2 = r[e2p], fc[e2p]  # (R, K)
    dot = v2[0] * v1[:, 0:1] + v2[1] * v1[:, 1:2] + v2[2] * v1[:, 2:3]  # (R, K)
    inv12 = 1.0 / (r1 * r2)  # (E, K)
    c = dot * inv12  # (E, K) cos theta
    # (1 + lambda c)^zeta and its zeta-1 power, per distinct lambda by repeated squaring
    pw_of = {}
    for lm in sorted({lm for _, lm in zl}):
        base = (1.0 + lm * c).clamp(min=0.0)  # (E, K)
        zs = [z for z, l2 in zl if l2 == lm]
        pw_of[lm] = _powers(base, zs + ([z - 1.0 for z in zs] if derivatives else []))
    ang = torch.stack([pw_of[lm][z] for z, lm in zl], dim=1)  # (E, n_zl, K)
    pref = torch.tensor([2.0 ** (1.0 - z) for z, _ in zl], dtype=dtype, device=vec.device)
    r1sq = r1 * r1  # (R, 1)
    s12 = r1sq + r2 * r2  # (R, K)
    eta_list = [float(e) for e in etas]  # per eta, so every product is a contiguous (R, K)
    if fam == "G4":
        # r_jk = r_ik - r_ij; empty slots -> r3 = rc, so fc3 = 0 (and no sqrt(0) in autograd)
        r3sq = torch.where(valid, (s12 - 2.0 * dot).clamp(min=0.0),
                           torch.full_like(dot, cutoff * cutoff))  # (R, K)
        r3 = torch.sqrt(r3sq)  # (R, K)
        fc3, dfc3 = cutoff_function(r3, cutoff, kind, derivative=True)
        f12 = fc1 * fc2  # (R, K)
        cc = f12 * fc3  # (R, K)
        rsq = s12 + r3sq  # (R, K)
    else:
        cc = fc1 * fc2 * valid
        rsq = s12
    xs = [torch.exp(rsq * (-eta)) for eta in eta_list]  # n_eta x (R, K)

    def by_species(q):  # (R, b * n_eta, K) -> (R, ns * b * n_eta, K)
        if onehot is None:
            return q
        return (onehot[:, :, None, :] * q[:, None]).reshape(E, -1, K)

    if not derivatives:
        w = _products([(x, cc) for x in xs], E, K, dot)  # (R, n_eta, K)
        m1 = torch.bmm(by_species(w), ang.transpose(1, 2))  # (R, ns * n_eta, n_zl)
        return m1 * pref, None
    dang = torch.stack([pw_of[lm][z - 1.0] for z, lm in zl], dim=1)  # (R, n_zl, K)
    dpref = pref * torch.tensor([z * lm for z, lm in zl], dtype=dtype, device=vec.device)
    n_eta = len(eta_list)
    if fam == "G4":
        d1 = (dfc1 / r1) * fc2 * fc3  # (R, K) (dC/dr1) / r1
        d3 = f12 * dfc3 / r3  # (R, K) (dC/dr3) / r3
        d13 = d1 + d3
        vvs = [x * ((2.0 * eta) * cc - d3) for x, eta in zip(xs, eta_list)]  # coef of v2
        pairs1 = ([(x, cc) for x in xs]  # w
                  + [(x, d13 - (4.0 * eta) * cc) for x, eta in zip(xs, eta_list)]  # coef v1
                  + [(vv, v2[a]) for a in range(3) for vv in vvs])  # 5 * n_eta blocks
    else:
        d1 = (dfc1 / r1) * fc2 * valid  # (R, K)
        pairs1 = ([(x, cc) for x in xs]
                  + [(x, d1 - (2.0 * eta) * cc) for x, eta in zip(xs, eta_list)])  # 2 * n_eta
    q1 = _products(pairs1, E, K, dot)  # (R, b1 * n_eta, K)
    ws = [q1[:, q] for q in range(n_eta)]  # n_eta x (R, K) distance part of the value
    cr = -c / r1sq  # (R, K)
    wrs = [w * inv12 for w in ws]  # n_eta x (R, K)
    q2 = _products([(w, cr) for w in ws] + [(wr, v2[a]) for a in range(3) for wr in wrs],
                   E, K, dot)  # (R, 4 * n_eta, K)
    q1, q2 = by_species(q1), by_species(q2)  # (R, W1, K), (R, W2, K)
    if K < q1.shape[1]:  # scale the smaller operand by the constants
        m1 = torch.bmm(q1, (ang * pref[:, None]).transpose(1, 2))  # (R, W1, n_zl)
        m2 = torch.bmm(q2, (dang * dpref[:, None]).transpose(1, 2))  # (R, W2, n_zl)
    else:
        m1 = torch.bmm(q1, ang.transpose(1, 2)) * pref  # (R, ns * b1 * n_eta, n_zl)
        m2 = torch.bmm(q2, dang.transpose(1, 2)) * dpref  # (R, ns * 4 * n_eta, n_zl)
    return m1, m2


def _centre_sums(vec, r, fc, a_idx, b_idx, valid, onehot, etas, *, fam: str, zl: tuple,
                 cutoff: float, kind: str):
    """Angular values per centre from its unordered pairs (pure function).

    a_idx, b_idx, valid (C, T): the two edges of each padded pair slot of each centre;
    onehot (C, n_pairs, T) species pair of the slot or None. Returns
    (C, n_pairs * n_eta, n_zl) = sum over pairs of 2^(1-zeta) (1 + lambda c)^zeta w_eta.
    """
    C, T = a_idx.shape
    va, vb = vec.t()[:, a_idx], vec.t()[:, b_idx]  # (3, C, T) each
    ra, rb, fa, fb = r[a_idx], r[b_idx], fc[a_idx], fc[b_idx]  # (C, T)
    dot = va[0] * vb[0] + va[1] * vb[1] + va[2] * vb[2]  # (C, T)
    c = dot / (ra * rb)  # (C, T) cos theta
    pw_of = {}
    for lm in sorted({lm for _, lm in zl}):
        base = (1.0 + lm * c).clamp(min=0.0)  # (C, T)
        pw_of[lm] = _powers(base, [z for z, l2 in zl if l2 == lm])
    ang = torch.stack([pw_of[lm][z] for z, lm in zl], dim=1)  # (C, n_zl, T)
    pref = torch.tensor([2.0 ** (1.0 - z) for z, _ in zl], dtype=vec.dtype, device=vec.device)
    s12 = ra * ra + rb * rb  # (C, T)
    if fam == "G4":
        r3sq = torch.where(valid, (s12 - 2.0 * dot).clamp(min=0.0),
                           torch.full_like(dot, cutoff * cutoff))  # (C, T); empty -> rc
        fc3 = cutoff_function(torch.sqrt(r3sq), cutoff, kind)
        cc = fa * fb * fc3  # (C, T)
        rsq = s12 + r3sq
    else:
        cc = fa * fb * valid
        rsq = s12
    w = torch.exp(-etas[None, :, None] * rsq[:, None, :]) * cc[:, None, :]  # (C, n_eta, T)
    if onehot is not None:
        w = (onehot[:, :, None, :] * w[:, None]).reshape(C, -1, T)  # (C, n_pairs*n_eta, T)
    return torch.bmm(w, ang.transpose(1, 2)) * pref  # (C, n_pairs * n_eta, n_zl)
