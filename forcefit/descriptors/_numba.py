"""Compiled CPU kernels (numba) for the symmetry functions: values and per-edge derivatives.

Units: edge vectors, distances and the cutoff in Angstrom; eta in 1/Angstrom^2; zeta and
lambda dimensionless; values dimensionless, derivatives dD/dr_ij in 1/Angstrom. Everything
is computed in float64.

This is the ``backend="numba"`` path of :class:`forcefit.descriptors.DescriptorSet`; the
formulas are those of :mod:`forcefit.descriptors.acsf` (Behler, J. Chem. Phys. 134, 074106
(2011), eqs. 8-9, summed over unordered pairs j < k as DScribe and n2p2 do). numba is an
optional dependency (the ``fast`` extra); without it :func:`available` is false and the set
uses the torch kernels, which give the same numbers (tested to 1e-12 relative).

For each centre i and each unordered pair of its edges e = i->j, f = i->k (v1 = r_ij,
v2 = r_ik, r3 = |v2 - v1|, c = v1.v2 / (r1 r2)), one angular term is

    g = P A(c) X C,   P = 2^(1-zeta),  A = (1 + lambda c)^zeta,
    X = exp(-eta (r1^2 + r2^2 + r3^2)) (G4) or exp(-eta (r1^2 + r2^2)) (G5),
    C = fc(r1) fc(r2) fc(r3) (G4) or fc(r1) fc(r2) (G5),

and by the chain rule (dc/dv1 = v2 / (r1 r2) - c v1 / r1^2, dr1/dv1 = v1 / r1,
dr3/dv1 = (v1 - v2) / r3)

    dg/dv1 = v1 [-Q c / r1^2 - s eta g + P A X (fc'1 fc2 fc3 / r1 + fc1 fc2 fc'3 / r3)]
           + v2 [ Q / (r1 r2) + eta t g - P A X fc1 fc2 fc'3 / r3],
    Q = P zeta lambda (1 + lambda c)^(zeta-1) X C,

with s = 4, t = 2 for G4 (r3 carries v1 too) and s = 2, t = 0 and no fc3 terms for G5;
dg/dv2 is the same with 1 and 2 swapped. D_i gets g, dD[e] gets dg/dv1 and dD[f] gets dg/dv2.

The kernel loops over centres and their pairs inside compiled code (no Python loop); the
exponential is computed once per distinct (family, eta) and the angular power once per
distinct (zeta, lambda) for each pair, then the feature axis is a product. Integer zeta uses
repeated squaring, as the torch kernel does. The cosine cutoff of r_jk is evaluated as a
power series in y = (pi r_jk / rc)^2 (:func:`_cos_sinc`: cos sqrt(y) = sum (-1)^n y^n / (2n)!,
sin sqrt(y) / sqrt(y) = sum (-1)^n y^n / (2n+1)!), which needs neither the square root nor
a trigonometric call. Values and derivatives of a centre accumulate in per-centre buffers
(local edges, 3, columns) and are written out once.

The radial families (G1, G2, sigmoid) have their own small kernel,
:func:`_radial_kernel`, one pass over the edges.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np


#: Whether numba (optional: the ``fast`` extra) is installed. It is imported, and the
#: kernel compiled (or loaded from numba's on-disk cache), on first use only, so that
#: importing forcefit stays fast.
def _installed() -> bool:
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as absent
        return False


HAVE_NUMBA = _installed()
_JITTED = False

#: Cutoff function codes of the kernel.
CUTOFF_CODES = {"cosine": 0, "polynomial": 1}


def available() -> bool:
    """True when numba is installed (the compiled backend can run)."""
    return HAVE_NUMBA


def _ipow(base, n):
    """base**n for an integer n >= 0 by repeated squaring."""
    acc = 1.0
    sq = base
    while n > 0:
        if n & 1:
            acc *= sq
        n >>= 1
        if n > 0:
            sq *= sq
    return acc


#: Taylor coefficients of cos(sqrt(y)) = sum (-1)^n y^n / (2n)! and
#: sin(sqrt(y)) / sqrt(y) = sum (-1)^n y^n / (2n+1)!, 16 terms: for 0 <= y <= pi^2 the
#: truncation is below 1e-22 and the rounding about 2e-15 absolute (checked in the tests).
_COS_TAYLOR = np.array([(-1) ** n / math.factorial(2 * n) for n in range(16)])
_SINC_TAYLOR = np.array([(-1) ** n / math.factorial(2 * n + 1) for n in range(16)])


def _cos_sinc(y):
    """(cos(sqrt(y)), sin(sqrt(y)) / sqrt(y)) for 0 <= y <= pi^2 (even/odd Horner split)."""
    z = y * y
    ce = co = se = so = 0.0
    for m in range(7, -1, -1):
        ce = ce * z + _COS_TAYLOR[2 * m]
        co = co * z + _COS_TAYLOR[2 * m + 1]
        se = se * z + _SINC_TAYLOR[2 * m]
        so = so * z + _SINC_TAYLOR[2 * m + 1]
    return ce + y * co, se + y * so


def _cut_sq(rsq, cutoff, kind):
    """(fc(r), (dfc/dr) / r) of :mod:`forcefit.descriptors.cutoff` from rsq = r^2 < rc^2.

    Cosine: with y = (pi r / rc)^2, fc = (1 + cos sqrt(y)) / 2 and
    (dfc/dr) / r = -(pi / rc)^2 / 2 * sin(sqrt(y)) / sqrt(y), both power series in y
    (no square root, no trigonometric call). Polynomial: the quintic of the module
    ``cutoff`` at r = sqrt(rsq).
    """
    if kind == 0:
        k2 = (math.pi / cutoff) ** 2
        cs, sinc = _cos_sinc(k2 * rsq)
        return 0.5 * (1.0 + cs), -0.5 * k2 * sinc
    r = math.sqrt(rsq)
    x = r / cutoff
    x2 = x * x
    om = 1.0 - x
    return 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x)), (-30.0 / cutoff) * x2 * om * om / r


def _powers(c, a_int, a_zeta, a_lam, pref, dpref, pa, dq):
    """pa[q] = 2^(1-zeta) (1 + lambda c)^zeta, dq[q] = zeta lambda 2^(1-zeta)
    (1 + lambda c)^(zeta-1) for each (zeta, lambda) q; the base is clamped at 0."""
    for q in range(a_zeta.shape[0]):
        base = max(1.0 + a_lam[q] * c, 0.0)
        if a_int[q] >= 1:
            p = _ipow(base, a_int[q] - 1)
            a = p * base if a_int[q] > 1 else base
        else:
            p = base ** (a_zeta[q] - 1.0)
            a = base ** a_zeta[q]
        pa[q] = pref[q] * a
        dq[q] = dpref[q] * p


def _grid_add(x_eta, pa, dq, rsq, cc, d1, d2, d3, s, t, cr1, cr2, inv12, v1, v2, col, jl, kl,
              derivatives, vbuf, dbuf):
    """Add one pair's terms for one family's (eta x zeta-lambda) grid at columns col...

    cc = C, d1, d2, d3 = (dC/dr1)/r1, (dC/dr2)/r2, (dC/dr3)/r3; s, t = 4, 2 (G4) or 2, 0
    (G5); the coefficients of the module docstring factor as a1 = pa u1 + dq w1,
    a2 = pa u2 + dq w2, b = pa ub + dq wb, with per-eta u and w (below).
    vbuf (W,) values of the centre; dbuf (local edges, 3, W) its derivatives.
    """
    n_a = pa.shape[0]
    for xq in range(x_eta.shape[0]):
        eta = x_eta[xq]
        x = math.exp(-eta * rsq)
        xc = x * cc
        c0 = col + xq * n_a
        for q in range(n_a):
            vbuf[c0 + q] += xc * pa[q]
        if not derivatives:
            continue
        u1 = x * (d1 + d3 - s * eta * cc)
        u2 = x * (d2 + d3 - s * eta * cc)
        ub = x * (t * eta * cc - d3)
        w1 = -xc * cr1
        w2 = -xc * cr2
        wb = xc * inv12
        x1, y1, z1 = v1[0], v1[1], v1[2]
        x2, y2, z2 = v2[0], v2[1], v2[2]
        dj0, dj1, dj2 = dbuf[jl, 0], dbuf[jl, 1], dbuf[jl, 2]  # (W,) rows of edge j
        dk0, dk1, dk2 = dbuf[kl, 0], dbuf[kl, 1], dbuf[kl, 2]  # (W,) rows of edge k
        for q in range(n_a):
            a1 = pa[q] * u1 + dq[q] * w1
            a2 = pa[q] * u2 + dq[q] * w2
            b = pa[q] * ub + dq[q] * wb
            dj0[c0 + q] += a1 * x1 + b * x2
            dj1[c0 + q] += a1 * y1 + b * y2
            dj2[c0 + q] += a1 * z1 + b * z2
            dk0[c0 + q] += a2 * x2 + b * x1
            dk1[c0 + q] += a2 * y2 + b * y1
            dk2[c0 + q] += a2 * z2 + b * z1


def _angular_kernel(vec, r, fc, dfc, starts, counts, sp, pair_table, t4, t5, g4w, width,
                    cutoff, kind, derivatives, out_val, out_der, col0):
    """Angular sums on the (family, eta, zeta-lambda) grid of each species pair.

    vec (E, 3), r, fc, dfc (E,): centre-sorted edges; starts, counts (centres,): each
    centre's edge range; sp (E,) species index of each neighbour; pair_table (S, S)
    species-pair index. t4, t5: tuples (x_eta, a_int, a_zeta, a_lam, pref, dpref) of G4 and
    G5 (empty arrays for an absent family). Grid column of pair p, family G4, eta xq,
    (zeta, lambda) q: p * width + xq * n_a4 + q; G5 columns start at p * width + g4w.
    Writes out_val (centres, n_pairs * width) and, with ``derivatives``,
    out_der[e, col0 + column, :] (E, >= col0 + n_pairs * width, 3).
    """
    x4, ai4, az4, al4, pr4, dp4 = t4
    x5, ai5, az5, al5, pr5, dp5 = t5
    has4 = x4.shape[0] > 0
    has5 = x5.shape[0] > 0
    n_w = out_val.shape[1]  # n_pairs * width
    nmax = 0
    for i in range(counts.shape[0]):
        nmax = max(nmax, counts[i])
    pa4 = np.empty(az4.shape[0])  # (zeta-lambda of G4,)
    dq4 = np.empty(az4.shape[0])
    pa5 = np.empty(az5.shape[0])  # (zeta-lambda of G5,)
    dq5 = np.empty(az5.shape[0])
    vbuf = np.empty(n_w)  # (n_pairs * width,) values of one centre
    dbuf = np.empty((nmax if derivatives else 1, 3, n_w))  # (local edges, 3, n_pairs * width)
    v1 = np.empty(3)
    v2 = np.empty(3)
    rc2 = cutoff * cutoff
    for i in range(starts.shape[0]):
        s0 = starts[i]
        n = counts[i]
        vbuf[:] = 0.0
        if derivatives:
            dbuf[:n] = 0.0
        for jl in range(n):
            j = s0 + jl
            v1[0] = vec[j, 0]
            v1[1] = vec[j, 1]
            v1[2] = vec[j, 2]
            r1 = r[j]
            f1 = fc[j]
            df1 = dfc[j]
            for kl in range(jl + 1, n):
                k = s0 + kl
                v2[0] = vec[k, 0]
                v2[1] = vec[k, 1]
                v2[2] = vec[k, 2]
                dot = v1[0] * v2[0] + v1[1] * v2[1] + v1[2] * v2[2]
                r2 = r[k]
                s12 = r1 * r1 + r2 * r2
                r3sq = max(s12 - 2.0 * dot, 0.0)
                in4 = has4 and r3sq < rc2
                if not (in4 or has5):
                    continue
                f2 = fc[k]
                df2 = dfc[k]
                inv12 = 1.0 / (r1 * r2)
                c = dot * inv12
                cr1 = c / (r1 * r1)
                cr2 = c / (r2 * r2)
                col = pair_table[sp[j], sp[k]] * width
                c12 = f1 * f2
                if in4:
                    f3, df3r = _cut_sq(r3sq, cutoff, kind)  # fc(r3), (dfc/dr)(r3) / r3
                    _powers(c, ai4, az4, al4, pr4, dp4, pa4, dq4)
                    _grid_add(x4, pa4, dq4, s12 + r3sq, c12 * f3, df1 * f2 * f3 / r1,
                              f1 * df2 * f3 / r2, c12 * df3r, 4.0, 2.0, cr1, cr2, inv12,
                              v1, v2, col, jl, kl, derivatives, vbuf, dbuf)
                if has5:
                    _powers(c, ai5, az5, al5, pr5, dp5, pa5, dq5)
                    _grid_add(x5, pa5, dq5, s12, c12, df1 * f2 / r1, f1 * df2 / r2, 0.0,
                              2.0, 0.0, cr1, cr2, inv12, v1, v2, col + g4w, jl, kl,
                              derivatives, vbuf, dbuf)
        out_val[i, :] = vbuf
        if derivatives:
            for jl in range(n):
                for w in range(n_w):
                    out_der[s0 + jl, col0 + w, 0] = dbuf[jl, 0, w]
                    out_der[s0 + jl, col0 + w, 1] = dbuf[jl, 1, w]
                    out_der[s0 + jl, col0 + w, 2] = dbuf[jl, 2, w]


def _put_radial(out_val, out_der, i, e, q, g, dg, ux, uy, uz, derivatives):
    """One radial term: value g into centre i's column q, and (with ``derivatives``) its
    derivative dg/dr along the unit edge vector u into edge e's row."""
    out_val[i, q] += g
    if derivatives:
        out_der[e, q, 0] = dg * ux
        out_der[e, q, 1] = dg * uy
        out_der[e, q, 2] = dg * uz


