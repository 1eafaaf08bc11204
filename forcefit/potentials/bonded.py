"""Bonded energy terms over an explicit topology: bonds, angles, dihedrals, spline bonds.

Units: these terms take the units of their parameters. Inside forcefit's all-atom layers that is
Angstrom and eV (kb in eV/A^2, kth in eV/rad^2, kd in eV); the coarse-grained module
(:mod:`forcefit.cg`) uses them in the user's units (e.g. nm and kJ/mol) and records those in
``units`` (kept in :meth:`to_config`). Angles are in radians everywhere.

Every term is an energy model of the protocol in :mod:`forcefit.potentials.base`:
``forward(graph, vectors) -> per-atom energies (atoms,)``. Bonded terms need no neighbour list:
they read ``graph.positions`` and take the minimum image through ``graph.cell`` / ``graph.pbc``,
so ``cutoff`` is 0 and ``vectors`` is ignored (the strain that :func:`~.base.evaluate` applies to
positions and cell reaches them through ``graph.positions`` and ``graph.cell``, so stress works).

Topology: index arrays with *local* atom indices of one structure (0 <= index < atoms of the
structure). In a batched graph the same topology is applied to every structure (the usual case of
frames of one molecule / one coarse-grained system); every structure must have more atoms than the
largest index. Each term has a type per bond (angle, dihedral) selecting its parameters.

Index names: ``structures`` (S), ``atoms`` (N), ``terms`` (T: bonds, angles or dihedrals of the
topology), ``types`` (parameter sets), ``knots`` (K).

Formulas (GROMACS conventions, the 1/2 included; LAMMPS' harmonic K equals k/2):

- harmonic bond: E = 1/2 kb (r - b0)^2 (GROMACS manual, "Harmonic potential"; jax-md
  ``simple_spring_bond`` with alpha = 2 used by chemtrain).
- harmonic angle: E = 1/2 kth (theta - th0)^2, theta in radians (GROMACS manual, "Harmonic angle
  potential").
- periodic dihedral: E = kd (1 + cos(n phi - phi0)) (GROMACS manual, "Proper dihedrals: periodic
  type"; CHARMM). phi follows the IUPAC/IUB convention: trans is phi = pi.
- spline bond: E = S(r), a natural cubic spline through (r_k, v_k) on equally spaced knots,
  continued linearly with the end slopes outside [r_min, r_max] (Press et al., Numerical Recipes,
  section 3.3, "Cubic spline interpolation").

Each energy is shared equally among the atoms of its term (1/2 per atom for a bond, 1/3 for an
angle, 1/4 for a dihedral) to give per-atom energies.

Parameters that must stay positive (force constants, bond lengths) are stored as their logarithm
(``log_kb``, ``log_b0``, ``log_kth``); the equilibrium angle lies in (0, pi) through
th0 = pi * sigmoid(raw). The physical values are properties (``kb``, ``b0``, ...), and
:meth:`to_config` writes physical values, so a config is readable.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ..neighbors import Graph
from .registry import register

__all__ = [
    "HarmonicAngle",
    "HarmonicBond",
    "PeriodicDihedral",
    "SplineBond",
    "bond_geometry",
    "dihedral_angle",
    "harmonic_angle_energy",
    "harmonic_bond_energy",
    "minimum_image",
    "natural_spline_second_derivatives",
    "periodic_dihedral_energy",
    "spline_energy",
    "valence_angle",
]


# ---------------------------------------------------------------------------------------------
# pure kernels
# ---------------------------------------------------------------------------------------------
def harmonic_bond_energy(r: torch.Tensor, kb: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
    """E = 1/2 kb (r - b0)^2 (GROMACS manual, harmonic bond). Broadcasts over its arguments."""
    return 0.5 * kb * (r - b0) ** 2


def harmonic_angle_energy(theta: torch.Tensor, kth: torch.Tensor, th0: torch.Tensor) -> torch.Tensor:
    """E = 1/2 kth (theta - th0)^2, angles in radians (GROMACS manual, harmonic angle)."""
    return 0.5 * kth * (theta - th0) ** 2


def periodic_dihedral_energy(phi: torch.Tensor, kd: torch.Tensor, n: torch.Tensor,
                             phi0: torch.Tensor) -> torch.Tensor:
    """E = kd (1 + cos(n phi - phi0)) (GROMACS manual, periodic proper dihedral; CHARMM)."""
    return kd * (1.0 + torch.cos(n * phi - phi0))


def natural_spline_second_derivatives(n_knots: int, spacing: float,
                                      dtype=torch.float64) -> torch.Tensor:
    """Matrix L (knots, knots) with M = L @ v: second derivatives of the natural cubic spline.

    For equal spacing h the interior equations are
    M_{k-1} + 4 M_k + M_{k+1} = 6 (v_{k-1} - 2 v_k + v_{k+1}) / h^2, with M_0 = M_{K-1} = 0
    (Numerical Recipes, eq. 3.3.7). The system does not depend on v, so L is computed once.
    """
    k = int(n_knots)
    if k < 3:
        raise ValueError(f"a natural cubic spline needs at least 3 knots, got n_knots={k}")
    a = np.zeros((k, k))
    rhs = np.zeros((k, k))
    a[0, 0] = a[-1, -1] = 1.0
    for row in range(1, k - 1):
        a[row, row - 1 : row + 2] = (1.0, 4.0, 1.0)
        rhs[row, row - 1 : row + 2] = np.array([1.0, -2.0, 1.0]) * 6.0 / spacing**2
    return torch.as_tensor(np.linalg.solve(a, rhs), dtype=dtype)


def spline_energy(r: torch.Tensor, r_min: float, spacing: float, values: torch.Tensor,
                  second: torch.Tensor) -> torch.Tensor:
    """Natural cubic spline S(r) through equally spaced knots, linear beyond the ends.

    ``r``: (T,), ``values`` and ``second`` (second derivatives M): (T, K) per term.
    Inside a knot interval, with t = (r - r_k)/h (Numerical Recipes eq. 3.3.3):
    S = (1-t) v_k + t v_{k+1} + h^2/6 [((1-t)^3 - (1-t)) M_k + (t^3 - t) M_{k+1}].
    Outside [r_min, r_max]: S(r_end) + S'(r_end) (r - r_end), with
    S'(r_min) = (v_1 - v_0)/h - h M_1/6 and S'(r_max) = (v_K - v_{K-1})/h + h M_{K-2}/6 (M=0 ends).
    """
    k = values.shape[-1]
    h = spacing
    r_max = r_min + h * (k - 1)
    x = (r - r_min) / h  # (T,)
    idx = torch.clamp(torch.floor(x.detach()), 0, k - 2).long()  # (T,)
    t = torch.clamp(x - idx.to(x.dtype), 0.0, 1.0)  # (T,) inside [0, 1]
    v0 = values.gather(-1, idx[:, None])[:, 0]  # (T,)
    v1 = values.gather(-1, idx[:, None] + 1)[:, 0]  # (T,)
    m0 = second.gather(-1, idx[:, None])[:, 0]  # (T,)
    m1 = second.gather(-1, idx[:, None] + 1)[:, 0]  # (T,)
    s = (1 - t) * v0 + t * v1 + h * h / 6.0 * (((1 - t) ** 3 - (1 - t)) * m0 + (t**3 - t) * m1)
    slope_lo = (values[:, 1] - values[:, 0]) / h - h * second[:, 1] / 6.0  # (T,)
    slope_hi = (values[:, -1] - values[:, -2]) / h + h * second[:, -2] / 6.0  # (T,)
    below = values[:, 0] + slope_lo * (r - r_min)
    above = values[:, -1] + slope_hi * (r - r_max)
    return torch.where(r < r_min, below, torch.where(r > r_max, above, s))


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
_IMAGES = torch.tensor([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])


def minimum_image(d: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Shortest periodic image of displacements ``d`` (T, 3) with per-row ``cell`` (T, 3, 3).

    ``pbc`` (T, 3) bool. d' = d + n @ cell with integer n (zero along open directions): first
    n = -round(d @ cell^-1), then the best of the 27 neighbouring images, which makes it exact
    for skewed cells as long as the true minimum image is within one image of the rounded one
    (displacements shorter than half the smallest cell width always are). The integers are
    constants for autograd, so derivatives with respect to ``cell`` (strain, stress) are exact.
    Rows with no periodic direction are returned unchanged.
    """
    if d.shape[0] == 0:
        return d
    periodic = pbc.any(dim=-1)  # (T,)
    eye = torch.eye(3, dtype=d.dtype, device=d.device).expand_as(cell)
    safe = torch.where(periodic[:, None, None], cell, eye)  # (T, 3, 3)
    with torch.no_grad():
        frac = torch.linalg.solve(safe.transpose(1, 2), d.unsqueeze(-1)).squeeze(-1)  # (T, 3)
        n = -torch.round(frac) * pbc  # (T, 3)
        images = _IMAGES.to(d) * pbc[:, None, :]  # (T, 27, 3)
        cand = n[:, None, :] + images  # (T, 27, 3)
        trial = d[:, None, :] + torch.einsum("tia,tab->tib", cand, safe)  # (T, 27, 3)
        best = trial.pow(2).sum(-1).argmin(dim=1)  # (T,)
        n = cand[torch.arange(len(d), device=d.device), best]  # (T, 3)
        n = n * periodic[:, None]
    return d + torch.einsum("ta,tab->tb", n, safe)  # (T, 3)


