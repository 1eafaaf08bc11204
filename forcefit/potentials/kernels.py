"""Pure energy kernels of the classical potentials: functions of distances and parameters.

Units: distances in Angstrom, energies in eV, angles as cosines (dimensionless).
Every kernel takes tensors that broadcast against each other (per-edge parameter values
gathered from a pair table, or scalars) and returns the energy of ONE pair (or one
triplet), shape (edges,) (or (triplets,)). No cutoff masking happens here: the modules in
:mod:`forcefit.potentials.pair` mask edges with ``r >= cutoff`` and split pair energies
between the two atoms.

Index names: ``edges`` (directed pairs), ``triplets`` (centre i with two neighbours j < k),
``knots`` (spline knots).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

#: e^2 / (4 pi eps0) in eV Angstrom, the value LAMMPS uses in ``units metal`` (qqr2e).
COULOMB_EV_A = 14.399645
#: ZBL universal screening length prefactor a0 (Angstrom) and Z exponent (ZBL 1985; LAMMPS
#: ``pair_zbl_const.h``).
ZBL_A0 = 0.46850
ZBL_ZPOW = 0.23
#: ZBL universal screening function phi(x) = sum_k c_k exp(-d_k x).
ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


# --------------------------------------------------------------------------- pair kernels
def lj_energy(r: Tensor, epsilon: Tensor | float, sigma: Tensor | float) -> Tensor:
    """Lennard-Jones pair energy u(r) = 4 eps [(sigma/r)^12 - (sigma/r)^6].

    Source: J. E. Lennard-Jones, Proc. R. Soc. A 106, 463 (1924); the same form as
    ``ase.calculators.lj`` and LAMMPS ``pair_style lj/cut``. Minimum -eps at 2^(1/6) sigma.
    """
    s2 = (sigma / r) ** 2  # (edges,)
    s6 = s2 * s2 * s2  # products, not pow: cheaper forward and backward
    return 4.0 * epsilon * (s6 * s6 - s6)


def morse_energy(r: Tensor, epsilon: Tensor | float, alpha: Tensor | float,
                 r0: Tensor | float) -> Tensor:
    """Morse pair energy u(r) = D0 [exp(-2 alpha (r - r0)) - 2 exp(-alpha (r - r0))].

    Source: P. M. Morse, Phys. Rev. 34, 57 (1929); LAMMPS ``pair_style morse`` form with
    ``epsilon`` = D0 (well depth, eV), ``alpha`` (1/Angstrom) and ``r0`` (Angstrom).
    ASE's ``MorsePotential`` writes the same function with rho0 = alpha r0.
    """
    x = torch.exp(-alpha * (r - r0))  # (edges,)
    return epsilon * x * (x - 2.0)


def soft_repulsion_energy(r: Tensor, epsilon: Tensor | float, sigma: Tensor | float,
                          n: float) -> Tensor:
    """Soft (inverse-power) repulsion u(r) = eps (sigma / r)^n.

    Source: the soft-sphere potential, e.g. Hoover et al., J. Chem. Phys. 52, 4931 (1970).
    """
    return epsilon * (sigma / r) ** n


def zbl_screening(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ZBL universal screening function phi(x) and its first two derivatives in x.

    phi(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x) + 0.28022 e^(-0.40290 x)
    + 0.02817 e^(-0.20162 x).
    Source: J. F. Ziegler, J. P. Biersack, U. Littmark, "The Stopping and Range of Ions in
    Solids" (Pergamon, 1985); the LAMMPS ``pair_style zbl`` documentation.
    """
    phi = torch.zeros_like(x)
    dphi = torch.zeros_like(x)
    d2phi = torch.zeros_like(x)
    for c, d in zip(ZBL_C, ZBL_D):
        e = c * torch.exp(-d * x)  # (edges,)
        phi = phi + e
        dphi = dphi - d * e
        d2phi = d2phi + d * d * e
    return phi, dphi, d2phi


def zbl_screening_length(zi: Tensor, zj: Tensor) -> Tensor:
    """a = 0.46850 / (Z_i^0.23 + Z_j^0.23) in Angstrom (ZBL 1985)."""
    return ZBL_A0 / (zi ** ZBL_ZPOW + zj ** ZBL_ZPOW)


