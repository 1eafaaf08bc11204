"""Compiled CPU kernel (numba) for the angular families G4 and G5: values and per-edge derivatives.

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

    dg/dv1 = v1 [-Q c / r1^2 - 2 eta s g + P A X (fc'1 fc2 fc3 / r1 + fc1 fc2 fc'3 / r3)]
           + v2 [ Q / (r1 r2) + eta t g - P A X fc1 fc2 fc'3 / r3],
    Q = P zeta lambda (1 + lambda c)^(zeta-1) X C,

with s = 2, t = 2 for G4 (r3 carries v1 too) and s = 1, t = 0 and no fc3 terms for G5;
dg/dv2 is the same with 1 and 2 swapped. D_i gets g, dD[e] gets dg/dv1 and dD[f] gets dg/dv2.

The kernel loops over centres and their pairs inside compiled code (no Python loop); the
exponential is computed once per distinct (family, eta) and the angular power once per
distinct (zeta, lambda) for each pair, then the feature axis is a product. Integer zeta uses
repeated squaring, as the torch kernel does.
"""

from __future__ import annotations

import math

import numpy as np

try:  # optional dependency: the ``fast`` extra
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

#: Cutoff function codes of the kernel.
CUTOFF_CODES = {"cosine": 0, "polynomial": 1}


def available() -> bool:
    """True when numba can be imported (the compiled backend can run)."""
    return numba is not None


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


def _cut(r, cutoff, kind):
    """(fc(r), dfc/dr) of :mod:`forcefit.descriptors.cutoff`, zero for r >= cutoff."""
    if r >= cutoff:
        return 0.0, 0.0
    if kind == 0:
        arg = (math.pi / cutoff) * r
        return 0.5 * (math.cos(arg) + 1.0), (-0.5 * math.pi / cutoff) * math.sin(arg)
    x = r / cutoff
    x2 = x * x
    om = 1.0 - x
    return 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x)), (-30.0 / cutoff) * x2 * om * om


def _angular_kernel(vec, r, fc, dfc, starts, counts, sp, pair_table, fam, xkey, akey, pref,
                    dpref, eta_f, x_fam, x_eta, a_int, a_zeta, a_lam, n_ang, cutoff, kind,
                    derivatives, out_val, out_der, col0):
    """Accumulate angular values into out_val (centres, n_pairs * n_ang) and, if
    ``derivatives``, per-edge derivatives into out_der[:, col0:col0 + n_pairs * n_ang, :].

    vec (E, 3), r, fc, dfc (E,): centre-sorted edges; starts, counts (centres,): each
    centre's edge range; sp (E,) species index of each neighbour; pair_table (S, S) species
    pair index. Per function f: fam (0 = G4, 1 = G5), xkey (index into the distinct
    (family, eta) exponentials x_fam, x_eta), akey (index into the distinct (zeta, lambda)
    powers a_int (integer zeta or -1), a_zeta, a_lam), pref = 2^(1-zeta),
    dpref = zeta lambda 2^(1-zeta), eta_f.
    """
    n_f = fam.shape[0]
    n_x = x_eta.shape[0]
    n_a = a_zeta.shape[0]
    xs = np.empty(n_x)  # (distinct etas,) exponentials of the current pair
    aa = np.empty(n_a)  # (distinct zeta-lambda,) (1 + lambda c)^zeta
    da = np.empty(n_a)  # (distinct zeta-lambda,) (1 + lambda c)^(zeta-1)
    has4 = False
    has5 = False
    for f in range(n_f):
        if fam[f] == 0:
            has4 = True
        else:
            has5 = True
    rc2 = cutoff * cutoff
    for i in range(starts.shape[0]):
        s0 = starts[i]
        s1 = s0 + counts[i]
        for j in range(s0, s1):
            x1 = vec[j, 0]
            y1 = vec[j, 1]
            z1 = vec[j, 2]
            r1 = r[j]
            f1 = fc[j]
            df1 = dfc[j]
            for k in range(j + 1, s1):
                x2 = vec[k, 0]
                y2 = vec[k, 1]
                z2 = vec[k, 2]
                r2 = r[k]
                f2 = fc[k]
                df2 = dfc[k]
                dot = x1 * x2 + y1 * y2 + z1 * z2
                s12 = r1 * r1 + r2 * r2
                r3sq = s12 - 2.0 * dot
                r3sq = max(r3sq, 0.0)
                in4 = has4 and r3sq < rc2
                if not (in4 or has5):
                    continue
                r3 = 1.0
                f3 = 0.0
                df3 = 0.0
                if in4:
                    r3 = math.sqrt(r3sq)
                    f3, df3 = _cut(r3, cutoff, kind)
                inv12 = 1.0 / (r1 * r2)
                c = dot * inv12
                for q in range(n_x):
                    if x_fam[q] == 0:
                        xs[q] = math.exp(-x_eta[q] * (s12 + r3sq)) if in4 else 0.0
                    else:
                        xs[q] = math.exp(-x_eta[q] * s12)
                for q in range(n_a):
                    base = 1.0 + a_lam[q] * c
                    base = max(base, 0.0)
                    if a_int[q] >= 1:
                        p = _ipow(base, a_int[q] - 1)
                        da[q] = p
                        aa[q] = p * base if a_int[q] > 1 else base
                    else:
                        da[q] = base ** (a_zeta[q] - 1.0)
                        aa[q] = base ** a_zeta[q]
                col = col0 + pair_table[sp[j], sp[k]] * n_ang
                vcol = col - col0
                c12 = f1 * f2
                c4 = c12 * f3
                # cutoff-product derivatives over r: (dC/dr1) / r1, (dC/dr2) / r2, (dC/dr3) / r3
                d1_4 = df1 * f2 * f3 / r1
                d2_4 = f1 * df2 * f3 / r2
                d3_4 = c12 * df3 / r3
                d1_5 = df1 * f2 / r1
                d2_5 = f1 * df2 / r2
                cr1 = c / (r1 * r1)
                cr2 = c / (r2 * r2)
                for f in range(n_f):
                    g4 = fam[f] == 0
                    if g4 and not in4:
                        continue
                    x = xs[xkey[f]]
                    q = akey[f]
                    pax = pref[f] * aa[q] * x  # P A X
                    cc = c4 if g4 else c12
                    g = pax * cc
                    out_val[i, vcol + f] += g
                    if not derivatives:
                        continue
                    qq = dpref[f] * da[q] * x * cc  # Q
                    eta = eta_f[f]
                    if g4:
                        a1 = -qq * cr1 - 4.0 * eta * g + pax * (d1_4 + d3_4)
                        a2 = -qq * cr2 - 4.0 * eta * g + pax * (d2_4 + d3_4)
                        b = qq * inv12 + 2.0 * eta * g - pax * d3_4
                    else:
                        a1 = -qq * cr1 - 2.0 * eta * g + pax * d1_5
                        a2 = -qq * cr2 - 2.0 * eta * g + pax * d2_5
                        b = qq * inv12
                    out_der[j, col + f, 0] += a1 * x1 + b * x2
                    out_der[j, col + f, 1] += a1 * y1 + b * y2
                    out_der[j, col + f, 2] += a1 * z1 + b * z2
                    out_der[k, col + f, 0] += a2 * x2 + b * x1
                    out_der[k, col + f, 1] += a2 * y2 + b * y1
                    out_der[k, col + f, 2] += a2 * z2 + b * z1