def _radial_kernel(vec, r, fc, dfc, ci, sp, g1, g2, sig, n_rad, derivatives, out_val,
                   out_der):
    """Radial columns: out_val[i, s * n_rad + f] += g_f(r_e) over edges e = i->j (s the
    species of j) and, with ``derivatives``, out_der[e, s * n_rad + f] = g_f'(r_e) r_e / r_e.

    Columns per species: G1 (if g1), G2 rows (eta, r_s) of g2, sigmoid rows (r0, dr) of
    sig, with the formulas of :mod:`forcefit.descriptors.acsf`:
    G1 = fc, G2 = exp(-eta (r - r_s)^2) fc, sigmoid = fc / (1 + exp((r - r0) / dr)).
    """
    for e in range(r.shape[0]):
        col = sp[e] * n_rad
        i = ci[e]
        re = r[e]
        f = fc[e]
        df = dfc[e]
        ux = vec[e, 0] / re
        uy = vec[e, 1] / re
        uz = vec[e, 2] / re
        q = col
        if g1:
            _put_radial(out_val, out_der, i, e, q, f, df, ux, uy, uz, derivatives)
            q += 1
        for n in range(g2.shape[0]):
            eta = g2[n, 0]
            x = re - g2[n, 1]
            gauss = math.exp(-eta * x * x)
            _put_radial(out_val, out_der, i, e, q, gauss * f,
                        gauss * (df - 2.0 * eta * x * f), ux, uy, uz, derivatives)
            q += 1
        for n in range(sig.shape[0]):
            dr = sig[n, 1]
            sg = 1.0 / (1.0 + math.exp((re - sig[n, 0]) / dr))
            _put_radial(out_val, out_der, i, e, q, sg * f, sg * (df - (1.0 - sg) / dr * f),
                        ux, uy, uz, derivatives)
            q += 1