def zbl_bare(r: Tensor, zi: Tensor, zj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Unswitched ZBL energy E(r) = k Z_i Z_j / r phi(r / a) and dE/dr, d2E/dr2.

    k = e^2/(4 pi eps0) = 14.399645 eV Angstrom (LAMMPS metal units). Derivatives by the
    product rule with phi', phi'' from :func:`zbl_screening`.
    """
    a = zbl_screening_length(zi, zj)  # (edges,)
    k = COULOMB_EV_A * zi * zj  # (edges,)
    phi, dphi, d2phi = zbl_screening(r / a)
    e = k * phi / r
    de = k * (dphi / (a * r) - phi / r**2)
    d2e = k * (d2phi / (a * a * r) - 2.0 * dphi / (a * r**2) + 2.0 * phi / r**3)
    return e, de, d2e


def zbl_energy(r: Tensor, zi: Tensor, zj: Tensor, inner: float, outer: float) -> Tensor:
    """ZBL pair energy with the LAMMPS ``pair_style zbl inner outer`` switching.

    E(r) = E_ZBL(r) + S(r), with S(r) = C for r < r1 and
    S(r) = A/3 (r - r1)^3 + B/4 (r - r1)^4 + C for r1 <= r < rc (r1 = inner, rc = outer),
    A = (-3 E'(rc) + (rc - r1) E''(rc)) / (rc - r1)^2,
    B = (2 E'(rc) - (rc - r1) E''(rc)) / (rc - r1)^3,
    C = -E(rc) + (rc - r1) E'(rc) / 2 - (rc - r1)^2 E''(rc) / 12,
    so that E, E' and E'' all vanish at rc. Source: LAMMPS documentation of
    ``pair_style zbl`` (the coefficients are those of ``PairZBL::set_coeff``).
    Valid for r < outer; the caller masks r >= outer.
    """
    zi = torch.as_tensor(zi, dtype=r.dtype, device=r.device)
    zj = torch.as_tensor(zj, dtype=r.dtype, device=r.device)
    rc = torch.full_like(r, outer)
    ec, dec, d2ec = zbl_bare(rc, zi, zj)  # (edges,) each, at the outer cutoff
    tc = outer - inner
    sw_a = (-3.0 * dec + tc * d2ec) / tc**2
    sw_b = (2.0 * dec - tc * d2ec) / tc**3
    sw_c = -ec + 0.5 * tc * dec - tc * tc * d2ec / 12.0
    e, _, _ = zbl_bare(r, zi, zj)
    t = torch.clamp(r - inner, min=0.0)  # (edges,)
    return e + sw_c + t**3 * (sw_a / 3.0 + sw_b / 4.0 * t)


# --------------------------------------------------------------------------- switching
def smoothstep_switch(r: Tensor, r_on: float, r_cut: float) -> Tensor:
    """Quintic smoothstep S(s) = 6 s^5 - 15 s^4 + 10 s^3 with s = (r_cut - r)/(r_cut - r_on).

    1 for r <= r_on, 0 for r >= r_cut, C2 in between. Source: the smooth cutoff of JuLIP.jl
    that ``ase.calculators.morse`` uses (Morse with ``rcut1``/``rcut2``).
    """
    s = torch.clamp((r_cut - r) / (r_cut - r_on), 0.0, 1.0)  # (edges,)
    return s**3 * (10.0 + s * (-15.0 + 6.0 * s))


def xplor_switch(r: Tensor, r_on: float, r_cut: float) -> Tensor:
    """XPLOR/HOOMD switch in r^2: (rc^2 - r^2)^2 (rc^2 + 2 r^2 - 3 ro^2) / (rc^2 - ro^2)^3.

    1 for r <= r_on, 0 for r >= r_cut, C1. Source: HOOMD-blue ``xplor`` mode, as used by
    ``ase.calculators.lj`` with ``smooth=True`` (ro = r_on, rc = r_cut).
    """
    r2 = torch.clamp(r * r, r_on * r_on, r_cut * r_cut)  # (edges,)
    rc2, ro2 = r_cut * r_cut, r_on * r_on
    return (rc2 - r2) ** 2 * (rc2 + 2.0 * r2 - 3.0 * ro2) / (rc2 - ro2) ** 3


# --------------------------------------------------------------------------- Stillinger-Weber
def sw_two_body(r: Tensor, epsilon, sigma, a, big_a, big_b, p: float, q: float) -> Tensor:
    """Stillinger-Weber pair term phi2(r) = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma/(r - a sigma)).

    Source: F. H. Stillinger and T. A. Weber, Phys. Rev. B 31, 5262 (1985), eq. (2.3), in
    the LAMMPS ``pair_style sw`` parameterisation. Valid for r < a sigma.
    """
    sr = sigma / r  # (edges,)
    return big_a * epsilon * (big_b * sr**p - sr**q) * torch.exp(sigma / (r - a * sigma))


def sw_three_body(r_ij: Tensor, r_ik: Tensor, cos_jik: Tensor, epsilon, sigma, a, lam,
                  gamma, cos_theta0) -> Tensor:
    """Stillinger-Weber triplet term
    phi3 = lambda eps (cos theta_jik - cos theta0)^2 exp(gamma sigma/(r_ij - a sigma))
    exp(gamma sigma/(r_ik - a sigma)).

    Source: Stillinger and Weber (1985), eq. (2.5), LAMMPS ``pair_style sw`` form.
    Valid for r_ij, r_ik < a sigma.
    """
    rc = a * sigma
    radial = torch.exp(gamma * sigma / (r_ij - rc) + gamma * sigma / (r_ik - rc))  # (triplets,)
    return lam * epsilon * (cos_jik - cos_theta0) ** 2 * radial


# --------------------------------------------------------------------------- cubic spline
def spline_second_derivative_map(knots: Tensor, bc: str, slopes=(0.0, 0.0)
                                 ) -> tuple[Tensor, Tensor]:
    """Linear map from knot values y (knots,) to spline second derivatives m = G y + g.

    Interior rows: h_{k-1} m_{k-1} + 2 (h_{k-1} + h_k) m_k + h_k m_{k+1}
    = 6 [(y_{k+1} - y_k)/h_k - (y_k - y_{k-1})/h_{k-1}] (standard cubic spline, e.g.
    Press et al., Numerical Recipes, sec. 3.3). ``bc="natural"``: m_0 = m_n = 0.
    ``bc="clamped"``: S'(x_0) = slopes[0], S'(x_n) = slopes[1], i.e.
    2 h_0 m_0 + h_0 m_1 = 6 [(y_1 - y_0)/h_0 - s_0] and
    h_{n-1} m_{n-1} + 2 h_{n-1} m_n = 6 [s_n - (y_n - y_{n-1})/h_{n-1}].
    Returns G (knots, knots) and g (knots,) in the dtype of ``knots``.
    """
    x = knots
    n = len(x) - 1
    h = x[1:] - x[:-1]  # (knots - 1,)
    mat = torch.zeros((n + 1, n + 1), dtype=x.dtype)
    rhs = torch.zeros((n + 1, n + 1), dtype=x.dtype)
    const = torch.zeros(n + 1, dtype=x.dtype)
    for k in range(1, n):  # loop over knots, once at construction (not a hot path)
        mat[k, k - 1], mat[k, k], mat[k, k + 1] = h[k - 1], 2 * (h[k - 1] + h[k]), h[k]
        rhs[k, k + 1] += 6 / h[k]
        rhs[k, k] += -6 / h[k] - 6 / h[k - 1]
        rhs[k, k - 1] += 6 / h[k - 1]
    if bc == "natural":
        mat[0, 0] = mat[n, n] = 1.0
    elif bc == "clamped":
        s0, sn = (float(s) for s in slopes)
        mat[0, 0], mat[0, 1] = 2 * h[0], h[0]
        rhs[0, 1], rhs[0, 0] = 6 / h[0], -6 / h[0]
        const[0] = -6 * s0
        mat[n, n - 1], mat[n, n] = h[n - 1], 2 * h[n - 1]
        rhs[n, n], rhs[n, n - 1] = -6 / h[n - 1], 6 / h[n - 1]
        const[n] = 6 * sn
    else:
        raise ValueError(f"spline bc must be 'natural' or 'clamped', got {bc!r}")
    inv = torch.linalg.inv(mat)
    return inv @ rhs, inv @ const


def cubic_spline(r: Tensor, knots: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """Evaluate the cubic spline with values ``y`` and second derivatives ``m`` at ``r``.

    On [x_k, x_{k+1}] with h = x_{k+1} - x_k:
    S(r) = m_k (x_{k+1} - r)^3/(6h) + m_{k+1} (r - x_k)^3/(6h)
    + (y_k/h - m_k h/6)(x_{k+1} - r) + (y_{k+1}/h - m_{k+1} h/6)(r - x_k)
    (Numerical Recipes, eq. 3.3.3). Below x_0 the spline continues linearly with slope
    S'(x_0) (C1, a documented choice); at and beyond x_n the caller masks.
    ``y`` and ``m`` are per edge: (edges, knots).
    """
    n = knots.shape[0] - 1
    low = r < knots[0]  # (edges,)
    rc = torch.where(low, knots[0], r)  # (edges,) inside the knot range
    k = torch.clamp(torch.searchsorted(knots, rc.detach(), right=True) - 1, 0, n - 1)
    x0, x1 = knots[k], knots[k + 1]  # (edges,)
    h = x1 - x0
    y0 = y.gather(1, k[:, None])[:, 0]  # (edges,)
    y1 = y.gather(1, k[:, None] + 1)[:, 0]
    m0 = m.gather(1, k[:, None])[:, 0]
    m1 = m.gather(1, k[:, None] + 1)[:, 0]
    a, b = x1 - rc, rc - x0
    val = (m0 * a**3 + m1 * b**3) / (6 * h) + (y0 / h - m0 * h / 6) * a + (y1 / h - m1 * h / 6) * b
    h0 = knots[1] - knots[0]
    slope0 = (y[:, 1] - y[:, 0]) / h0 - h0 * (2 * m[:, 0] + m[:, 1]) / 6  # (edges,)
    below = torch.where(low, r - knots[0], torch.zeros_like(r))  # (edges,) <= 0
    return val + slope0 * below
