"""Models: layer syntax, element options, cached forces == autograd, linear ridge, toy fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from forcefit import Structure
from forcefit.data import FeatureDataset
from forcefit.models import (AtomicNetwork, FittedPotential, LinearAtomic, LinearLeastSquares,
                             contract_reference, parse_layers, solve_linear)
from forcefit.neighbors import build_graph
from forcefit.potentials.base import evaluate


class ToyRadial:
    """A minimal descriptor set following the DescriptorSet protocol (independent of
    forcefit.descriptors): D_i,(s,k) = sum_{j of species s} exp(-eta_k (r_ij - rs_k)^2) fc(r_ij),
    fc = (cos(pi r / rc) + 1) / 2, with analytic per-edge derivatives."""

    def __init__(self, cutoff=4.0, etas=(1.0, 2.0, 0.5), rs=(2.0, 2.5, 3.0), species=(29,)):
        self.cutoff, self.etas, self.rs = float(cutoff), list(etas), list(rs)
        self.species = [int(z) for z in species]
        self.n_features = len(self.etas) * len(self.species)
        self.feature_names = [f"g{k}" for k in range(self.n_features)]

    def to_config(self):
        return {"type": "ToyRadial", "cutoff": self.cutoff, "etas": self.etas, "rs": self.rs,
                "species": self.species}

    @classmethod
    def from_config(cls, c):
        return cls(**{k: v for k, v in c.items() if k != "type"})

    def _terms(self, graph, vectors, deriv=False):
        r = vectors.norm(dim=1)
        eta = torch.tensor(self.etas, dtype=r.dtype)
        rs = torch.tensor(self.rs, dtype=r.dtype)
        fc = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1)
        ex = torch.exp(-eta * (r[:, None] - rs) ** 2)
        g = ex * fc[:, None]
        if deriv:
            dfc = -0.5 * math.pi / self.cutoff * torch.sin(math.pi * r / self.cutoff)
            g = ex * (-2 * eta * (r[:, None] - rs) * fc[:, None] + dfc[:, None])
        col = (graph.numbers[graph.j][:, None] == torch.tensor(self.species)).to(r.dtype)
        return (col[:, :, None] * g[:, None, :]).reshape(len(r), -1), r

    def values(self, graph, vectors):
        t, _ = self._terms(graph, vectors)
        out = torch.zeros(graph.numbers.shape[0], self.n_features, dtype=t.dtype)
        return out.index_add(0, graph.i, t)

    def compute(self, graph, derivatives=True):
        v = graph.edge_vectors().detach()
        vals = self.values(graph, v)
        if not derivatives:
            return vals, None
        dg, r = self._terms(graph, v, deriv=True)
        return vals, dg[:, :, None] * (v / r[:, None])[:, None, :]


def cu_structures(n=6, seed=0, species=("Cu",)):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
        if len(species) > 1:
            syms = a.get_chemical_symbols()
            for q in rng.choice(len(a), size=len(a) // 3, replace=False):
                syms[q] = species[1]
            a.set_chemical_symbols(syms)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        a.calc = EMT()
        out.append(Structure.from_ase(a, energy=a.get_potential_energy(),
                                      forces=a.get_forces(), stress=a.get_stress(),
                                      name=f"cu{k}", group="even" if k % 2 == 0 else "odd"))
    return out


def make_potential(dset, species, atomic, ds, prior=None):
    pot = FittedPotential(dset, species, atomic, prior)
    with torch.no_grad():
        pot.feature_mean.copy_(ds.values.mean(0))
        pot.feature_std.copy_(ds.values.std(0))
        pot.ref_energy.copy_(torch.linspace(-3.0, -2.0, len(species)))
        pot.energy_scale.fill_(0.7)
    return pot


def test_parse_layers():
    assert parse_layers("num_desc 64 64 1", 30) == [30, 64, 64, 1]
    assert parse_layers(["num_desc", 8, 1], 5) == [5, 8, 1]
    with pytest.raises(ValueError, match="last layer"):
        parse_layers("num_desc 64 2", 30)
    with pytest.raises(ValueError, match="'abc'"):
        parse_layers("num_desc abc 1", 30)
    with pytest.raises(ValueError, match="activation"):
        AtomicNetwork(3, 1, "num_desc 4 1", "relu6")
    with pytest.raises(ValueError, match="multi_element_option"):
        AtomicNetwork(3, 1, "num_desc 4 1", "tanh", element_option=4)


@pytest.mark.parametrize("act", ["softplus", "silu", "tanh", "sigmoid"])
def test_activations_change_output(act):
    torch.manual_seed(0)
    net = AtomicNetwork(4, 2, "num_desc 5 1", act, 1).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    out = net(x, torch.zeros(7, dtype=torch.int64))
    assert out.shape == (7,)
    seq = net.nets[0]
    assert isinstance(seq[1], type(dict(softplus=torch.nn.Softplus(), silu=torch.nn.SiLU(),
                                         tanh=torch.nn.Tanh(), sigmoid=torch.nn.Sigmoid())[act]))


def test_element_options():
    torch.manual_seed(1)
    x = torch.randn(11, 4, dtype=torch.float64)
    sp = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1])
    net2 = AtomicNetwork(4, 3, "num_desc 6 1", "silu", 2).double()
    assert len(net2.nets) == 3
    out = net2(x, sp)
    for s in range(3):  # independent per-species evaluation
        rows = sp == s
        assert torch.allclose(out[rows], net2.nets[s](x[rows]).squeeze(-1), rtol=0, atol=1e-14)
    # gradients reach only the network of the species present
    net2(x[sp == 1], sp[sp == 1]).sum().backward()
    assert net2.nets[0][0].weight.grad is None and net2.nets[1][0].weight.grad is not None
    net3 = AtomicNetwork(4, 3, "num_desc 6 1", "silu", 3).double()
    assert net3.nets[0][0].in_features == 7
    out3 = net3(x, sp)
    onehot = torch.nn.functional.one_hot(sp, 3).double()
    assert torch.allclose(out3, net3.nets[0](torch.cat([x, onehot], 1)).squeeze(-1))
    # same descriptors, different species -> different energies under option 3
    assert not torch.allclose(net3(x, torch.zeros_like(sp)), net3(x, torch.ones_like(sp)))
    net1 = AtomicNetwork(4, 3, "num_desc 6 1", "silu", 1).double()
    assert torch.allclose(net1(x, sp), net1(x, torch.zeros_like(sp)))


def _physical_models(ds, dset, species):
    torch.manual_seed(3)
    from forcefit.potentials import ZBL

    return {
        "net1": make_potential(dset, species, AtomicNetwork(dset.n_features, len(species),
                                                            "num_desc 8 8 1", "softplus", 1), ds),
        "net2_zbl": make_potential(dset, species, AtomicNetwork(
            dset.n_features, len(species), "num_desc 8 1", "tanh", 2), ds,
            prior=ZBL(inner=1.8, outer=2.6)),
        "net3": make_potential(dset, species, AtomicNetwork(dset.n_features, len(species),
                                                            "num_desc 8 1", "silu", 3), ds),
        "quadratic": make_potential(dset, species, _random_linear(dset.n_features, len(species)),
                                    ds),
    }


def _random_linear(n_f, n_s):
    lin = LinearAtomic(n_f, n_s, quadratic=True)
    with torch.no_grad():
        lin.weight.normal_(0, 0.1)
        lin.bias.normal_()
    return lin


def test_cached_path_equals_autograd_on_the_fly():
    """Forces and stress from cached dD by one contraction == autograd through values()."""
    structs = cu_structures(5, species=("Cu", "Ni"))
    dset = ToyRadial(cutoff=4.2, species=(28, 29))
    from forcefit.potentials import ZBL

    plain = FeatureDataset.build(structs, dset)
    with_prior = FeatureDataset.build(structs, dset, prior=ZBL(inner=1.8, outer=2.6))
    assert float(with_prior.prior_energy.abs().min()) > 0  # the prior acts on these structures
    for name, pot in _physical_models(plain, dset, [28, 29]).items():
        ds = with_prior if pot.prior is not None else plain
        batch = ds.collate([4, 1, 2])
        cached = pot.predict_cached(batch, create_graph=False)
        ref = evaluate(pot, build_graph([structs[k] for k in (4, 1, 2)], pot.cutoff))
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(cached[key], ref[key].detach(), rtol=1e-10, atol=1e-11,
                                       msg=f"{name}: {key}")


def test_contract_matches_descriptors_package_when_available():
    d = pytest.importorskip("forcefit.descriptors")
    structs = cu_structures(2)
    graph = build_graph(structs, 4.0)
    dset = ToyRadial(cutoff=4.0)
    _, dd = dset.compute(graph)
    de = torch.randn(graph.numbers.shape[0], dset.n_features, dtype=torch.float64)
    v = graph.edge_vectors()
    for a, b in zip(d.contract(de, dd, graph, v), contract_reference(de, dd, graph, v)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fitted_potential_physics_kit():
    from forcefit.testing import (check_batched_equals_single, check_extra_edges_ignored,
                                  check_forces_fd, check_gradcheck, check_invariances,
                                  check_stress_fd, check_supercell)

    structs = cu_structures(2)
    dset = ToyRadial(cutoff=4.0)
    ds = FeatureDataset.build(structs, dset)
    pot = _physical_models(ds, dset, [29])["net1"]
    s = structs[0]
    check_forces_fd(pot, s, max_atoms=4)
    check_stress_fd(pot, s)
    check_invariances(pot, s)
    check_supercell(pot, s, reps=(1, 1, 2))
    check_batched_equals_single(pot, structs)
    check_extra_edges_ignored(pot, s)
    with_prior = _physical_models(ds, dset, [29])["net2_zbl"]  # prior cutoff < descriptors'
    check_extra_edges_ignored(with_prior, s)
    check_forces_fd(with_prior, s, max_atoms=2)
    small = Structure(numbers=[29, 29, 29], positions=[[0, 0, 0], [2.3, 0.2, 0], [0.3, 2.4, 0.5]])
    check_gradcheck(pot, small, second_order=False)


def test_unknown_species_named():
    structs = cu_structures(1)
    dset = ToyRadial(cutoff=4.0)
    ds = FeatureDataset.build(structs, dset)
    pot = make_potential(dset, [29], AtomicNetwork(3, 1, "num_desc 4 1"), ds)
    bad = structs[0].copy()
    bad.numbers = bad.numbers.copy()
    bad.numbers[3] = 79
    with pytest.raises(ValueError, match=r"Au \(Z=79\).*Cu"):
        evaluate(pot, build_graph([bad], pot.cutoff))


def _weighted_objective(pot, ds, train, per_atom):
    """sum w_E (dE/N)^2 + sum w_F dF^2 + sum w_V dsigma^2 (rows of the linear solve)."""
    b = ds.collate(train)
    out = pot.predict_cached(b, create_graph=True)
    de = out["energy"] - b.energy
    if per_atom:
        de = de / b.n_atoms
    w = b.weights
    return ((w[:, 0] * de**2).sum()
            + (w[:, 1][b.graph.batch][:, None] * (out["forces"] - b.forces) ** 2).sum()
            + (w[:, 2][:, None, None] * (out["stress"] - b.stress) ** 2).sum())


@pytest.mark.parametrize("quadratic", [False, True])
def test_linear_ridge_is_the_least_squares_optimum(quadratic):
    structs = cu_structures(6, species=("Cu", "Ni"))
    dset = ToyRadial(cutoff=4.2, species=(28, 29))
    ds = FeatureDataset.build(structs, dset)
    ds.set_weights(np.tile([50.0, 1.0, 20.0], (len(ds), 1)))
    pot = make_potential(dset, [28, 29], LinearAtomic(dset.n_features, 2, quadratic=quadratic), ds)
    train = np.arange(5)
    solve_linear(pot, ds, train, per_atom=True, ridge=0.0)
    params = [pot.atomic.weight, pot.atomic.bias]
    pot.atomic.bias.requires_grad_(True)
    loss = _weighted_objective(pot, ds, train, True)
    grads = torch.autograd.grad(loss, params)
    scale = loss.detach() + 1.0
    for g in grads:  # stationary point of the weighted objective
        assert float(g.abs().max()) < 1e-7 * float(scale)
    # and it is a minimum: a random perturbation increases the objective
    with torch.no_grad():
        pot.atomic.weight.add_(1e-3 * torch.randn_like(pot.atomic.weight))
    assert float(_weighted_objective(pot, ds, train, True).detach()) > float(loss.detach())


def test_linear_ridge_shrinks_weights():
    structs = cu_structures(4)
    dset = ToyRadial(cutoff=4.2)
    ds = FeatureDataset.build(structs, dset)
    norms = []
    for ridge in (0.0, 1.0):
        pot = make_potential(dset, [29], LinearAtomic(3, 1), ds)
        solve_linear(pot, ds, np.arange(4), ridge=ridge)
        norms.append(float(pot.atomic.weight.detach().norm()))
    assert norms[1] < 0.5 * norms[0]


def test_miniff_toy_fit_linear_closed_form():
    """miniff's toy: f(r) = (r^2 - r + 1) e^-r from g_i = r^i e^-r, one linear layer, no bias."""
    r = torch.linspace(0.1, 10, 100, dtype=torch.float64)
    f = (r**2 - r + 1) * torch.exp(-r)
    g = torch.stack([r**i * torch.exp(-r) for i in range(3)], dim=1)  # (points, 3)
    ds = FeatureDataset.from_tensors(g, [1] * 100, energy=f)
    lin = LinearAtomic(3, 1, bias=False)
    ne = LinearLeastSquares(lin)
    b = ds.collate(np.arange(100))
    ne.add_batch(b, b.values, None, torch.zeros(100, dtype=torch.int64), per_atom=False)
    ne.solve(ridge=0.0)
    w = lin.weight.detach().reshape(-1)
    np.testing.assert_allclose(w.numpy(), [1, -1, 1], atol=1e-3)
    loss = float(((lin(b.values, torch.zeros(100, dtype=torch.int64)) - f) ** 2).mean().detach())
    assert loss < 1e-8
    assert float(lin.bias.abs().max()) == 0.0


