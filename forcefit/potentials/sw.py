"""Stillinger-Weber potential (two- and three-body), vectorised over edges and triplets.

Units: Angstrom (``sigma``, cutoff a sigma), eV (``epsilon``); ``A``, ``B``, ``lam``,
``gamma``, ``a``, ``p``, ``q`` and ``cos_theta0`` are dimensionless.

E = sum_{i<j} phi2(r_ij) + sum_i sum_{j<k, j,k != i} phi3(r_ij, r_ik, theta_jik)
(F. H. Stillinger and T. A. Weber, Phys. Rev. B 31, 5262 (1985); LAMMPS ``pair_style sw``
with a single element), kernels :func:`~forcefit.potentials.kernels.sw_two_body` and
:func:`~forcefit.potentials.kernels.sw_three_body`. Per-atom energies: half of each pair
term to each atom of the pair, each triplet term to its centre atom i (a partition choice;
the total energy does not depend on it). One parameter set for all atoms.

Index names: ``edges`` (directed pairs), ``triplets`` (centre i, neighbours j < k in edge
order, built from the edges inside the cutoff).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..neighbors import Graph
from . import kernels as K
from .registry import register

#: Stillinger and Weber's silicon parameters (PRB 31, 5262; LAMMPS ``Si.sw``).
SI_1985 = {"epsilon": 2.1683, "sigma": 2.0951, "a": 1.80, "lam": 21.0, "gamma": 1.20,
           "cos_theta0": -1.0 / 3.0, "A": 7.049556277, "B": 0.6022245584, "p": 4.0, "q": 0.0}


def triplets(centre: Tensor, n_atoms: int) -> tuple[Tensor, Tensor]:
    """All pairs (a, b), a < b, of positions in ``centre`` (edges,) that share a centre.

    Returns two (triplets,) index tensors into ``centre``. Vectorised: edges are sorted by
    centre (stable), and each edge is paired with the later edges of its centre's segment.
    """
    order = torch.argsort(centre, stable=True)  # (edges,)
    c = centre[order]
    counts = torch.bincount(c, minlength=n_atoms)  # (atoms,)
    starts = torch.cumsum(counts, 0) - counts  # (atoms,)
    pos = torch.arange(len(c), device=c.device)  # (edges,)
    partners = starts[c] + counts[c] - pos - 1  # (edges,) later edges with the same centre
    first = torch.repeat_interleave(pos, partners)  # (triplets,)
    run_start = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners)
    second = first + 1 + torch.arange(len(first), device=c.device) - run_start  # (triplets,)
    return order[first], order[second]


@register
class StillingerWeber(nn.Module):
    """Stillinger-Weber potential; defaults are the original silicon parameters.

    Trainable: ``epsilon``, ``sigma``, ``lam``, ``gamma``, ``cos_theta0``, ``A``, ``B``.
    Fixed: ``a`` (cutoff = a sigma), exponents ``p``, ``q``. Parameters are float64.
    """

    def __init__(self, epsilon=SI_1985["epsilon"], sigma=SI_1985["sigma"], a=SI_1985["a"],
                 lam=SI_1985["lam"], gamma=SI_1985["gamma"],
                 cos_theta0=SI_1985["cos_theta0"], A=SI_1985["A"], B=SI_1985["B"],
                 p=SI_1985["p"], q=SI_1985["q"]) -> None:
        super().__init__()
        values = {"epsilon": epsilon, "sigma": sigma, "lam": lam, "gamma": gamma,
                  "cos_theta0": cos_theta0, "A": A, "B": B}
        for name, v in values.items():
            v = float(v)
            if not torch.isfinite(torch.tensor(v)):
                raise ValueError(f"StillingerWeber: parameter {name} is not finite ({v})")
            setattr(self, name, nn.Parameter(torch.tensor(v, dtype=torch.float64)))
        self.a, self.p, self.q = float(a), float(p), float(q)
        if not (self.a > 0 and float(sigma) > 0):
            raise ValueError(f"StillingerWeber: a and sigma must be positive, got a={a}, "
                             f"sigma={sigma}")

    @property
    def cutoff(self) -> float:
        """a sigma in Angstrom (follows sigma if it is trained)."""
        return self.a * float(self.sigma.detach())

    def forward(self, graph: Graph, vectors: Tensor) -> Tensor:
        """Per-atom energies (atoms,) eV."""
        cutoff = self.cutoff
        if graph.cutoff < cutoff * (1 - 1e-12):
            raise ValueError(f"StillingerWeber: graph built with cutoff {graph.cutoff} < the "
                             f"model cutoff {cutoff}")
        dt = vectors.dtype
        eps, sig, lam, gam, cos0, big_a, big_b = (
            getattr(self, n).to(dt)
            for n in ("epsilon", "sigma", "lam", "gamma", "cos_theta0", "A", "B"))
        n_atoms = graph.numbers.shape[0]
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (edges,)
        inside = r < self.a * sig  # (edges,)
        r_safe = torch.where(inside, r, torch.full_like(r, 0.5 * cutoff))
        e2 = K.sw_two_body(r_safe, eps, sig, self.a, big_a, big_b, self.p, self.q)  # (edges,)
        e2 = torch.where(inside, e2, torch.zeros_like(e2))
        out = torch.zeros(n_atoms, dtype=dt, device=vectors.device)
        out = out.index_add(0, graph.i, 0.5 * e2)  # (atoms,)

        sel = torch.nonzero(inside.detach(), as_tuple=True)[0]  # (inside edges,)
        first, second = triplets(graph.i[sel], n_atoms)
        e1, e2_ = sel[first], sel[second]  # (triplets,) edge indices
        r1, r2 = r[e1], r[e2_]  # (triplets,)
        cos = (vectors[e1] * vectors[e2_]).sum(-1) / (r1 * r2)  # (triplets,)
        e3 = K.sw_three_body(r1, r2, cos, eps, sig, self.a, lam, gam, cos0)  # (triplets,)
        return out.index_add(0, graph.i[e1], e3)  # (atoms,)

    def to_config(self) -> dict:
        cfg = {"type": "StillingerWeber"}
        for n in ("epsilon", "sigma", "lam", "gamma", "cos_theta0", "A", "B"):
            cfg[n] = float(getattr(self, n).detach())
        cfg.update(a=self.a, p=self.p, q=self.q)
        return cfg