def _term_atoms(graph: Graph, topology: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Global atom indices (S*T, k) of ``topology`` (T, k) applied to every structure.

    Returns the indices and the structure of each term (S*T,).
    """
    n_struct = graph.n_structures
    if topology.numel() and graph.n_atoms.numel():
        smallest = int(graph.n_atoms.min())
        largest = int(topology.max())
        if largest >= smallest:
            raise ValueError(
                f"{what}: topology refers to atom {largest} but a structure in the batch has only "
                f"{smallest} atoms"
            )
    offsets = torch.cumsum(graph.n_atoms, 0) - graph.n_atoms  # (S,)
    idx = offsets[:, None, None] + topology[None].to(offsets.device)  # (S, T, k)
    owner = torch.arange(n_struct, device=offsets.device).repeat_interleave(len(topology))
    return idx.reshape(-1, topology.shape[1]), owner  # (S*T, k), (S*T,)


def bond_geometry(graph: Graph, idx: torch.Tensor, owner: torch.Tensor) -> list[torch.Tensor]:
    """Minimum-image vectors x[idx[:, a+1]] - x[idx[:, a]] along each chain of atoms in ``idx``.

    ``idx`` (T, k) global atom indices, ``owner`` (T,) structure of each term; returns k-1
    tensors (T, 3).
    """
    pos = graph.positions
    cell = graph.cell[owner]  # (T, 3, 3)
    pbc = graph.pbc[owner]  # (T, 3)
    return [minimum_image(pos[idx[:, a + 1]] - pos[idx[:, a]], cell, pbc)
            for a in range(idx.shape[1] - 1)]


def valence_angle(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle between vectors a and c (T, 3): theta = atan2(|a x c|, a . c), in [0, pi].

    atan2 keeps full precision near 0 and pi where acos loses it (the derivative is still
    singular exactly at 0 and pi, as for every angle potential).
    """
    cross = torch.linalg.cross(a, c)  # (T, 3)
    return torch.atan2(cross.norm(dim=-1), (a * c).sum(-1))


def dihedral_angle(b1: torch.Tensor, b2: torch.Tensor, b3: torch.Tensor) -> torch.Tensor:
    """Dihedral angle of the chain with bond vectors b1, b2, b3 (T, 3), in (-pi, pi].

    phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3)) (Blondel and Karplus,
    J. Comput. Chem. 17, 1132 (1996)); cis is 0, trans is pi (IUPAC/IUB).
    """
    n1 = torch.linalg.cross(b1, b2)  # (T, 3)
    n2 = torch.linalg.cross(b2, b3)  # (T, 3)
    y = b2.norm(dim=-1) * (b1 * n2).sum(-1)
    x = (n1 * n2).sum(-1)
    return torch.atan2(y, x)


def _per_atom(graph: Graph, idx: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Share each term's energy (T,) equally among its atoms idx (T, k) -> (atoms,)."""
    k = idx.shape[1]
    out = torch.zeros(len(graph.positions), dtype=energy.dtype, device=energy.device)
    share = (energy / k)[:, None].expand(-1, k)  # (T, k)
    return out.index_add(0, idx.reshape(-1), share.reshape(-1))


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------
def _as_topology(value, k: int, what: str) -> torch.Tensor:
    try:
        arr = np.asarray(value, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: topology must be integer atom indices ({err})") from None
    if arr.size == 0:
        arr = arr.reshape(0, k)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ValueError(f"{what}: topology must have shape (terms, {k}), got {arr.shape}")
    if (arr < 0).any():
        raise ValueError(f"{what}: topology has a negative atom index")
    same = np.zeros(len(arr), dtype=bool)
    for a in range(k):
        for b in range(a + 1, k):
            same |= arr[:, a] == arr[:, b]
    if same.any():
        raise ValueError(f"{what}: term {int(np.argmax(same))} {arr[same][0].tolist()} repeats an atom")
    return torch.as_tensor(arr)


def _as_types(types, n_terms: int, what: str) -> tuple[torch.Tensor, int]:
    t = np.zeros(n_terms, dtype=np.int64) if types is None else np.asarray(types, dtype=np.int64)
    if t.shape != (n_terms,):
        raise ValueError(f"{what}: 'types' must have one entry per term ({n_terms}), got {t.shape}")
    if (t < 0).any():
        raise ValueError(f"{what}: 'types' must be >= 0")
    return torch.as_tensor(t), int(t.max()) + 1 if n_terms else 1


def _per_type(value, n_types: int, name: str, what: str, *, positive: bool = False) -> torch.Tensor:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, n_types)
    if v.shape != (n_types,):
        raise ValueError(f"{what}: parameter '{name}' needs 1 or {n_types} values (one per type), "
                         f"got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: parameter '{name}' is not finite: {v.tolist()}")
    if positive and (v <= 0).any():
        raise ValueError(f"{what}: parameter '{name}' must be > 0, got {v.tolist()}")
    return torch.as_tensor(v, dtype=torch.get_default_dtype())


class _Bonded(nn.Module):
    """Shared plumbing: topology, types, units, config."""

    cutoff: float = 0.0
    arity: int = 2
    topology_name: str = "bonds"  # the constructor argument holding the topology

    def __init__(self, topology, types, units: dict | None):
        super().__init__()
        what = type(self).__name__
        self.register_buffer("topology", _as_topology(topology, self.arity, what))
        types_t, n_types = _as_types(types, len(self.topology), what)
        self.register_buffer("types", types_t)
        self.n_types = n_types
        self.units = dict(units) if units else None
        self.cutoff = 0.0

    def _base_config(self) -> dict:
        cfg = {"type": type(self).__name__, self.topology_name: self.topology.tolist(),
               "types": self.types.tolist()}
        if self.units:
            cfg["units"] = dict(self.units)
        return cfg

    def permuted(self, perm) -> _Bonded:
        """A copy for the atoms reordered by ``perm``: new atom a is old atom perm[a].

        An explicit topology names atoms, so it must be relabelled with them (the physics
        kit's permutation check needs this; a term is not invariant to renaming its atoms).
        """
        perm_t = torch.as_tensor(np.asarray(perm, dtype=np.int64))
        if sorted(perm_t.tolist()) != list(range(len(perm_t))):
            raise ValueError(f"{type(self).__name__}.permuted: 'perm' is not a permutation")
        if self.topology.numel() and int(self.topology.max()) >= len(perm_t):
            raise ValueError(f"{type(self).__name__}.permuted: topology refers to atom "
                             f"{int(self.topology.max())}, perm has {len(perm_t)} entries")
        inverse = torch.argsort(perm_t)  # old index -> new index
        out = copy.deepcopy(self)
        out.topology = inverse[self.topology]
        return out

    def _vectors(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        idx, owner = _term_atoms(graph, self.topology, type(self).__name__)
        types = self.types.repeat(graph.n_structures)  # (S*T,)
        return idx, types, bond_geometry(graph, idx, owner)


@register
class HarmonicBond(_Bonded):
    """Harmonic bonds E = 1/2 kb (r - b0)^2 over ``bonds`` (T, 2), one (kb, b0) per bond type.

    Stored parameters: ``log_kb``, ``log_b0`` (types,), so kb, b0 > 0 during fitting (the
    chemtrain seed fits log b0 and log kb). Forces are linear in (kb, kb*b0): see
    :func:`forcefit.cg.least_squares_harmonic_bond` for the closed-form fit.
    """

    arity = 2

    def __init__(self, bonds, kb=1.0, b0=1.0, types=None, *, units: dict | None = None):
        super().__init__(bonds, types, units)
        self.log_kb = nn.Parameter(torch.log(_per_type(kb, self.n_types, "kb", "HarmonicBond",
                                                       positive=True)))
        self.log_b0 = nn.Parameter(torch.log(_per_type(b0, self.n_types, "b0", "HarmonicBond",
                                                       positive=True)))

    @property
    def kb(self) -> torch.Tensor:
        return self.log_kb.exp()

    @property
    def b0(self) -> torch.Tensor:
        return self.log_b0.exp()

    def bond_energy(self, r: torch.Tensor, bond_type: int = 0) -> torch.Tensor:
        """Energy of one bond of ``bond_type`` at lengths ``r`` (any shape)."""
        return harmonic_bond_energy(r, self.kb[bond_type].to(r.dtype),
                                    self.b0[bond_type].to(r.dtype))

    def forward(self, graph: Graph, vectors: torch.Tensor | None = None) -> torch.Tensor:
        idx, types, (b,) = self._vectors(graph)
        r = b.norm(dim=-1)  # (S*T,)
        e = harmonic_bond_energy(r, self.kb.to(r.dtype)[types], self.b0.to(r.dtype)[types])
        return _per_atom(graph, idx, e)

    def to_config(self) -> dict:
        return {**self._base_config(), "kb": self.kb.tolist(), "b0": self.b0.tolist()}


@register
class HarmonicAngle(_Bonded):
    """Harmonic angles E = 1/2 kth (theta - th0)^2 over ``angles`` (T, 3) = (i, j, k), j the apex.

    Radians. Stored: ``log_kth`` and ``raw_th0`` with th0 = pi * sigmoid(raw_th0) in (0, pi).
    """

    arity = 3
    topology_name = "angles"

    def __init__(self, angles, kth=1.0, th0=math.pi / 2, types=None, *, units: dict | None = None):
        super().__init__(angles, types, units)
        th = _per_type(th0, self.n_types, "th0", "HarmonicAngle")
        if ((th <= 0) | (th >= math.pi)).any():
            raise ValueError(f"HarmonicAngle: parameter 'th0' must lie in (0, pi) radians, got "
                             f"{th.tolist()}")
        self.log_kth = nn.Parameter(torch.log(_per_type(kth, self.n_types, "kth", "HarmonicAngle",
                                                        positive=True)))
        frac = th / math.pi
        self.raw_th0 = nn.Parameter(torch.log(frac / (1 - frac)))

    @property
    def kth(self) -> torch.Tensor:
        return self.log_kth.exp()

    @property
    def th0(self) -> torch.Tensor:
        return math.pi * torch.sigmoid(self.raw_th0)

    def forward(self, graph: Graph, vectors: torch.Tensor | None = None) -> torch.Tensor:
        idx, types, (b1, b2) = self._vectors(graph)
        theta = valence_angle(-b1, b2)  # (S*T,) angle at the apex between j->i and j->k
        e = harmonic_angle_energy(theta, self.kth.to(theta.dtype)[types],
                                  self.th0.to(theta.dtype)[types])  # (S*T,)
        return _per_atom(graph, idx, e)

    def to_config(self) -> dict:
        return {**self._base_config(), "kth": self.kth.tolist(), "th0": self.th0.tolist()}


@register
class PeriodicDihedral(_Bonded):
    """Proper dihedrals E = kd (1 + cos(n phi - phi0)) over ``dihedrals`` (T, 4) = (i, j, k, l).

    ``kd`` (any sign) and ``phi0`` (radians) are trained as they are; the multiplicity ``n`` is a
    fixed integer per type. List a dihedral twice with two types for a Fourier series.
    """

    arity = 4
    topology_name = "dihedrals"

    def __init__(self, dihedrals, kd=1.0, n=3, phi0=0.0, types=None, *,
                 units: dict | None = None):
        super().__init__(dihedrals, types, units)
        mult = _per_type(n, self.n_types, "n", "PeriodicDihedral")
        if (mult != torch.round(mult)).any() or (mult < 0).any():
            raise ValueError(f"PeriodicDihedral: multiplicity 'n' must be integers >= 0, got "
                             f"{mult.tolist()}")
        self.register_buffer("n", mult)
        self.kd = nn.Parameter(_per_type(kd, self.n_types, "kd", "PeriodicDihedral"))
        self.phi0 = nn.Parameter(_per_type(phi0, self.n_types, "phi0", "PeriodicDihedral"))

    def forward(self, graph: Graph, vectors: torch.Tensor | None = None) -> torch.Tensor:
        idx, types, (b1, b2, b3) = self._vectors(graph)
        phi = dihedral_angle(b1, b2, b3)  # (S*T,)
        e = periodic_dihedral_energy(phi, self.kd.to(phi.dtype)[types], self.n[types].to(phi),
                                     self.phi0.to(phi.dtype)[types])  # (S*T,)
        return _per_atom(graph, idx, e)

    def to_config(self) -> dict:
        return {**self._base_config(), "kd": self.kd.tolist(), "n": [int(x) for x in self.n],
                "phi0": self.phi0.tolist()}


@register
class SplineBond(_Bonded):
    """Tabulated bond potential: a natural cubic spline E = S_type(r) on equally spaced knots.

    ``bonds`` (T, 2); knots r_k = r_min + k h, k = 0..n_knots-1, h = (r_max - r_min)/(n_knots-1);
    trainable knot energies ``values`` (types, knots); linear continuation outside the knots (see
    :func:`spline_energy`). The energy is linear in ``values``, so forces are too (closed-form
    least squares applies: :func:`forcefit.cg.least_squares_linear`). ``values`` default to a
    harmonic well 1/2 kb (r - b0)^2 when ``kb``/``b0`` are given, else zeros.
    """

    arity = 2

    def __init__(self, bonds, r_min: float, r_max: float, n_knots: int = 32, values=None,
                 types=None, *, kb: float | None = None, b0: float | None = None,
                 units: dict | None = None):
        super().__init__(bonds, types, units)
        r_min, r_max, n_knots = float(r_min), float(r_max), int(n_knots)
        if not (math.isfinite(r_min) and math.isfinite(r_max) and 0 <= r_min < r_max):
            raise ValueError(f"SplineBond: need 0 <= r_min < r_max, got r_min={r_min}, "
                             f"r_max={r_max}")
        if n_knots < 3:
            raise ValueError(f"SplineBond: parameter 'n_knots' must be >= 3, got {n_knots}")
        self.r_min, self.r_max, self.n_knots = r_min, r_max, n_knots
        self.spacing = (r_max - r_min) / (n_knots - 1)
        knots = torch.linspace(r_min, r_max, n_knots, dtype=torch.float64)
        if values is None:
            v = (0.5 * kb * (knots - b0) ** 2 if kb is not None and b0 is not None
                 else torch.zeros(n_knots, dtype=torch.float64)).expand(self.n_types, -1)
        else:
            v = torch.as_tensor(np.asarray(values, dtype=np.float64))
            if v.ndim == 1:
                v = v.expand(self.n_types, -1)
            if v.shape != (self.n_types, n_knots):
                raise ValueError(f"SplineBond: parameter 'values' must have shape "
                                 f"({self.n_types}, {n_knots}), got {tuple(v.shape)}")
            if not torch.isfinite(v).all():
                raise ValueError("SplineBond: parameter 'values' is not finite")
        self.values = nn.Parameter(v.clone().contiguous().to(torch.get_default_dtype()))
        self.register_buffer("knots", knots)
        self.register_buffer("second_matrix",
                             natural_spline_second_derivatives(n_knots, self.spacing))

    def bond_energy(self, r: torch.Tensor, bond_type: int = 0) -> torch.Tensor:
        """Energy of one bond of ``bond_type`` at lengths ``r`` (any shape)."""
        flat = r.reshape(-1)
        v = self.values[bond_type].to(r.dtype)  # (K,)
        vals = v.expand(len(flat), -1)  # (T, K)
        second = (self.second_matrix.to(v) @ v).expand(len(flat), -1)  # (T, K)
        return spline_energy(flat, self.r_min, self.spacing, vals, second).reshape(r.shape)

    def forward(self, graph: Graph, vectors: torch.Tensor | None = None) -> torch.Tensor:
        idx, types, (b,) = self._vectors(graph)
        r = b.norm(dim=-1)  # (S*T,)
        values = self.values.to(r.dtype)  # (types, K)
        second = values @ self.second_matrix.to(values).T  # (types, K)
        e = spline_energy(r, self.r_min, self.spacing, values[types], second[types])  # (S*T,)
        return _per_atom(graph, idx, e)

    def to_config(self) -> dict:
        return {**self._base_config(), "r_min": self.r_min, "r_max": self.r_max,
                "n_knots": self.n_knots, "values": self.values.tolist()}