if numba is not None:
    _ipow = numba.njit(cache=True, inline="always")(_ipow)
    _cut = numba.njit(cache=True, inline="always")(_cut)
    _angular_kernel = numba.njit(cache=True, nogil=True, fastmath=True)(_angular_kernel)


def function_tables(g4, g5):
    """Per-function arrays of the kernel for rows g4 then g5 of (eta, zeta, lambda)."""
    rows = [(0, *p) for p in g4] + [(1, *p) for p in g5]
    xkeys = list(dict.fromkeys((fam, float(eta)) for fam, eta, _, _ in rows))
    akeys = list(dict.fromkeys((float(z), float(lm)) for _, _, z, lm in rows))
    fam = np.array([r[0] for r in rows], dtype=np.int64)
    xkey = np.array([xkeys.index((r[0], float(r[1]))) for r in rows], dtype=np.int64)
    akey = np.array([akeys.index((float(r[2]), float(r[3]))) for r in rows], dtype=np.int64)
    zeta = np.array([r[2] for r in rows], dtype=np.float64)
    lam = np.array([r[3] for r in rows], dtype=np.float64)
    pref = 2.0 ** (1.0 - zeta)
    return {
        "fam": fam, "xkey": xkey, "akey": akey, "pref": pref, "dpref": pref * zeta * lam,
        "eta_f": np.array([r[1] for r in rows], dtype=np.float64),
        "x_fam": np.array([k[0] for k in xkeys], dtype=np.int64),
        "x_eta": np.array([k[1] for k in xkeys], dtype=np.float64),
        "a_int": np.array([int(z) if float(z).is_integer() and z <= 64 else -1
                           for z, _ in akeys], dtype=np.int64),
        "a_zeta": np.array([k[0] for k in akeys], dtype=np.float64),
        "a_lam": np.array([k[1] for k in akeys], dtype=np.float64),
    }


def angular(tables: dict, vec: np.ndarray, r: np.ndarray, fc: np.ndarray, dfc: np.ndarray,
            counts: np.ndarray, sp: np.ndarray, pair_table: np.ndarray, n_pairs: int,
            cutoff: float, kind: str, out_der: np.ndarray | None, col0: int) -> np.ndarray:
    """Angular values (centres, n_pairs * n_angular), float64; derivatives added into
    ``out_der`` (E, F, 3) float64 at columns col0... when it is given.

    All inputs are float64 / int64 numpy arrays of centre-sorted edges (see
    :func:`_angular_kernel`); counts (centres,) edges per centre.
    """
    if numba is None:
        raise RuntimeError("forcefit.descriptors: the numba backend needs numba "
                           "(pip install numba, or the forcefit[fast] extra)")
    n_ang = int(tables["fam"].shape[0])
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts  # (centres,)
    out_val = np.zeros((counts.shape[0], n_pairs * n_ang))  # (centres, n_pairs * n_ang)
    derivatives = out_der is not None
    if out_der is None:
        out_der = np.zeros((1, 1, 3))
    t = tables
    _angular_kernel(vec, r, fc, dfc, starts, counts, sp, pair_table, t["fam"], t["xkey"],
                    t["akey"], t["pref"], t["dpref"], t["eta_f"], t["x_fam"], t["x_eta"],
                    t["a_int"], t["a_zeta"], t["a_lam"], n_ang, float(cutoff),
                    CUTOFF_CODES[kind], derivatives, out_val, out_der, int(col0))
    return out_val
