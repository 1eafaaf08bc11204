"""Pair potentials as thin ``torch.nn.Module`` wrappers around the kernels in
:mod:`forcefit.potentials.kernels`.

Units: Angstrom for lengths (``sigma``, ``r0``, ``cutoff``, knots), eV for energies
(``epsilon``, spline values), 1/Angstrom for the Morse ``alpha``.

Energy of a structure: E = 1/2 sum_i sum_{j != i, r_ij < cutoff} u_{s_i s_j}(r_ij) over the
full neighbour list (each pair appears as i->j and j->i), so atom i receives half of every
pair energy it takes part in. Edges with r >= cutoff contribute nothing, so a graph built
with a larger cutoff (a :class:`~forcefit.potentials.Sum`, or a calculator's Verlet skin)
gives the same result.

Per-pair parameters: with ``species=None`` one parameter set applies to every pair of
atoms. With ``species=[Z_1, ..., Z_n]`` each parameter is a symmetric n x n table, stored
as the n (n + 1) / 2 unique pairs (upper triangle, row-major) in one ``nn.Parameter`` of
shape (pairs,) (or (pairs, knots - 1) for the spline). A value may be given as a scalar
(every pair), as a symmetric n x n nested list, or as a dict ``{(Z_a, Z_b): value}`` (keys
may also be element symbols or "A-B" strings) covering every pair. ``to_config()`` always
writes the full n x n table.

Index names: ``edges`` (directed pairs of the graph), ``pairs`` (unique species pairs),
``knots``.

Parameters are created in float64 whatever torch's default dtype, so the values given are
kept exactly; ``model.to(torch.float32)`` converts them for float32 work, and ``forward``
computes in the dtype of ``vectors``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers as _SYMBOL_TO_Z
from torch import Tensor, nn

from ..neighbors import Graph
from ..structure import MAX_Z
from . import kernels as K
from .registry import register


# --------------------------------------------------------------------------- species tables
def _parse_species(species) -> list[int] | None:
    if species is None:
        return None
    out = []
    for s in species:
        z = _SYMBOL_TO_Z.get(s) if isinstance(s, str) else int(s)
        if z is None or not 1 <= z <= MAX_Z:
            raise ValueError(f"species: unknown element {s!r}")
        out.append(z)
    if len(set(out)) != len(out) or not out:
        raise ValueError(f"species must be a non-empty list of distinct elements, got {species}")
    return out


def _pair_key(key) -> tuple[int, int]:
    if isinstance(key, str):
        key = key.split("-")
    a, b = key
    return tuple(_SYMBOL_TO_Z[x] if isinstance(x, str) else int(x) for x in (a, b))


def pair_values(value, species: list[int] | None, name: str,
                trailing: tuple[int, ...] = ()) -> Tensor:
    """Parameter ``name`` as a (pairs, *trailing) float64 tensor (see module docstring)."""
    n = len(species) if species else 1
    upper = [(a, b) for a in range(n) for b in range(a, n)]
    if isinstance(value, dict):
        if species is None:
            raise ValueError(f"{name}: a per-pair dict needs a species list")
        index = {z: k for k, z in enumerate(species)}
        table: dict[tuple[int, int], np.ndarray] = {}
        for key, v in value.items():
            try:
                za, zb = _pair_key(key)
                a, b = sorted((index[za], index[zb]))
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{name}: bad pair key {key!r} for species {species}") from err
            table[(a, b)] = np.asarray(v, dtype=np.float64)
        missing = [(species[a], species[b]) for a, b in upper if (a, b) not in table]
        if missing:
            raise ValueError(f"{name}: no value for species pairs {missing}")
        arr = np.stack([table[p] for p in upper])
    else:
        try:
            full = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: not numeric ({err})") from err
        if full.shape == trailing:
            arr = np.broadcast_to(full, (len(upper), *trailing)).copy()
        elif species is not None and full.shape == (n, n, *trailing):
            if not np.allclose(full, np.swapaxes(full, 0, 1), rtol=1e-12, atol=0):
                raise ValueError(f"{name}: the per-pair table must be symmetric")
            arr = np.stack([full[a, b] for a, b in upper])
        else:
            want = f"{trailing or 'a scalar'}" + (f" or {(n, n, *trailing)}" if species else "")
            raise ValueError(f"{name}: expected shape {want}, got {full.shape}")
    if arr.shape[1:] != trailing:
        raise ValueError(f"{name}: each pair value must have shape {trailing}, got {arr.shape[1:]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return torch.as_tensor(arr, dtype=torch.float64)


class PairPotential(nn.Module):
    """Base of the pair potentials: species lookup, cutoff masking, splitting energies.

    Subclasses implement ``pair_energy(r, pair, graph) -> (edges,)`` for edges strictly
    inside the cutoff (``pair`` indexes the per-pair parameter tables).
    """

    cutoff: float

    def __init__(self, cutoff: float, species=None) -> None:
        super().__init__()
        cutoff = float(cutoff)
        if not cutoff > 0:
            raise ValueError(f"{type(self).__name__}: cutoff must be positive, got {cutoff}")
        self.cutoff = cutoff
        self.species = _parse_species(species)
        n = len(self.species) if self.species else 1
        z_index = torch.full((MAX_Z + 1,), -1, dtype=torch.int64)
        if self.species is None:
            z_index[:] = 0
        else:
            z_index[torch.tensor(self.species)] = torch.arange(n)
        pair_index = torch.zeros((n, n), dtype=torch.int64)
        k = 0
        for a in range(n):  # once at construction
            for b in range(a, n):
                pair_index[a, b] = pair_index[b, a] = k
                k += 1
        self.register_buffer("_z_index", z_index, persistent=False)
        self.register_buffer("_pair_index", pair_index, persistent=False)

    def _param(self, name: str, value, trailing: tuple[int, ...] = ()) -> None:
        setattr(self, name, nn.Parameter(pair_values(value, self.species, name, trailing)))

    def _table(self, name: str):
        """JSON form of a per-pair parameter: scalar/list, or the full n x n table."""
        p = getattr(self, name).detach().cpu().double()
        if self.species is None:
            return p[0].tolist()
        return p[self._pair_index.cpu()].tolist()

    def species_pair(self, graph: Graph) -> Tensor | None:
        """(edges,) index into the per-pair tables (None with a single parameter set);
        unknown elements raise ValueError."""
        if self.species is None:
            return None
        idx = self._z_index[graph.numbers]  # (atoms,)
        if bool((idx < 0).any()):
            bad = sorted(set(graph.numbers[idx < 0].tolist()))
            raise ValueError(f"{type(self).__name__}: atomic numbers {bad} are not in its "
                             f"species {self.species}")
        return self._pair_index[idx[graph.i], idx[graph.j]]  # (edges,)

    def check_graph(self, graph: Graph) -> None:
        if graph.cutoff < self.cutoff * (1 - 1e-12):
            raise ValueError(f"{type(self).__name__}: graph built with cutoff {graph.cutoff} "
                             f"< the model cutoff {self.cutoff}")

    def pair_energy(self, r: Tensor, pair: Tensor | None, graph: Graph) -> Tensor:
        """Pair energies (edges,) eV at distances ``r`` (edges,) strictly inside the cutoff;
        ``pair`` from :meth:`species_pair`."""
        raise NotImplementedError

    def forward(self, graph: Graph, vectors: Tensor) -> Tensor:
        """Per-atom energies (atoms,) eV: half of each pair energy to each atom."""
        self.check_graph(graph)
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (edges,)
        inside = r < self.cutoff  # (edges,)
        r_safe = torch.where(inside, r, torch.full_like(r, 0.5 * self.cutoff))  # (edges,)
        pair = self.species_pair(graph)  # (edges,) or None
        e = self.pair_energy(r_safe, pair, graph)  # (edges,)
        e = torch.where(inside, e, torch.zeros_like(e))
        out = torch.zeros(graph.numbers.shape[0], dtype=r.dtype, device=r.device)
        return out.index_add(0, graph.i, 0.5 * e)  # (atoms,)

    def _get(self, name: str, pair: Tensor | None, like: Tensor) -> Tensor:
        """Per-edge values of a parameter: (edges, ...), or (...) broadcasting when single."""
        p = getattr(self, name).to(like.dtype)  # (pairs, ...)
        return p[0] if pair is None else p[pair]

    def _base_config(self) -> dict:
        return {"type": type(self).__name__, "cutoff": self.cutoff, "species": self.species}


def _edge_numbers(graph: Graph, like: Tensor) -> tuple[Tensor, Tensor]:
    """Atomic numbers of the centre and neighbour of each edge, (edges,) in like's dtype."""
    z = graph.numbers.to(like.dtype)  # (atoms,)
    return z[graph.i], z[graph.j]


