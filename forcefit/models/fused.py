"""The training loss of a network potential and its parameter gradients in one pass, no autograd graph.

Units: as :mod:`forcefit.train.losses` (eV, eV/Angstrom, eV/Angstrom^3; the loss in their
squares times the dimensionless weights).

Why: training on forces with autograd builds the graph of the network, of its input gradient
dE/dD and of the force contraction, then differentiates it a second time. For the small
batches of force-field fitting (a few structures, tens of atoms) each of the many small
tensor operations this takes costs more in dispatch than in arithmetic. Here the same loss is
written out: a forward pass that keeps the activations and their first and second
derivatives, the explicit chain rule for dE/dD, the force (and virial) contraction, the loss,
and then the adjoint of each of those steps in reverse order. The contraction and its adjoint
are two compiled loops over the edges (numba, the ``fast`` extra; a torch version otherwise,
e.g. on GPU). The gradients are handed to autograd with :func:`attach_gradients`, so
``loss.backward()``, the optimisers, gradient clipping and DistributedDataParallel work
unchanged. Measured on the Ta benchmark's batches of 4 structures (one thread): 0.85 ms per
loss + gradient against 1.17 ms through autograd (1.4x; 1.08 / 1.53 ms with stress). Tests
hold loss and gradients equal to the autograd path
(:meth:`forcefit.models.FittedPotential.predict_cached` + :func:`forcefit.train.losses.weighted_mse`)
for every element option, activation and loss term.

Notation, one MLP with hidden layers l = 1 .. L-1 (widths d_l) and a linear output layer L:

    forward:   z_l = h_{l-1} W_l^T + b_l,  h_l = a(z_l),  e = h_{L-1} W_L^T + b_L
    gradient:  u_{L-1} = W_L,  t_l = u_l * a'(z_l),  u_{l-1} = t_l W_l,  de/dh_0 = u_0

Given the adjoints ebar = dLoss/de (rows,) and ubar_0 = dLoss/du_0 (rows, d_0), the reverse
sweep over the gradient chain (l = 1 .. L-1) is

    tbar_l = ubar_{l-1} W_l^T,  Wbar_l += t_l^T ubar_{l-1},  ubar_l = tbar_l * a'(z_l),
    zbar_l = tbar_l * u_l * a''(z_l)          (z_l enters t_l through a'(z_l))

then Wbar_L = sum_rows ubar_{L-1} + ebar^T h_{L-1}, bbar_L = sum ebar, and down the forward
chain (l = L-1 .. 1) with hbar_{L-1} = ebar W_L:

    zbar_l += hbar_l * a'(z_l),  Wbar_l += zbar_l^T h_{l-1},  bbar_l = sum_rows zbar_l,
    hbar_{l-1} = zbar_l W_l.

The potential's energy is E_s = sum_{i in s} (e_ref + scale e_i) + prior_s, its descriptor
gradient dE/dD_i = scale u_0,i / std, the forces F = contraction (see
:func:`forcefit.models.potential.contract`), so ebar_i = scale Ebar_{s(i)} and
ubar_0 = scale Dbar / std with Dbar the contraction's adjoint.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..descriptors import _numba
from .networks import AtomicNetwork
from .potential import contract

__all__ = ["attach_gradients", "fused_loss", "supports_fused"]


# ------------------------------------------------------------------ activations
def activation_derivatives(name: str, z: torch.Tensor):
    """(a(z), a'(z), a''(z)) for the activations of :mod:`forcefit.models.networks`.

    silu a = z s: a' = s (1 + z (1 - s)), a'' = s (1 - s) (2 + z (1 - 2 s));
    softplus: a' = s, a'' = s (1 - s); tanh t: a' = 1 - t^2, a'' = -2 t (1 - t^2);
    sigmoid s: a' = s (1 - s), a'' = s (1 - s) (1 - 2 s); s = sigmoid(z).
    """
    if name == "tanh":
        t = torch.tanh(z)
        d1 = 1 - t * t
        return t, d1, -2 * t * d1
    s = torch.sigmoid(z)
    ds = s * (1 - s)  # sigmoid'
    if name == "silu":
        return z * s, s + z * ds, ds * (2 + z * (1 - 2 * s))
    if name == "softplus":
        return nn.functional.softplus(z), s, ds
    if name == "sigmoid":
        return s, ds, ds * (1 - 2 * s)
    raise ValueError(f"activation {name!r} has no fused form")


# ------------------------------------------------------------------ one MLP
def _linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def _mlp_forward(linears: list[nn.Linear], activation: str, h0: torch.Tensor) -> dict:
    """Energies (rows,), input gradient u_0 (rows, d_0) and what the adjoint needs."""
    hs, d1s, d2s = [h0], [], []
    h = h0
    for layer in linears[:-1]:
        h, d1, d2 = activation_derivatives(activation, torch.addmm(layer.bias, h,
                                                                   layer.weight.t()))
        hs.append(h)
        d1s.append(d1)
        d2s.append(d2)
    last = linears[-1]
    e = torch.addmm(last.bias, h, last.weight.t()).squeeze(1)  # (rows,)
    us, ts = [None] * len(linears), [None] * len(linears)
    u = last.weight  # (1, d_{L-1}), broadcast over rows
    for k in range(len(linears) - 1, 0, -1):  # k = l: hidden layer l, weights linears[l-1]
        us[k] = u
        ts[k] = u * d1s[k - 1]  # (rows, d_l)
        u = ts[k] @ linears[k - 1].weight  # (rows, d_{l-1})
    return {"e": e, "u0": u, "hs": hs, "d1s": d1s, "d2s": d2s, "us": us, "ts": ts}


def _mlp_adjoint(linears: list[nn.Linear], cache: dict, ebar: torch.Tensor,
                 ubar: torch.Tensor | None) -> list[torch.Tensor]:
    """Parameter gradients [W_1, b_1, ..., W_L, b_L] (the Sequential's parameter order)."""
    n_layers = len(linears)
    hs, d1s, d2s, us, ts = cache["hs"], cache["d1s"], cache["d2s"], cache["us"], cache["ts"]
    w_bar: list = [None] * n_layers
    z_chain: list = [None] * n_layers
    if ubar is not None:
        for k in range(1, n_layers):  # up the gradient chain
            weight = linears[k - 1].weight
            w_bar[k - 1] = ts[k].t() @ ubar  # (d_l, d_{l-1})
            tbar = ubar @ weight.t()  # (rows, d_l)
            z_chain[k] = tbar * us[k] * d2s[k - 1]
            ubar = tbar * d1s[k - 1]
    last = linears[-1]
    out_w = ebar[None, :] @ hs[-1]  # (1, d_{L-1})
    if ubar is not None:
        out_w = out_w + ubar.sum(0, keepdim=True)
    grads = [out_w, ebar.sum().reshape(1)]
    hbar = ebar[:, None] * last.weight  # (rows, d_{L-1})
    for k in range(n_layers - 1, 0, -1):  # down the forward chain
        zbar = hbar * d1s[k - 1] if z_chain[k] is None else torch.addcmul(z_chain[k], hbar,
                                                                          d1s[k - 1])
        wk = zbar.t() @ hs[k - 1]
        grads = [wk if w_bar[k - 1] is None else w_bar[k - 1] + wk, zbar.sum(0)] + grads
        if k > 1:
            hbar = zbar @ linears[k - 1].weight
    return grads


# ------------------------------------------------------------------ the contraction
def _contract_forward_loop(a, dt, i, j, vec, eb, forces, virial, with_virial):
    """forces[i_e] += g_e, forces[j_e] -= g_e, virial[s_e] += r_e (x) g_e with
    g_e[c] = sum_F a[i_e, F] dt[e, c, F] (dt: the derivatives as (edges, 3, F); forces and
    virial zeroed by the caller)."""
    for e in range(dt.shape[0]):
        ie, je = i[e], j[e]
        for c in range(3):
            g = 0.0
            for f in range(dt.shape[2]):
                g += a[ie, f] * dt[e, c, f]
            forces[ie, c] += g
            forces[je, c] -= g
            if with_virial:
                s = eb[e]
                for b in range(3):
                    virial[s, b, c] += vec[e, b] * g


def _contract_adjoint_loop(fbar, vbar, dt, i, j, vec, eb, abar, with_virial):
    """abar[i_e, F] += sum_c dt[e, c, F] gbar_e[c] with gbar_e = fbar[i_e] - fbar[j_e]
    (+ r_e . vbar[s_e]): the adjoint of :func:`_contract_forward_loop` (abar zeroed)."""
    for e in range(dt.shape[0]):
        ie, je = i[e], j[e]
        b0 = fbar[ie, 0] - fbar[je, 0]
        b1 = fbar[ie, 1] - fbar[je, 1]
        b2 = fbar[ie, 2] - fbar[je, 2]
        if with_virial:
            s = eb[e]
            for c in range(3):
                b0 += vec[e, c] * vbar[s, c, 0]
                b1 += vec[e, c] * vbar[s, c, 1]
                b2 += vec[e, c] * vbar[s, c, 2]
        for f in range(dt.shape[2]):
            abar[ie, f] += dt[e, 0, f] * b0 + dt[e, 1, f] * b1 + dt[e, 2, f] * b2


_KERNELS: dict = {}


def _kernels():
    if not _KERNELS:
        import numba

        # reassociation lets the sums over features vectorise (as the descriptor kernels)
        opts = {"cache": True, "nogil": True, "error_model": "numpy",
                "fastmath": {"nsz", "arcp", "contract", "reassoc"}}
        _KERNELS["forward"] = numba.njit(**opts)(_contract_forward_loop)
        _KERNELS["adjoint"] = numba.njit(**opts)(_contract_adjoint_loop)
    return _KERNELS


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _use_loops(*tensors: torch.Tensor) -> bool:
    return _numba.available() and all(t.device.type == "cpu" for t in tensors)


def _numpy_cartesian_major(dd: torch.Tensor) -> np.ndarray:
    """(edges, 3, F) numpy view of (edges, F, 3) derivatives (a copy unless they are stored
    Cartesian-major, as :class:`forcefit.data.FeatureDataset` stores them)."""
    return _np(dd.transpose(1, 2).contiguous())


def contract_forward(a: torch.Tensor, dd: torch.Tensor, graph, vectors: torch.Tensor,
                     virial: bool):
    """Forces (atoms, 3) and dE/deps (S, 3, 3) or None from dE/dD ``a`` (atoms, F) and the
    per-edge derivatives ``dd`` (edges, F, 3) of ``graph``'s edges, in ``a``'s dtype: the
    compiled loop, or :func:`forcefit.models.potential.contract` off CPU / without numba."""
    if not _use_loops(a, dd, vectors):
        return contract(a, dd, graph, vectors, stress=virial)
    forces = torch.zeros(a.shape[0], 3, dtype=a.dtype)
    vir = torch.zeros(graph.n_structures if virial else 1, 3, 3, dtype=a.dtype)
    _kernels()["forward"](_np(a.contiguous()), _numpy_cartesian_major(dd), _np(graph.i),
                          _np(graph.j), _np(vectors.contiguous()), _np(graph.edge_batch),
                          _np(forces), _np(vir), bool(virial))
    return forces, (vir if virial else None)


def contract_adjoint(fbar: torch.Tensor, vbar: torch.Tensor | None, dd: torch.Tensor, graph,
                     vectors: torch.Tensor, n_features: int) -> torch.Tensor:
    """d Loss / d a (atoms, F) from dLoss/dforces (atoms, 3) and dLoss/d(dE/deps) (S, 3, 3)."""
    i, j, edge_batch = graph.i, graph.j, graph.edge_batch
    abar = torch.zeros(fbar.shape[0], n_features, dtype=fbar.dtype, device=fbar.device)
    if _use_loops(fbar, dd, vectors):
        v = vbar if vbar is not None else fbar.new_zeros(1, 3, 3)
        _kernels()["adjoint"](_np(fbar.contiguous()), _np(v.contiguous()),
                              _numpy_cartesian_major(dd), _np(i), _np(j),
                              _np(vectors.contiguous()), _np(edge_batch), _np(abar),
                              vbar is not None)
        return abar
    gbar = fbar.index_select(0, i) - fbar.index_select(0, j)  # (edges, 3)
    if vbar is not None:
        gbar = gbar + torch.bmm(vectors.to(fbar.dtype).unsqueeze(1),
                                vbar.index_select(0, edge_batch)).squeeze(1)
    return abar.index_add_(0, i, torch.bmm(dd.to(fbar.dtype), gbar.unsqueeze(2)).squeeze(2))


# ------------------------------------------------------------------ autograd hand-over
class _Attach(torch.autograd.Function):
    """Returns ``loss``; its backward hands ``grad_output * grads[k]`` to ``params[k]``."""

    @staticmethod
    def forward(ctx, loss, n, *tensors):  # tensors = grads + params
        ctx.save_for_backward(*tensors[:n])
        ctx.n = n
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output):
        grads = ctx.saved_tensors
        return (None, None, *([None] * ctx.n), *(grad_output * g for g in grads))


def attach_gradients(loss: torch.Tensor, params: list[torch.Tensor],
                     grads: list[torch.Tensor]) -> torch.Tensor:
    """``loss`` (0-d, no graph) as a tensor whose backward gives ``params`` the ``grads``."""
    return _Attach.apply(loss, len(grads), *grads, *params)


# ------------------------------------------------------------------ the loss
def supports_fused(model) -> bool:
    """True for a :class:`~forcefit.models.FittedPotential` whose atomic model is an
    :class:`~forcefit.models.AtomicNetwork` (the linear model is solved in closed form)."""
    return isinstance(getattr(model, "atomic", None), AtomicNetwork)


def fused_loss(model, batch, *, per_atom_energy: bool = True, forces: bool = True,
               stress: bool = True) -> torch.Tensor:
    """The weighted loss of :func:`forcefit.train.losses.weighted_mse` on ``model``'s cached
    predictions for ``batch``, with its gradient for the atomic network's parameters attached
    (see the module docstring). ``forces`` / ``stress``: include those terms (as
    ``PotentialLoss.use_forces`` / ``use_stress``)."""
    with torch.no_grad():
        loss, params, grads = _loss_and_gradients(model, batch, per_atom_energy, forces, stress)
    return attach_gradients(loss, params, grads)


def _loss_and_gradients(model, batch, per_atom_energy, want_forces, want_stress):
    """(loss, parameters, their gradients): network passes -> energies and dE/dD -> loss and
    its adjoints (ebar per atom, Dbar per atom and feature) -> parameter gradients."""
    net, graph = model.atomic, batch.graph
    dtype = model.feature_mean.dtype
    std, scale = model.feature_std.to(dtype), model.energy_scale.to(dtype)
    x = (batch.values.to(dtype) - model.feature_mean.to(dtype)) / std  # (atoms, F)
    sp = model.species_index(graph.numbers)  # (atoms,)
    want_forces = want_forces and bool(batch.has_forces.any())
    want_stress = want_stress and bool(batch.has_stress.any())
    if (want_forces or want_stress) and batch.derivatives is None:
        raise ValueError("forces/stress requested but the dataset has no cached "
                         "descriptor derivatives (build it with derivatives=True)")
    passes = _network_passes(net, x, sp)
    atom_e = model.ref_energy.to(dtype)[sp] + scale * _gather(passes, "e", x)  # (atoms,)
    energy = x.new_zeros(len(batch)).index_add_(0, graph.batch, atom_e)
    energy = energy + batch.prior_energy.to(dtype)  # (S,)
    w = batch.weights.to(dtype)  # (S, 3)
    loss, energy_bar = _energy_term(energy, batch, w, per_atom_energy)
    ebar = scale * energy_bar.index_select(0, graph.batch)  # (atoms,) dLoss/de
    dbar = None  # (atoms, F) dLoss/dD
    if want_forces or want_stress:
        dd, vectors = batch.derivatives, batch.vectors.to(dtype)
        de_dd = scale * _gather(passes, "u0", x, net.n_features) / std  # (atoms, F)
        f_pred, de_deps = contract_forward(de_dd, dd, graph, vectors, want_stress)
        fbar, vbar = torch.zeros_like(f_pred), None
        if want_forces:
            loss_f, fbar = _force_term(f_pred, batch, w)
            loss = loss + loss_f
        if want_stress:
            loss_s, vbar = _stress_term(de_deps, batch, w)
            loss = loss + loss_s
        dbar = contract_adjoint(fbar, vbar, dd, graph, vectors, net.n_features)
    abar = None if dbar is None else scale * dbar / std  # dLoss/du_0
    params, grads = _parameter_gradients(net, passes, ebar, abar)
    return loss, params, grads


def _network_passes(net, x: torch.Tensor, sp: torch.Tensor) -> list:
    """[(rows or None, network index, :func:`_mlp_forward` cache)]: one pass for options 1
    and 3 (3: descriptors + one-hot species), one per species present for option 2."""
    if net.element_option == 2:
        passes = []
        for s in range(len(net.nets)):
            rows = torch.nonzero(sp == s).squeeze(1)
            if rows.numel():
                passes.append((rows, s, _mlp_forward(_linears(net.nets[s]), net.activation,
                                                     x.index_select(0, rows))))
        return passes
    h0 = x
    if net.element_option == 3:
        h0 = torch.cat([x, nn.functional.one_hot(sp, net.n_species).to(x.dtype)], dim=1)
    return [(None, 0, _mlp_forward(_linears(net.nets[0]), net.activation, h0))]


def _gather(passes, key: str, x: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """Per-atom ``key`` of the passes: (atoms,) for "e", (atoms, width) for "u0"."""
    if passes[0][0] is None:
        out = passes[0][2][key]
        return out if width is None else out[:, :width]
    out = x.new_zeros(x.shape[0]) if width is None else x.new_zeros(x.shape[0], width)
    for rows, _, cache in passes:
        out.index_copy_(0, rows, cache[key] if width is None else cache[key][:, :width])
    return out


def _energy_term(energy, batch, w, per_atom_energy):
    """sum_m w_m m_m dE_m^2 / M_E [dE per atom] and dLoss/dE (S,)."""
    de = energy - batch.energy.to(energy.dtype)  # (S,)
    nat = batch.n_atoms.to(energy.dtype)
    if per_atom_energy:
        de = de / nat
    m_e = batch.has_energy.to(energy.dtype)
    n_e = m_e.sum()
    if not n_e > 0:
        return energy.new_zeros(()), torch.zeros_like(energy)
    we = w[:, 0] * m_e / n_e
    return (we * de.square()).sum(), 2 * we * de / (nat if per_atom_energy else 1)


def _force_term(f_pred, batch, w):
    """sum_i w_i |dF_i|^2 / (3 N_F) and dLoss/dF (atoms, 3)."""
    dtype = f_pred.dtype
    df = f_pred + batch.prior_forces.to(dtype) - batch.forces.to(dtype)  # (atoms, 3)
    has_f = batch.has_forces.to(dtype)
    wa = (w[:, 1] * has_f).index_select(0, batch.graph.batch)  # (atoms,)
    n_fa = has_f.index_select(0, batch.graph.batch).sum()
    return (wa[:, None] * df.square()).sum() / (3 * n_fa), df * (2 * wa / (3 * n_fa))[:, None]


def _stress_term(de_deps, batch, w):
    """sum_m w_m |dsigma_m|^2 / (9 M_V) with sigma = sym(dE/deps) / V (0 where not periodic),
    and dLoss/d(dE/deps) (S, 3, 3)."""
    dtype = de_deps.dtype
    graph = batch.graph
    vol = torch.linalg.det(graph.cell.to(dtype)).abs()  # (S,)
    periodic = graph.pbc.all(dim=1)
    inv_v = torch.where(periodic, 1 / torch.where(periodic, vol, torch.ones_like(vol)),
                        torch.zeros_like(vol))[:, None, None]  # (S, 1, 1)
    sym = 0.5 * (de_deps + de_deps.transpose(1, 2)) * inv_v
    ds = sym + batch.prior_stress.to(dtype) - batch.stress.to(dtype)  # (S, 3, 3)
    ws = (w[:, 2] * batch.has_stress.to(dtype) / (9 * batch.has_stress.sum()))[:, None, None]
    sbar = 2 * ws * ds
    return (ws * ds.square()).sum(), 0.5 * (sbar + sbar.transpose(1, 2)) * inv_v


def _parameter_gradients(net, passes, ebar, abar):
    """Parameters of the networks that ran and their gradients (:func:`_mlp_adjoint`)."""
    params, grads = [], []
    for rows, k, cache in passes:
        linears = _linears(net.nets[k])
        eb = ebar if rows is None else ebar.index_select(0, rows)
        ub = None
        if abar is not None:
            ub = abar if rows is None else abar.index_select(0, rows)
            width = cache["u0"].shape[1]
            if width > ub.shape[1]:  # option 3: the one-hot inputs have no force adjoint
                ub = torch.cat([ub, ub.new_zeros(ub.shape[0], width - ub.shape[1])], dim=1)
        grads += _mlp_adjoint(linears, cache, eb, ub)
        params += [p for layer in linears for p in (layer.weight, layer.bias)]
    return params, grads
