"""The fused training loss (forcefit.models.fused) equals autograd through the cached path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models import ToyRadial, cu_structures

from forcefit.data import FeatureDataset
from forcefit.descriptors import _numba
from forcefit.models import AtomicNetwork, FittedPotential
from forcefit.models import fused as F
from forcefit.potentials import ZBL
from forcefit.train.losses import PotentialLoss


def _dataset(species=("Cu",), prior=None, n=5):
    structs = cu_structures(n, seed=3, species=species)
    zs = sorted({int(z) for s in structs for z in s.numbers})
    dset = ToyRadial(cutoff=4.0, species=zs)
    ds = FeatureDataset.build(structs, dset, prior=prior)
    rng = np.random.default_rng(0)
    # uneven weights, and some labels missing, so every mask and weight is exercised
    ds.set_weights(rng.uniform(0.2, 2.0, size=(len(ds), 3)))
    ds.has_energy[1] = False
    ds.has_forces[2] = False
    ds.has_stress[0] = False
    return ds, dset, zs


def _potential(dset, zs, ds, option, activation, prior=None, seed=0):
    torch.manual_seed(seed)
    net = AtomicNetwork(dset.n_features, len(zs), "num_desc 7 5 1", activation, option)
    pot = FittedPotential(dset, zs, net, prior)
    with torch.no_grad():
        pot.feature_mean.copy_(ds.values.mean(0))
        pot.feature_std.copy_(ds.values.std(0) + 0.1)
        pot.ref_energy.copy_(torch.linspace(-3.0, -2.0, len(zs)))
        pot.energy_scale.fill_(0.7)
    return pot


def _loss_and_grads(pot, batch, fused, **kw):
    pot.zero_grad(set_to_none=True)
    loss = PotentialLoss(fused=fused, **kw)(pot, batch)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in pot.named_parameters()}


def _assert_fused_equals_autograd(pot, batch, rtol=1e-10, atol=1e-13, loss_rtol=1e-12):
    ref_loss, ref = _loss_and_grads(pot, batch, False)
    loss, got = _loss_and_grads(pot, batch, True)
    torch.testing.assert_close(loss, ref_loss, rtol=loss_rtol, atol=0)
    for name, g in ref.items():
        assert got[name].dtype == g.dtype
        torch.testing.assert_close(got[name], g, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("option", [1, 2, 3])
@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh", "sigmoid"])
def test_fused_equals_autograd(option, activation):
    species = ("Cu",) if option == 1 else ("Cu", "Ag")
    ds, dset, zs = _dataset(species)
    pot = _potential(dset, zs, ds, option, activation)
    batch = ds.collate([0, 1, 2, 3])
    for kw in ({}, {"per_atom_energy": False}, {"use_stress": False},
               {"use_forces": False}, {"use_forces": False, "use_stress": False}):
        ref_loss, ref = _loss_and_grads(pot, batch, False, **kw)
        loss, got = _loss_and_grads(pot, batch, True, **kw)
        assert float(ref_loss) > 0
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
        assert ref.keys() == got.keys()
        for name, g in ref.items():
            if g is None:  # e.g. a species network with no atoms in the batch
                assert got[name] is None, name
                continue
            assert float(g.abs().max()) > 0, name
            torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-13, msg=name)


def test_fused_with_prior_and_float32_matches():
    prior = ZBL(1.5, 2.6)
    ds, dset, zs = _dataset(prior=prior)
    pot = _potential(dset, zs, ds, 1, "silu", prior=prior)
    batch = ds.collate([0, 2, 4])
    assert float(batch.prior_forces.abs().max()) > 0  # the prior is in play
    _assert_fused_equals_autograd(pot, batch)
    _assert_fused_equals_autograd(pot.to(torch.float32), batch, rtol=1e-4, atol=1e-6,
                                  loss_rtol=1e-5)


def test_species_missing_from_batch_keeps_its_network_untouched():
    ds, dset, zs = _dataset(("Cu", "Ag"))
    pot = _potential(dset, zs, ds, 2, "silu")
    copper = [k for k in range(len(ds)) if bool((ds.numbers[ds.atom_slice(k)] == 29).all())]
    if not copper:  # build a Cu-only batch by hand: a one-structure dataset of pure Cu
        ds2 = FeatureDataset.build(cu_structures(2, seed=1), dset)
        batch = ds2.collate([0, 1])
    else:
        batch = ds.collate(copper)
    _, ref = _loss_and_grads(pot, batch, False)
    _, got = _loss_and_grads(pot, batch, True)
    for name, g in ref.items():
        assert (g is None) == (got[name] is None), name
    assert any(g is None for g in got.values())


@pytest.mark.skipif(not _numba.available(), reason="numba not installed")
def test_contraction_loops_equal_torch(monkeypatch):
    ds, _, _ = _dataset()
    batch = ds.collate([0, 1, 2, 3, 4])
    g = batch.graph
    rng = torch.Generator().manual_seed(1)
    a = torch.randn(batch.values.shape, generator=rng, dtype=torch.float64)
    fbar = torch.randn(a.shape[0], 3, generator=rng, dtype=torch.float64)
    vbar = torch.randn(len(batch), 3, 3, generator=rng, dtype=torch.float64)
    args = (batch.derivatives, g, batch.vectors)
    loops = (F.contract_forward(a, *args, True),
             F.contract_adjoint(fbar, vbar, *args, a.shape[1]))
    # the dataset stores dD Cartesian-major; a plain (edges, F, 3) tensor gives the same
    assert batch.derivatives.transpose(1, 2).is_contiguous()
    plain_dd = (batch.derivatives.contiguous(),) + args[1:]
    torch.testing.assert_close(F.contract_forward(a, *plain_dd, True)[0],
                               loops[0][0], rtol=0, atol=0)
    torch.testing.assert_close(F.contract_adjoint(fbar, vbar, *plain_dd, a.shape[1]),
                               loops[1], rtol=0, atol=0)
    monkeypatch.setattr(_numba, "available", lambda: False)
    plain = (F.contract_forward(a, *args, True),
             F.contract_adjoint(fbar, vbar, *args, a.shape[1]))
    torch.testing.assert_close(loops[0][0], plain[0][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loops[0][1], plain[0][1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loops[1], plain[1], rtol=1e-12, atol=1e-14)
    # the adjoint is the transpose: <contract(a), (fbar, vbar)> = <a, adjoint(fbar, vbar)>
    lhs = (plain[0][0] * fbar).sum() + (plain[0][1] * vbar).sum()
    torch.testing.assert_close(lhs, (a * plain[1]).sum(), rtol=1e-12, atol=0)


def test_fused_without_numba_equals_autograd(monkeypatch):
    monkeypatch.setattr(_numba, "available", lambda: False)
    ds, dset, zs = _dataset(("Cu", "Ag"))
    pot = _potential(dset, zs, ds, 3, "tanh")
    _assert_fused_equals_autograd(pot, ds.collate([1, 3, 4]))


def test_second_derivatives_of_activations_equal_autograd():
    z = torch.linspace(-6, 6, 41, dtype=torch.float64, requires_grad=True)
    for name in ("silu", "softplus", "tanh", "sigmoid"):
        a, d1, d2 = F.activation_derivatives(name, z)
        (g1,) = torch.autograd.grad(a.sum(), z, create_graph=True)
        (g2,) = torch.autograd.grad(g1.sum(), z)
        torch.testing.assert_close(d1, g1, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(d2, g2, rtol=1e-12, atol=1e-14)