def _check_r_on(name: str, r_on, cutoff: float) -> float | None:
    if r_on is None:
        return None
    r_on = float(r_on)
    if not 0 <= r_on < cutoff:
        raise ValueError(f"{name}: r_on must satisfy 0 <= r_on < cutoff={cutoff}, got {r_on}")
    return r_on


# --------------------------------------------------------------------------- models
@register
class LennardJones(PairPotential):
    """Lennard-Jones u(r) = 4 eps [(sigma/r)^12 - (sigma/r)^6] (:func:`kernels.lj_energy`).

    Options (at most one): ``shift=True`` subtracts u(cutoff) so the energy is continuous
    (forces jump at the cutoff; ASE's ``LennardJones(smooth=False)``, LAMMPS
    ``pair_modify shift yes``); ``r_on`` multiplies u by the XPLOR switch between ``r_on``
    and ``cutoff`` (:func:`kernels.xplor_switch`; ASE's ``smooth=True, ro=r_on``).
    Trainable per pair: ``epsilon`` (eV), ``sigma`` (Angstrom).
    """

    def __init__(self, epsilon=1.0, sigma=1.0, cutoff: float = 3.0, species=None,
                 shift: bool = False, r_on: float | None = None) -> None:
        super().__init__(cutoff, species)
        self._param("epsilon", epsilon)
        self._param("sigma", sigma)
        self.shift = bool(shift)
        self.r_on = _check_r_on("LennardJones", r_on, self.cutoff)
        if self.shift and self.r_on is not None:
            raise ValueError("LennardJones: choose shift=True or r_on, not both")

    def pair_energy(self, r, pair, graph):
        eps, sig = self._get("epsilon", pair, r), self._get("sigma", pair, r)  # (edges,)
        e = K.lj_energy(r, eps, sig)
        if self.shift:
            e = e - K.lj_energy(torch.full_like(r, self.cutoff), eps, sig)
        if self.r_on is not None:
            e = e * K.xplor_switch(r, self.r_on, self.cutoff)
        return e

    def to_config(self) -> dict:
        return {**self._base_config(), "epsilon": self._table("epsilon"),
                "sigma": self._table("sigma"), "shift": self.shift, "r_on": self.r_on}