def radial(g1: bool, g2, sig, vec: np.ndarray, r: np.ndarray, fc: np.ndarray,
           dfc: np.ndarray, ci: np.ndarray, sp: np.ndarray, n_atoms: int, n_species: int,
           out_der: np.ndarray | None) -> np.ndarray:
    """Radial values (atoms, n_species * n_radial) float64; derivatives written into
    ``out_der`` (E, F, 3) float64, columns 0 ... n_species * n_radial - 1, when given."""
    if not available():
        raise RuntimeError("forcefit.descriptors: the numba backend needs numba "
                           "(pip install numba, or the forcefit[fast] extra)")
    _jit()
    g2 = np.asarray(g2, dtype=np.float64).reshape(-1, 2)  # (n_g2, 2) eta, r_s
    sig = np.asarray(sig, dtype=np.float64).reshape(-1, 2)  # (n_sig, 2) r0, dr
    n_rad = int(g1) + g2.shape[0] + sig.shape[0]
    out_val = np.zeros((n_atoms, n_species * n_rad))  # (atoms, n_species * n_radial)
    derivatives = out_der is not None
    _radial_kernel(vec, r, fc, dfc, ci, sp, bool(g1), g2, sig, n_rad, derivatives, out_val,
                   out_der if derivatives else np.zeros((1, 1, 3)))
    return out_val


