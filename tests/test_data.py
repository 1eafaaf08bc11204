"""Datasets: groups and splits, collate, label masks, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models import ToyRadial, cu_structures

from forcefit import Structure
from forcefit.data import (
    FeatureDataset,
    GlobalOverrides,
    GroupSpec,
    composition,
    feature_statistics,
    reference_energies,
    resolve_groups,
    split_by_group,
    structure_weights,
)
from forcefit.neighbors import build_graph


def _dummy(groups):
    return [Structure(numbers=[1], positions=[[0, 0, 0]], group=g, name=f"s{k}")
            for k, g in enumerate(groups)]


def test_group_split_fractions_and_seed():
    structs = _dummy(["A"] * 20 + ["B"] * 10 + ["C"] * 7)
    specs = resolve_groups(structs, {"A": GroupSpec(0.7, 0.3), "B": GroupSpec(0.5, 0.2)})
    assert specs["C"] == GroupSpec()  # a group without a spec: all training
    split = split_by_group(structs, specs, seed=3)
    groups = np.array([s.group for s in structs])
    assert (groups[split.train] == "A").sum() == 14 and (groups[split.test] == "A").sum() == 6
    assert (groups[split.train] == "B").sum() == 5 and (groups[split.test] == "B").sum() == 2
    assert (groups[split.train] == "C").sum() == 7 and (groups[split.test] == "C").sum() == 0
    assert not set(split.train) & set(split.test)
    again = split_by_group(structs, specs, seed=3)
    assert np.array_equal(again.train, split.train) and np.array_equal(again.test, split.test)
    other = split_by_group(structs, specs, seed=4)
    assert not np.array_equal(other.test, split.test)


def test_global_overrides_replace_group_values():
    structs = _dummy(["A"] * 10 + ["B"] * 10)
    groups = {"A": GroupSpec(1.0, 0.0, 100, 1, 1e-8), "B": GroupSpec.from_line("0.5 0.5 2 3 4")}
    specs = resolve_groups(structs, groups, GlobalOverrides(energy_weight=1e-2, force_weight=1.0,
                                                            training_fraction=0.7))
    for name in ("A", "B"):
        assert specs[name].training_fraction == 0.7
        assert specs[name].testing_fraction == pytest.approx(0.3)
        assert (specs[name].eweight, specs[name].fweight) == (1e-2, 1.0)
    assert specs["A"].vweight == 1e-8 and specs["B"].vweight == 4.0  # not overridden
    structs[0].weight = 2.0
    w = structure_weights(structs, specs)
    np.testing.assert_allclose(w[0], [2e-2, 2.0, 2e-8])
    np.testing.assert_allclose(w[15], [1e-2, 1.0, 4.0])


def test_group_errors_name_the_group():
    structs = _dummy(["Liquid"])
    with pytest.raises(ValueError, match="Liquid.*exceeds 1"):
        resolve_groups(structs, {"Liquid": GroupSpec(0.8, 0.4)})
    with pytest.raises(ValueError, match="Liquid.*fweight"):
        resolve_groups(structs, {"Liquid": GroupSpec(fweight=-1)})
    with pytest.raises(ValueError, match="5 numbers"):
        GroupSpec.from_line("0.7 0.3 1")


def test_collate_matches_direct_graph_and_descriptors():
    structs = cu_structures(4, species=("Cu", "Ni"))
    structs[1] = Structure(numbers=structs[1].numbers[:5], positions=structs[1].positions[:5],
                           cell=structs[1].cell, pbc=structs[1].pbc, name="small", energy=-1.5,
                           forces=structs[1].forces[:5])
    dset = ToyRadial(cutoff=4.2, species=(28, 29))
    ds = FeatureDataset.build(structs, dset, derivative_dtype=torch.float32)
    assert ds.derivatives.dtype == torch.float32 and ds.values.dtype == torch.float64
    order = [3, 1, 0]
    b = ds.collate(order)
    g = build_graph([structs[k] for k in order], dset.cutoff)
    for name in ("numbers", "batch", "i", "j", "edge_batch", "n_atoms"):
        assert torch.equal(getattr(b.graph, name), getattr(g, name)), name
    torch.testing.assert_close(b.graph.shift, g.shift)
    torch.testing.assert_close(b.vectors, g.edge_vectors())
    v, dd = dset.compute(g)
    torch.testing.assert_close(b.values, v)
    torch.testing.assert_close(b.derivatives, dd.float())
    torch.testing.assert_close(b.energy, torch.tensor([structs[k].energy for k in order],
                                                      dtype=torch.float64))
    torch.testing.assert_close(b.forces, torch.as_tensor(np.concatenate(
        [structs[k].forces for k in order])))
    with pytest.raises(IndexError, match="out of range"):
        ds.collate([7])


def test_missing_labels_are_masked():
    structs = cu_structures(3)
    structs[0].forces = None
    structs[1].energy = None
    structs[2].stress = None
    ds = FeatureDataset.build(structs, ToyRadial())
    assert ds.has_forces.tolist() == [False, True, True]
    assert ds.has_energy.tolist() == [True, False, True]
    assert ds.has_stress.tolist() == [True, True, False]
    from forcefit.train.losses import weighted_mse

    b = ds.collate([0, 1, 2])
    pred = {"energy": b.energy.clone(), "forces": b.forces.clone(), "stress": b.stress.clone()}
    pred["energy"][1] += 100.0  # unlabelled: must not count
    pred["forces"][: len(structs[0])] += 100.0
    pred["stress"][2] += 100.0
    parts = weighted_mse(pred, b)
    assert float(parts.total) == 0.0
    pred["energy"][0] += 0.32  # labelled: counts, per atom, weighted
    parts = weighted_mse(pred, b)
    assert float(parts.energy) == pytest.approx((0.32 / len(structs[0])) ** 2 / 2)


def test_loss_weights_and_energy_switch():
    from forcefit.train.losses import weighted_mse

    structs = cu_structures(2)
    ds = FeatureDataset.build(structs, ToyRadial())
    ds.set_weights([[2.0, 3.0, 5.0], [0.0, 0.0, 0.0]])
    b = ds.collate([0, 1])
    pred = {"energy": b.energy + torch.tensor([1.6, 9.0]), "forces": b.forces + 0.1,
            "stress": b.stress + 0.01}
    n = len(structs[0])
    total = weighted_mse(pred, b, per_atom_energy=False)
    assert float(total.energy) == pytest.approx(2.0 * 1.6**2 / 2)
    per_atom = weighted_mse(pred, b, per_atom_energy=True)
    assert float(per_atom.energy) == pytest.approx(2.0 * (1.6 / n) ** 2 / 2)
    assert float(per_atom.forces) == pytest.approx(3.0 * 0.01 * n * 3 / (3 * 2 * n))
    assert float(per_atom.stress) == pytest.approx(5.0 * 1e-4 * 9 / (9 * 2))


def test_reference_energies_recover_composition_energies():
    structs = cu_structures(8, species=("Cu", "Ni"))
    true = {28: -4.2, 29: -3.1}
    for k, s in enumerate(structs):  # compositions that vary from structure to structure
        s.numbers = np.where(np.arange(len(s)) < k + 1, 28, 29)
        s.energy = sum(true[int(z)] for z in s.numbers)
    ds = FeatureDataset.build(structs, ToyRadial(species=(28, 29)))
    counts = composition(ds, [28, 29])
    assert counts.sum(1).tolist() == [len(s) for s in structs]
    ref = reference_energies(ds, np.arange(8), [28, 29])
    np.testing.assert_allclose(ref.numpy(), [-4.2, -3.1], atol=1e-10)


def test_feature_statistics_use_training_atoms_only():
    structs = cu_structures(4)
    ds = FeatureDataset.build(structs, ToyRadial())
    mean, std = feature_statistics(ds, np.array([0, 2]))
    rows = torch.cat([ds.values[ds.atom_slice(0)], ds.values[ds.atom_slice(2)]])
    torch.testing.assert_close(mean, rows.mean(0))
    torch.testing.assert_close(std, rows.std(0, unbiased=False))


def test_from_tensors_validates_shapes():
    with pytest.raises(ValueError, match="n_atoms sums to 3"):
        FeatureDataset.from_tensors(torch.zeros(4, 2), [1, 2])
    with pytest.raises(ValueError, match="energy: expected shape"):
        FeatureDataset.from_tensors(torch.zeros(3, 2), [1, 2], energy=torch.zeros(3))
    ds = FeatureDataset.from_tensors(torch.arange(6.0).reshape(3, 2), [1, 2],
                                     energy=torch.tensor([1.0, 2.0]))
    b = ds.collate([1])
    assert b.values.tolist() == [[2.0, 3.0], [4.0, 5.0]] and b.energy.tolist() == [2.0]


def test_bad_descriptor_output_is_reported():
    class Broken(ToyRadial):
        def compute(self, graph, derivatives=True):
            v, d = super().compute(graph, derivatives)
            return v, d[:-1]

    with pytest.raises(ValueError, match="derivatives have shape"):
        FeatureDataset.build(cu_structures(1), Broken())


def test_validation_is_carved_from_training_per_group():
    """validation_fraction moves round(n_train,g v) training structures of each group to
    validation; the test set and train + validation stay what they were without it."""
    from forcefit.data import Split

    structs = _dummy(["A"] * 20 + ["B"] * 10 + ["C"] * 7 + ["D"] * 1)
    specs = resolve_groups(structs, {"A": GroupSpec(0.7, 0.3), "B": GroupSpec(0.5, 0.2)})
    plain = split_by_group(structs, specs, seed=3)
    assert len(plain.validation) == 0
    split = split_by_group(structs, specs, seed=3, validation_fraction=0.2)
    groups = np.array([s.group for s in structs])
    assert np.array_equal(split.test, plain.test)
    assert np.array_equal(np.union1d(split.train, split.validation), plain.train)
    assert not set(split.validation) & set(split.train)
    assert not set(split.validation) & set(split.test)
    # A: 14 train -> 3 val, B: 5 -> 1, C: 7 -> 1, D: a single structure stays in training
    counts = {g: int((groups[split.validation] == g).sum()) for g in "ABCD"}
    assert counts == {"A": 3, "B": 1, "C": 1, "D": 0}
    again = split_by_group(structs, specs, seed=3, validation_fraction=0.2)
    assert np.array_equal(again.validation, split.validation)
    other = split_by_group(structs, specs, seed=4, validation_fraction=0.2)
    assert not np.array_equal(other.validation, split.validation)
    back = Split.from_dict(split.to_dict())
    assert np.array_equal(back.validation, split.validation)
    assert len(Split.from_dict({"train": [0], "test": []}).validation) == 0  # older files
    # tiny groups: still one validation structure when v > 0 and some group can spare one
    small = _dummy(["A"] * 3 + ["B"] * 2)
    s2 = split_by_group(small, resolve_groups(small, {}), seed=0, validation_fraction=0.1)
    assert len(s2.validation) == 1 and len(s2.train) == 4
    with pytest.raises(ValueError, match="validation_fraction"):
        split_by_group(structs, specs, seed=3, validation_fraction=1.0)


def test_feature_std_floor_guards_near_constant_features():
    """A feature nearly constant on the training atoms is divided by floor |mean|, not by its
    tiny std, so a 1 % change on new data stays an O(1) input; ordinary features keep their
    std; an all-zero feature gets 1."""
    g = torch.Generator().manual_seed(0)
    n = 40
    spread = torch.randn(n, generator=g, dtype=torch.float64)  # (atoms,)
    values = torch.stack([2.0 + 0.5 * spread,  # ordinary: std 0.5 |mean| 2
                          5.0 + 1e-7 * spread,  # near constant: std ~1e-7 << 1e-2 * 5
                          torch.zeros(n, dtype=torch.float64)], dim=1)  # (atoms, 3)
    ds = FeatureDataset.from_tensors(values, [4] * 10)
    train = np.arange(10)
    mean, std = feature_statistics(ds, train)
    plain_mean, plain_std = feature_statistics(ds, train, std_floor=0.0)
    torch.testing.assert_close(mean, plain_mean)
    torch.testing.assert_close(std[0], values[:, 0].std(unbiased=False))
    assert std[1] == pytest.approx(1e-2 * mean[1].item(), rel=1e-12)
    assert std[2] == 1.0 and plain_std[2] == 1.0
    new = torch.tensor([2.0, 5.05, 0.0], dtype=torch.float64)  # 1 % off on the constant one
    guarded = (new - mean) / std
    unguarded = (new - plain_mean) / plain_std
    assert guarded.abs().max() <= 1.0 + 1e-6
    assert unguarded[1].abs() > 1e4  # what the floor prevents
    with pytest.raises(ValueError, match="std_floor"):
        feature_statistics(ds, train, std_floor=-1.0)


def test_fitted_model_stores_the_floored_std(tmp_path):
    """fit_potential puts the floored standardisation into the model (ModelSettings
    .feature_std_floor), and the floor 0 reproduces the plain std."""
    from forcefit.fit import FitSettings, ModelSettings, TrainingSettings, fit_potential

    structs = cu_structures(6)

    def fit(floor):
        s = FitSettings(descriptors=ToyRadial(cutoff=4.2),
                        model=ModelSettings(layer_sizes="num_desc 4 1", multi_element_option=1,
                                            feature_std_floor=floor),
                        training=TrainingSettings(num_epochs=0 + 1, batch_size=3),
                        output_dir=str(tmp_path / str(floor)), quiet=True)
        return fit_potential(structs, s)

    r0, r1 = fit(0.0), fit(10.0)  # a floor of 10 |mean| dominates every column
    mean, std = feature_statistics(r0.dataset, r0.split.train, std_floor=0.0)
    torch.testing.assert_close(r0.model.feature_std, std)
    torch.testing.assert_close(r1.model.feature_std,
                               torch.where(mean.abs() > 0, 10.0 * mean.abs(), std))


def test_validation_groups_are_held_out_whole():
    """A group named in validation_groups goes to validation (its training share), never to
    training; its testing share stays test; other groups are not carved by default."""
    structs = _dummy(["A"] * 10 + ["V"] * 6)
    specs = resolve_groups(structs, {"V": GroupSpec(0.5, 0.5)})
    split = split_by_group(structs, specs, seed=1, validation_groups=["V"])
    groups = np.array([s.group for s in structs])
    assert (groups[split.validation] == "V").all() and len(split.validation) == 3
    assert (groups[split.train] == "A").all() and len(split.train) == 10
    assert (groups[split.test] == "V").all() and len(split.test) == 3
    with pytest.raises(ValueError, match=r"validation_groups.*'W'"):
        split_by_group(structs, specs, seed=1, validation_groups=["W"])


def test_collate_many_equals_collate_bit_for_bit():
    """One gather per epoch (collate_many) gives exactly the batches of per-step collate;
    dtype casts only the labels, priors, weights and vectors."""
    import dataclasses

    structs = cu_structures(7)
    ds = FeatureDataset.build(structs, ToyRadial(), prior=None)
    groups = [[3, 0], [6], [2, 5, 1], [4, 4]]  # uneven sizes, a repeated structure
    many = ds.collate_many(groups)
    assert len(many) == len(groups)
    for g, b in zip(groups, many):
        ref = ds.collate(g)
        for f in dataclasses.fields(ref):
            x, y = getattr(ref, f.name), getattr(b, f.name)
            if f.name == "graph":
                for h in dataclasses.fields(x):
                    u, v = getattr(x, h.name), getattr(y, h.name)
                    assert (u == v if h.name == "cutoff" else torch.equal(u, v)), h.name
            elif x is None:
                assert y is None
            else:
                assert torch.equal(x, y), f.name
    cast = ds.collate_many(groups, dtype=torch.float32)[2]
    assert cast.forces.dtype == cast.energy.dtype == cast.weights.dtype == torch.float32
    assert cast.values.dtype == ds.values.dtype  # cached descriptors untouched
    torch.testing.assert_close(cast.forces, many[2].forces.float())
    with pytest.raises(IndexError, match="out of range"):
        ds.collate_many([[0], [7]])