@register
class Morse(PairPotential):
    """Morse u(r) = D0 [exp(-2 alpha (r - r0)) - 2 exp(-alpha (r - r0))] (:func:`kernels.morse_energy`).

    Options (at most one): ``shift=True`` subtracts u(cutoff); ``r_on`` multiplies u by the
    quintic smoothstep between ``r_on`` and ``cutoff`` (:func:`kernels.smoothstep_switch`),
    which is ASE's ``MorsePotential`` with rcut1 = r_on / r0, rcut2 = cutoff / r0 and
    rho0 = alpha r0. Trainable per pair: ``epsilon`` = D0 (eV), ``alpha`` (1/Angstrom),
    ``r0`` (Angstrom).
    """

    def __init__(self, epsilon=1.0, alpha=6.0, r0=1.0, cutoff: float = 2.7, species=None,
                 shift: bool = False, r_on: float | None = None) -> None:
        super().__init__(cutoff, species)
        self._param("epsilon", epsilon)
        self._param("alpha", alpha)
        self._param("r0", r0)
        self.shift = bool(shift)
        self.r_on = _check_r_on("Morse", r_on, self.cutoff)
        if self.shift and self.r_on is not None:
            raise ValueError("Morse: choose shift=True or r_on, not both")

    def pair_energy(self, r, pair, graph):
        eps, alpha, r0 = (self._get(n, pair, r) for n in ("epsilon", "alpha", "r0"))
        e = K.morse_energy(r, eps, alpha, r0)  # (edges,)
        if self.shift:
            e = e - K.morse_energy(torch.full_like(r, self.cutoff), eps, alpha, r0)
        if self.r_on is not None:
            e = e * K.smoothstep_switch(r, self.r_on, self.cutoff)
        return e

    def to_config(self) -> dict:
        return {**self._base_config(), "epsilon": self._table("epsilon"),
                "alpha": self._table("alpha"), "r0": self._table("r0"), "shift": self.shift,
                "r_on": self.r_on}


