"""Linear (and quadratic) models on descriptors, solved in closed form like linear SNAP.

Units: per-atom energies in eV; inputs are (standardised) descriptors.

Model (per species s of atom i, Thompson et al., J. Comp. Phys. 285 (2015) 316, eq. 9; the
quadratic terms as in Wood & Thompson, J. Chem. Phys. 148 (2018) 241721):

    e_i = b_s + sum_p w_{s,p} phi_p(x_i),
    phi(x) = [x_1 .. x_F]  (+ [x_a x_b for a <= b] with ``quadratic=True``).

Being linear in (b, w), energies, forces and stresses are all linear in the coefficients, so
the weighted least-squares problem over energy, force and stress rows is solved in closed form:

    rows:   E_m / N_m  (or E_m)          = sum_i [1, phi(x_i)] . c_s(i)          (energy)
            F_{a,c}                      = sum_e (d_{a,i_e} - d_{a,j_e}) dphi_e[:, c] . c_s(i_e)
            sigma_{ab} V                 = sym( sum_e r_e,a dphi_e[:, b] . c_s(i_e) )  (stress)
    solve   min_c ||W^1/2 (A c - y)||^2 + lambda s ||I' c||^2                       (ridge)

with dphi_e = d phi(x_{i_e}) / d r_e from the cached per-edge derivatives, W the row weights
(group eweight / fweight / vweight), I' the identity without the bias columns, s the mean
squared column norm of W^1/2 A, and targets y = label - prior. The rows are reduced batch by
batch to a triangular factor by QR (memory bounded by a batch, no normal equations).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def n_terms(n_features: int, quadratic: bool) -> int:
    return n_features + (n_features * (n_features + 1) // 2 if quadratic else 0)


class LinearAtomic(nn.Module):
    """``forward(x (atoms, F), species (atoms,)) -> (atoms,)`` energies, e = b_s + w_s . phi(x)."""

    def __init__(self, n_features: int, n_species: int, *, quadratic: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        self.n_features, self.n_species = int(n_features), int(n_species)
        self.quadratic, self.use_bias = bool(quadratic), bool(bias)
        p = n_terms(self.n_features, self.quadratic)
        self.weight = nn.Parameter(torch.zeros(self.n_species, p, dtype=torch.float64))
        self.bias = nn.Parameter(torch.zeros(self.n_species, dtype=torch.float64),
                                 requires_grad=self.use_bias)
        a, b = torch.triu_indices(self.n_features, self.n_features)
        self.register_buffer("pair_a", a, persistent=False)
        self.register_buffer("pair_b", b, persistent=False)

    def config(self) -> dict:
        return {"type": "LinearAtomic", "n_features": self.n_features,
                "n_species": self.n_species, "quadratic": self.quadratic, "bias": self.use_bias}

    def terms(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (atoms, P)."""
        if not self.quadratic:
            return x
        return torch.cat([x, x[:, self.pair_a] * x[:, self.pair_b]], dim=1)  # (atoms, P)

    def term_derivatives(self, x_center: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """dphi/dr_e (edges, P, 3) from x of each edge's centre (edges, F) and dx (edges, F, 3)."""
        if not self.quadratic:
            return dx
        a, b = self.pair_a, self.pair_b
        quad = x_center[:, a, None] * dx[:, b] + x_center[:, b, None] * dx[:, a]  # (edges, Q, 3)
        return torch.cat([dx, quad], dim=1)  # (edges, P, 3)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        phi = self.terms(x)  # (atoms, P)
        e = (phi * self.weight[species].to(phi.dtype)).sum(1)  # (atoms,)
        if self.use_bias:
            e = e + self.bias[species].to(phi.dtype)
        return e


class LinearLeastSquares:
    """Weighted least squares over batches for a :class:`LinearAtomic`, by a streamed QR.

    Rows sqrt(w) [a | y] of every batch are stacked under the running triangular factor and
    re-factorised (``torch.linalg.qr``, tall-skinny QR), so A^T W A is never formed and the
    conditioning is that of A, not its square; memory is one batch plus (cols+1)^2.
    ``min ||W^1/2 (A c - y)||^2 + lambda s ||I' c||^2`` is then solved from the factor.
    """

    def __init__(self, model: LinearAtomic) -> None:
        self.model = model
        self.p = n_terms(model.n_features, model.quadratic) + 1  # bias column first
        self.cols = model.n_species * self.p
        self.r = torch.zeros(0, self.cols + 1, dtype=torch.float64)  # (<= cols+1, cols+1)
        self.rows = 0

    def add(self, a: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
        """Rows a (rows, cols), targets y (rows,), weights w (rows,) >= 0."""
        keep = w > 0
        a, y, w = a[keep], y[keep], w[keep]
        if a.shape[0] == 0:
            return
        rows = torch.cat([a, y[:, None]], dim=1) * w.sqrt()[:, None]  # (rows, cols + 1)
        self.r = torch.linalg.qr(torch.cat([self.r, rows]), mode="r").R
        self.rows += int(a.shape[0])

    def add_batch(self, batch, x: torch.Tensor, dx: torch.Tensor | None, sp: torch.Tensor,
                  per_atom: bool) -> None:
        """Energy, force and stress rows of a collated batch; x (atoms, F) standardised
        descriptors, dx (edges, F, 3) their per-edge derivatives, sp (atoms,) species."""
        m, p, ns = self.model, self.p, self.model.n_species
        x = x.to(torch.float64)
        n_at, s = x.shape[0], len(batch)
        phi = torch.cat([torch.ones(n_at, 1, dtype=x.dtype), m.terms(x)], dim=1)  # (atoms, p)
        per = torch.zeros(n_at, ns, p, dtype=x.dtype)  # (atoms, species, p)
        per[torch.arange(n_at), sp] = phi
        e_rows = torch.zeros(s, ns * p, dtype=x.dtype).index_add(
            0, batch.graph.batch, per.reshape(n_at, -1))  # (S, cols)
        e_y = batch.energy - batch.prior_energy  # (S,)
        nat = batch.n_atoms.to(x.dtype)
        if per_atom:
            e_rows, e_y = e_rows / nat[:, None], e_y / nat
        self.add(e_rows, e_y, batch.weights[:, 0] * batch.has_energy)
        if dx is None or dx.shape[0] == 0:
            return
        g = batch.graph
        dphi = m.term_derivatives(x[g.i], dx.to(x.dtype))  # (edges, p - 1, 3)
        n_e = dphi.shape[0]
        ge = torch.cat([dphi.new_zeros(n_e, 3, 1), dphi.transpose(1, 2)], dim=2)  # (edges, 3, p)
        row = g.i * ns + sp[g.i]  # (edges,) (centre atom, its species) block
        f_rows = torch.zeros(n_at * ns, 3, p, dtype=x.dtype)
        f_rows.index_add_(0, row, ge)
        f_rows.index_add_(0, g.j * ns + sp[g.i], -ge)  # (atoms * species, 3, p)
        f_rows = f_rows.reshape(n_at, ns, 3, p).transpose(1, 2).reshape(n_at * 3, ns * p)
        f_y = batch.forces - batch.prior_forces  # (atoms, 3)
        f_w = (batch.weights[:, 1] * batch.has_forces)[g.batch]  # (atoms,)
        self.add(f_rows, f_y.reshape(-1), f_w.repeat_interleave(3))
        if not bool(batch.has_stress.any()):
            return
        vir = torch.zeros(s * ns, 3, 3, p, dtype=x.dtype)  # (S * species, a, b, p)
        block = g.edge_batch * ns + sp[g.i]  # (edges,)
        for a in range(3):  # three Cartesian components, not atoms
            vir[:, a].index_add_(0, block, batch.vectors[:, a, None, None].to(x.dtype) * ge)
        vir = vir.reshape(s, ns, 3, 3, p).permute(0, 2, 3, 1, 4).reshape(s, 3, 3, ns * p)
        vol = torch.linalg.det(batch.graph.cell).abs().clamp(min=1e-12)  # (S,)
        sig = 0.5 * (vir + vir.transpose(1, 2)) / vol[:, None, None, None]  # (S, 3, 3, cols)
        s_y = batch.stress - batch.prior_stress  # (S, 3, 3)
        s_w = (batch.weights[:, 2] * batch.has_stress)[:, None].expand(s, 9)  # (S, 9)
        self.add(sig.reshape(s * 9, -1), s_y.reshape(-1), s_w.reshape(-1))

    def solve(self, ridge: float = 1e-8) -> None:
        """Solve the ridge problem and write the coefficients into the model.

        ``ridge`` is relative: lambda = ridge * mean squared column norm of W^1/2 A."""
        if self.rows == 0:
            raise ValueError("linear fit: no rows with a positive weight (no labels to fit)")
        m, p, cols = self.model, self.p, self.cols
        reg = torch.ones(m.n_species, p, dtype=torch.float64)
        reg[:, 0] = 0.0  # the bias is not penalised
        scale = float(self.r[:, :cols].square().sum() / cols)
        pen = torch.zeros(cols, cols + 1, dtype=torch.float64)
        pen[:, :cols] = torch.diag((ridge * scale * reg.reshape(-1)).sqrt())
        r = torch.linalg.qr(torch.cat([self.r, pen]), mode="r").R  # (cols + 1, cols + 1)
        keep = torch.ones(m.n_species, p, dtype=torch.bool)
        if not m.use_bias:
            keep[:, 0] = False  # no bias columns at all
        keep = keep.reshape(-1)
        c = torch.zeros(cols, dtype=torch.float64)
        c[keep] = torch.linalg.lstsq(r[:, :cols][:, keep], r[:, cols:],
                                     driver="gelsd").solution[:, 0]
        c = c.reshape(m.n_species, p)
        if not torch.isfinite(c).all():
            raise FloatingPointError("linear fit: the solution is not finite (increase ridge)")
        with torch.no_grad():
            m.bias.copy_(c[:, 0].to(m.bias.dtype))
            m.weight.copy_(c[:, 1:].to(m.weight.dtype))


#: former name, kept for callers
NormalEquations = LinearLeastSquares


def solve_linear(potential, dataset, train, *, per_atom: bool = True, ridge: float = 1e-8,
                 batch_size: int = 16) -> LinearLeastSquares:
    """Closed-form fit of ``potential.atomic`` (a :class:`LinearAtomic`) on ``train`` structures.

    ``potential`` is a :class:`~forcefit.models.potential.FittedPotential` (its standardisation
    is used; its ``energy_scale`` is set to 1 and ``ref_energy`` to 0, the bias takes the role
    of the reference energies when ``bias=True``).
    """
    model = potential.atomic
    if not isinstance(model, LinearAtomic):
        raise TypeError("solve_linear needs a FittedPotential whose atomic model is LinearAtomic")
    with torch.no_grad():
        potential.energy_scale.fill_(1.0)
        if model.use_bias:
            potential.ref_energy.zero_()
    ne = LinearLeastSquares(model)
    mean = potential.feature_mean.to(torch.float64)
    std = potential.feature_std.to(torch.float64)
    train = np.asarray(train, dtype=np.int64)
    for start in range(0, len(train), batch_size):  # batches of structures bound the memory
        batch = dataset.collate(train[start:start + batch_size])
        sp = potential.species_index(batch.graph.numbers)
        x = (batch.values.to(torch.float64) - mean) / std  # (atoms, F)
        dx = None
        if batch.derivatives is not None:
            dx = batch.derivatives.to(torch.float64) / std[None, :, None]  # (edges, F, 3)
        if not model.use_bias:
            batch = _without_reference(batch, potential, sp)
        ne.add_batch(batch, x, dx, sp, per_atom)
    ne.solve(ridge)
    return ne


def _without_reference(batch, potential, sp):
    """Subtract the (fixed) reference energies from the energy labels of a batch."""
    import dataclasses

    ref = potential.ref_energy.to(torch.float64)[sp]  # (atoms,)
    per_s = torch.zeros(len(batch), dtype=torch.float64).index_add(0, batch.graph.batch, ref)
    return dataclasses.replace(batch, energy=batch.energy - per_s)
