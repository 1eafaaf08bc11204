"""Cutoff functions fc(r) and their derivatives dfc/dr.

Units: ``r`` and ``cutoff`` in Angstrom (any length unit, as long as both agree); fc is
dimensionless and dfc/dr is in 1/Angstrom.

Both functions equal 1 at r = 0, fall to 0 at r = rc and are exactly 0 for r >= rc.

- ``"cosine"`` (Behler, J. Chem. Phys. 134, 074106 (2011), eq. 4; the one DScribe and the
  miniff tutorial use): fc(r) = 0.5 (1 + cos(pi r / rc)); continuous with its first
  derivative at rc, second derivative jumps.
- ``"polynomial"`` (n2p2's ``poly2`` cutoff, a quintic smoothstep; Singraber et al.,
  J. Chem. Theory Comput. 15, 1827 (2019)): with x = r / rc,
  fc(r) = 1 - 10 x^3 + 15 x^4 - 6 x^5; continuous up to the second derivative at rc.
"""

from __future__ import annotations

import math

import torch

CUTOFF_FUNCTIONS = ("cosine", "polynomial")


def cutoff_function(r: torch.Tensor, cutoff: float, kind: str = "cosine",
                    derivative: bool = False):
    """fc(r) (same shape as ``r``), and dfc/dr when ``derivative`` is true.

    Differentiable by autograd. Values at r >= cutoff are exactly zero.
    """
    inside = r < cutoff
    if kind == "cosine":
        arg = (math.pi / cutoff) * r
        fc = 0.5 * (torch.cos(arg) + 1.0)
        dfc = (-0.5 * math.pi / cutoff) * torch.sin(arg) if derivative else None
    elif kind == "polynomial":
        x = r / cutoff
        x2 = x * x
        fc = 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x))
        one_minus = 1.0 - x
        dfc = (-30.0 / cutoff) * x2 * one_minus * one_minus if derivative else None
    else:
        raise ValueError(f"cutoff_function: unknown kind {kind!r}; choose one of "
                         f"{', '.join(CUTOFF_FUNCTIONS)}")
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    fc = torch.where(inside, fc, zero)
    if not derivative:
        return fc
    return fc, torch.where(inside, dfc, zero)