@register
class SoftRepulsion(PairPotential):
    """Soft repulsion u(r) = eps (sigma/r)^n (:func:`kernels.soft_repulsion_energy`).

    ``n`` is a fixed exponent (not trained); ``shift=True`` subtracts u(cutoff).
    Trainable per pair: ``epsilon`` (eV), ``sigma`` (Angstrom).
    """

    def __init__(self, epsilon=1.0, sigma=1.0, cutoff: float = 3.0, n: float = 12.0,
                 species=None, shift: bool = False) -> None:
        super().__init__(cutoff, species)
        self._param("epsilon", epsilon)
        self._param("sigma", sigma)
        self.n = float(n)
        if not self.n > 0:
            raise ValueError(f"SoftRepulsion: exponent n must be positive, got {n}")
        self.shift = bool(shift)

    def pair_energy(self, r, pair, graph):
        eps, sig = self._get("epsilon", pair, r), self._get("sigma", pair, r)  # (edges,)
        e = K.soft_repulsion_energy(r, eps, sig, self.n)
        if self.shift:
            e = e - K.soft_repulsion_energy(torch.full_like(r, self.cutoff), eps, sig, self.n)
        return e

    def to_config(self) -> dict:
        return {**self._base_config(), "epsilon": self._table("epsilon"),
                "sigma": self._table("sigma"), "n": self.n, "shift": self.shift}


@register
class ZBL(PairPotential):
    """Ziegler-Biersack-Littmark universal screened nuclear repulsion, LAMMPS switching.

    u(r) = (e^2 / 4 pi eps0) Z_i Z_j / r phi(r / a) + S(r), a = 0.46850/(Z_i^0.23 + Z_j^0.23),
    with the LAMMPS ``pair_style zbl inner outer`` switching S that brings energy, force and
    its derivative to zero at ``outer`` (:func:`kernels.zbl_energy`). Z are the atoms'
    atomic numbers; there are no trainable parameters. ``cutoff`` = ``outer``.
    """

    def __init__(self, inner: float = 2.0, outer: float = 3.0) -> None:
        super().__init__(outer, None)
        self.inner = float(inner)
        if not 0 < self.inner < self.cutoff:
            raise ValueError(f"ZBL: need 0 < inner < outer, got inner={inner}, outer={outer}")

    @property
    def outer(self) -> float:
        return self.cutoff

    def pair_energy(self, r, pair, graph):
        zi, zj = _edge_numbers(graph, r)
        return K.zbl_energy(r, zi, zj, self.inner, self.cutoff)

    def to_config(self) -> dict:
        return {"type": "ZBL", "inner": self.inner, "outer": self.cutoff}