def _jit() -> None:
    """Replace the kernel functions by their numba-compiled versions (once)."""
    global _JITTED, _ipow, _cos_sinc, _cut_sq, _powers, _grid_add, _angular_kernel
    global _radial_kernel, _put_radial
    if _JITTED:
        return
    import numba

    opts = {"cache": True, "error_model": "numpy"}  # no Python zero-division checks
    # reassociation and FMA contraction for the grid loops; NaN and inf keep their meaning
    fast = {"nsz", "arcp", "contract", "reassoc"}
    _ipow = numba.njit(inline="always", **opts)(_ipow)
    _cos_sinc = numba.njit(inline="always", **opts)(_cos_sinc)
    _cut_sq = numba.njit(inline="always", **opts)(_cut_sq)
    _powers = numba.njit(inline="always", fastmath=fast, **opts)(_powers)
    _grid_add = numba.njit(inline="always", fastmath=fast, **opts)(_grid_add)
    _angular_kernel = numba.njit(nogil=True, fastmath=fast, **opts)(_angular_kernel)
    _put_radial = numba.njit(inline="always", **opts)(_put_radial)
    _radial_kernel = numba.njit(nogil=True, **opts)(_radial_kernel)
    _JITTED = True


def _family_table(rows):
    """Grid of one family: distinct etas and (zeta, lambda) in order of first appearance,
    the kernel's per-(zeta, lambda) arrays, and each row's grid column."""
    etas = list(dict.fromkeys(float(r[0]) for r in rows))
    zls = list(dict.fromkeys((float(r[1]), float(r[2])) for r in rows))
    zeta = np.array([z for z, _ in zls], dtype=np.float64)
    lam = np.array([lm for _, lm in zls], dtype=np.float64)
    pref = 2.0 ** (1.0 - zeta)
    arrays = (np.array(etas, dtype=np.float64),
              np.array([int(z) if float(z).is_integer() and z <= 64 else -1 for z in zeta],
                       dtype=np.int64),
              zeta, lam, pref, pref * zeta * lam)
    cols = [etas.index(float(r[0])) * len(zls) + zls.index((float(r[1]), float(r[2])))
            for r in rows]
    return arrays, cols, len(etas) * len(zls)