def test_miniff_toy_fit_lbfgs_network_layer():
    """The same toy through a bias-free linear layer trained by full-batch LBFGS (miniff's way),
    with the dataset/collate of forcefit.data and the generic trainer."""
    from forcefit.train import TrainConfig, Trainer

    r = torch.linspace(0.1, 10, 100, dtype=torch.float64)
    f = (r**2 - r + 1) * torch.exp(-r)
    g = torch.stack([r**i * torch.exp(-r) for i in range(3)], dim=1)
    ds = FeatureDataset.from_tensors(g, [1] * 100, energy=f)
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1, bias=False).double()

    def loss_fn(model, batch):
        return ((model(batch.values).squeeze(-1) - batch.energy) ** 2).mean()

    cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=5, lbfgs_max_iter=200,
                      lbfgs_tolerance_grad=1e-14, lbfgs_tolerance_change=1e-14)
    Trainer(layer, loss_fn, list(range(100)), config=cfg, collate=ds.collate,
            quiet=True, log=None).fit()
    loss = float(loss_fn(layer, ds.collate(np.arange(100))).detach())
    assert loss < 1e-8
    np.testing.assert_allclose(layer.weight.detach().reshape(-1).numpy(), [1, -1, 1], atol=1e-3)


def test_cached_equals_autograd_with_forcefit_descriptors():
    """The same check through forcefit.descriptors (G2 + G5, two species, ZBL prior), with the
    dataset built by compute_dataset."""
    d = pytest.importorskip("forcefit.descriptors")
    from forcefit.potentials import ZBL

    structs = cu_structures(4, species=("Cu", "Ni"))
    dset = d.DescriptorSet(4.2, [28, 29], g2=d.radial_grid(4.2, 3, "shifted"),
                           g5=d.angular_grid(cutoff=4.2, n_eta=1, zetas=(1, 4)))
    prior = ZBL(inner=1.8, outer=2.6)
    ds = FeatureDataset.build(structs, dset, prior=prior, progress=False)
    torch.manual_seed(5)
    for option in (1, 2, 3):
        pot = make_potential(dset, [28, 29], AtomicNetwork(dset.n_features, 2, "num_desc 8 1",
                                                           "softplus", option), ds, prior=prior)
        cached = pot.predict_cached(ds.collate([2, 0, 3]), create_graph=False)
        ref = evaluate(pot, build_graph([structs[k] for k in (2, 0, 3)], pot.cutoff))
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(cached[key], ref[key].detach(), rtol=1e-9, atol=1e-10,
                                       msg=f"option {option}: {key}")


@pytest.mark.parametrize("act", ["softplus", "silu", "tanh", "sigmoid"])
def test_activation_slope_equals_autograd(act):
    """The written-out a'(z) of the explicit chain rule == autograd of a(z) (float64)."""
    from forcefit.models.networks import ACTIVATIONS, activation_and_slope

    z = torch.linspace(-12.0, 12.0, 241, dtype=torch.float64, requires_grad=True)  # (points,)
    value, slope = activation_and_slope(act, z)
    ref = ACTIVATIONS[act]()(z)  # (points,)
    (grad,) = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(value, ref, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(slope, grad, rtol=1e-12, atol=1e-14)