@register
class SplinePair(PairPotential):
    """Tabulated pair energy: a cubic spline through trainable values at fixed knots.

    ``knots`` (Angstrom, strictly increasing, at least 3); the last knot is the cutoff and
    the spline value there is fixed at 0; ``values`` (eV) are the values at the other
    knots, (knots - 1,) per pair. ``bc="natural"`` (zero second derivative at both ends)
    or ``bc="clamped"`` with end slopes ``slopes=(s_first, s_cutoff)`` (eV/Angstrom; the
    default (0, 0) gives zero force at the cutoff). Below the first knot the spline continues
    linearly. Formulas: :func:`kernels.spline_second_derivative_map`,
    :func:`kernels.cubic_spline`.
    """

    def __init__(self, knots: Sequence[float], values, species=None, bc: str = "natural",
                 slopes: Sequence[float] = (0.0, 0.0)) -> None:
        knots_t = torch.as_tensor(np.asarray(knots, dtype=np.float64))
        if knots_t.ndim != 1 or len(knots_t) < 3 or not bool((knots_t[1:] > knots_t[:-1]).all()):
            raise ValueError(f"SplinePair: knots must be >= 3 strictly increasing values, "
                             f"got {list(np.asarray(knots).reshape(-1))}")
        if not float(knots_t[0]) > 0:
            raise ValueError("SplinePair: the first knot must be positive")
        super().__init__(float(knots_t[-1]), species)
        self.bc = str(bc)
        self.slopes = tuple(float(s) for s in slopes)
        gmat, gvec = K.spline_second_derivative_map(knots_t, self.bc, self.slopes)
        self.register_buffer("knots", knots_t, persistent=False)
        self.register_buffer("_gmat", gmat, persistent=False)
        self.register_buffer("_gvec", gvec, persistent=False)
        self._param("values", values, (len(knots_t) - 1,))

    def pair_energy(self, r, pair, graph):
        vals = self.values.to(r.dtype)  # (pairs, knots - 1)
        y = torch.cat([vals, torch.zeros_like(vals[:, :1])], dim=1)  # (pairs, knots)
        m = y @ self._gmat.to(r.dtype).T + self._gvec.to(r.dtype)  # (pairs, knots)
        if pair is None:
            y, m = y.expand(r.shape[0], -1), m.expand(r.shape[0], -1)  # (edges, knots)
        else:
            y, m = y[pair], m[pair]  # (edges, knots)
        return K.cubic_spline(r, self.knots.to(r.dtype), y, m)

    def to_config(self) -> dict:
        cfg = {"type": "SplinePair", "knots": self.knots.double().tolist(),
               "values": self._table("values"), "species": self.species, "bc": self.bc}
        if self.bc == "clamped":
            cfg["slopes"] = list(self.slopes)
        return cfg


@register
class PairFunction(PairPotential):
    """Any pair energy ``fn(r, z_i, z_j) -> (edges,)`` in eV, given as a torch callable.

    ``r`` (edges,) Angstrom and ``z_i``, ``z_j`` (edges,) atomic numbers (as floats) of the
    pairs inside ``cutoff``; ``shift=True`` subtracts fn(cutoff, z_i, z_j). An ``nn.Module``
    ``fn`` is registered as a submodule, so its parameters train. ``to_config`` works when
    ``fn`` is importable by name (a module-level function), stored as "module:qualname";
    ``fn`` may also be passed as such a string.
    """

    def __init__(self, fn: Callable | str, cutoff: float, shift: bool = False) -> None:
        super().__init__(cutoff, None)
        if isinstance(fn, str):
            fn = _import_callable(fn)
        if not callable(fn):
            raise TypeError(f"PairFunction: fn must be callable, got {fn!r}")
        self.fn = fn
        self.shift = bool(shift)

    def pair_energy(self, r, pair, graph):
        zi, zj = _edge_numbers(graph, r)
        e = self.fn(r, zi, zj)
        if not isinstance(e, Tensor) or e.shape != r.shape:
            raise ValueError(f"PairFunction: fn must return a tensor of shape {tuple(r.shape)} "
                             f"(one energy per edge), got {getattr(e, 'shape', type(e))}")
        if self.shift:
            e = e - self.fn(torch.full_like(r, self.cutoff), zi, zj)
        return e

    def to_config(self) -> dict:
        fn = self.fn
        name = f"{getattr(fn, '__module__', None)}:{getattr(fn, '__qualname__', None)}"
        if isinstance(fn, nn.Module) or "<" in name or name.startswith("None"):
            raise ValueError(f"PairFunction: cannot serialise {fn!r}; use a module-level "
                             "function (stored by its import name)")
        return {"type": "PairFunction", "fn": name, "cutoff": self.cutoff, "shift": self.shift}


def _import_callable(name: str) -> Callable:
    module, _, qual = name.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"PairFunction: cannot import {name!r} ({err})") from err
    return obj