def function_tables(g4, g5):
    """Kernel tables for angular rows g4 then g5 of (eta, zeta, lambda): per-family grids,
    the grid width per species pair, and the grid column of each angular function
    (``direct`` when the rows are their grids in order, so no columns need picking)."""
    t4, cols4, w4 = _family_table(g4)
    t5, cols5, w5 = _family_table(g5)
    cols = cols4 + [w4 + c for c in cols5]
    return {"t4": t4, "t5": t5, "g4w": w4, "width": w4 + w5, "cols": np.array(cols),
            "direct": cols == list(range(w4 + w5))}


def angular(tables: dict, vec: np.ndarray, r: np.ndarray, fc: np.ndarray, dfc: np.ndarray,
            counts: np.ndarray, sp: np.ndarray, pair_table: np.ndarray, n_pairs: int,
            cutoff: float, kind: str, out_der: np.ndarray | None, col0: int) -> np.ndarray:
    """Angular values (centres, n_pairs * n_angular), float64; derivatives written into
    ``out_der`` (E, F, 3) float64 at columns col0 ... col0 + n_pairs * n_angular - 1 when it
    is given.

    All inputs are float64 / int64 numpy arrays of centre-sorted edges (see
    :func:`_angular_kernel`); counts (centres,) edges per centre.
    """
    if not available():
        raise RuntimeError("forcefit.descriptors: the numba backend needs numba "
                           "(pip install numba, or the forcefit[fast] extra)")
    _jit()
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts  # (centres,)
    width = tables["width"]
    out_val = np.zeros((counts.shape[0], n_pairs * width))  # (centres, n_pairs * width)
    derivatives = out_der is not None
    direct = tables["direct"]
    if not derivatives:
        target, c0 = np.zeros((1, 1, 3)), 0
    elif direct:
        target, c0 = out_der, int(col0)
    else:  # (E, n_pairs * width, 3) grid columns, picked below
        target, c0 = np.zeros((vec.shape[0], n_pairs * width, 3)), 0
    _angular_kernel(vec, r, fc, dfc, starts, counts, sp, pair_table, tables["t4"],
                    tables["t5"], tables["g4w"], width, float(cutoff), CUTOFF_CODES[kind],
                    derivatives, out_val, target, c0)
    if direct:
        return out_val
    pick = (np.arange(n_pairs)[:, None] * width + tables["cols"][None, :]).reshape(-1)
    if derivatives:
        n_cols = pick.shape[0]
        out_der[:, col0:col0 + n_cols] = target[:, pick]
    return out_val[:, pick]
