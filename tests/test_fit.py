"""fit_potential end to end: small Cu fits, output files, determinism, restart."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import ToyRadial, cu_structures

from forcefit.fit import (
    FitSettings,
    ModelSettings,
    TrainingSettings,
    evaluate_potential,
    fit_potential,
    prepare,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CU = DATA / "cu_emt" / "cu_emt.extxyz"


@pytest.fixture(scope="module")
def cu_small():
    if not CU.exists():
        pytest.skip(f"reference data not found at {CU} (needs ../shared/data)")
    from ase.io import read

    from forcefit import Structure

    frames = [a for a in read(CU, index=":") if len(a) == 32][::4][:48]
    return [Structure.from_ase(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                               stress=a.get_stress(), group=a.info["config_type"],
                               name=f"cu_emt_{k}") for k, a in enumerate(frames)]


def cu_descriptors():
    from forcefit.descriptors import DescriptorSet, angular_grid, radial_grid

    rc = 4.5
    return DescriptorSet(rc, [29], g2=radial_grid(rc, 8, "shifted"),
                         g4=angular_grid(cutoff=rc, n_eta=1, zetas=(1, 4)))


def test_small_cu_fit_linear_quadratic(cu_small, tmp_path):
    """Quadratic linear model on 48 Cu EMT frames (80/20): test errors far below the spread."""
    settings = FitSettings(
        descriptors=cu_descriptors(),
        model=ModelSettings(type="linear", quadratic=True, ridge=1e-10),
        training=TrainingSettings(training_fraction=0.8, energy_weight=100.0, force_weight=1.0,
                                  stress_weight=0.0),
        output_dir=str(tmp_path), quiet=True, seed=5)
    r = fit_potential(cu_small, settings)
    f_test = r.metric("*ALL", "Test", "Force")
    e_test = r.metric("*ALL", "Test", "Energy")
    assert f_test.count == 32 * len(r.split.test) and len(r.split.test) >= 9
    f_spread = np.sqrt(np.mean(np.concatenate([s.forces for s in cu_small]) ** 2))
    assert f_test.rmse < 0.04 and f_test.rmse < 0.05 * f_spread
    assert e_test.rmse < 2e-3  # eV/atom
    # the files FitSNAP users expect, with its columns
    lines = Path(r.paths["peratom"]).read_text().splitlines()
    assert lines[0].split() == ["Filename", "Group", "AtomID", "Type", "Fx_Truth", "Fy_Truth",
                                "Fz_Truth", "Fx_Pred", "Fy_Pred", "Fz_Pred", "Testing_Bool"]
    assert len(lines) == 1 + 32 * len(cu_small)
    per = Path(r.paths["perconfig"]).read_text().splitlines()
    assert per[0].split() == ["Filename", "Group", "Natoms", "Energy_Truth", "Energy_Pred",
                              "Testing_Bool"]
    testing = [int(x.split()[-1]) for x in per[1:]]
    assert sum(testing) == len(r.split.test)
    met = Path(r.paths["metrics"]).read_text().splitlines()
    assert met[0].split() == ["Group", "Train/Test", "Property", "Count", "MAE", "RMSE"]
    assert any(x.startswith("*ALL") and "Test" in x and "Force" in x for x in met)
    for group in {s.group for s in cu_small}:  # per-group rows
        assert any(x.startswith(group + " ") for x in met), group
    from ase.io import read

    dump = read(r.paths["configs"], index=":")
    assert len(dump) == len(cu_small) and "forces_pred" in dump[0].arrays
    # metrics agree with the dump
    fp = np.concatenate([a.arrays["forces_pred"] for a, t in zip(dump, testing) if t])
    ft = np.concatenate([a.arrays["forces_true"] for a, t in zip(dump, testing) if t])
    assert np.sqrt(np.mean((fp - ft) ** 2)) == pytest.approx(f_test.rmse, rel=1e-6)


def _nn_settings(tmp, epochs, **kw):
    return FitSettings(
        descriptors=ToyRadial(cutoff=4.2),
        model=ModelSettings(type="network", layer_sizes="num_desc 8 8 1", activation="silu",
                            multi_element_option=1),
        training=TrainingSettings(num_epochs=epochs, batch_size=3, learning_rate=1e-2,
                                  training_fraction=0.75, stress_weight=1.0,
                                  schedule="exponential", schedule_params={"gamma": 0.9}, **kw),
        output_dir=str(tmp), quiet=True, seed=11)


def test_network_fit_reduces_loss_and_writes_history(tmp_path):
    structs = cu_structures(12)
    r = fit_potential(structs, _nn_settings(tmp_path, 6))
    h = r.history
    assert len(h.epoch) == 6 and h.train_loss[-1] < h.train_loss[0]
    lines = Path(r.paths["loss"]).read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("# Epoch Train_Loss Test_Loss")
    assert r.model.feature_mean.dtype == torch.float64


def test_same_seed_same_model_bit_for_bit(tmp_path):
    structs = cu_structures(8)
    a = fit_potential(structs, _nn_settings(tmp_path / "a", 3))
    b = fit_potential(structs, _nn_settings(tmp_path / "b", 3))
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), k
    s2 = _nn_settings(tmp_path / "c", 3)
    s2.seed = 12
    c = fit_potential(structs, s2)
    assert not torch.equal(a.model.atomic.nets[0][0].weight, c.model.atomic.nets[0][0].weight)


def test_resumed_equals_uninterrupted(tmp_path):
    structs = cu_structures(8)
    full = fit_potential(structs, _nn_settings(tmp_path / "full", 4))
    part = _nn_settings(tmp_path / "part", 2)
    prepared = prepare(structs, part)
    fit_potential(structs, part, prepared=prepared)
    assert os.path.exists(tmp_path / "part" / "checkpoint.pt")
    part.training.num_epochs = 4
    resumed = fit_potential(structs, part, resume=True, prepared=prepared)
    assert resumed.history.epoch == [1, 2, 3, 4]
    for (k, x), (_, y) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(x, y), k


def test_resume_refuses_a_different_split(tmp_path):
    structs = cu_structures(8)
    s = _nn_settings(tmp_path, 1)
    fit_potential(structs, s)
    s.training.training_fraction = 0.5
    s.training.num_epochs = 2
    from forcefit.train import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint"):
        fit_potential(structs, s, resume=True)
    s.training.training_fraction = 0.75  # same sizes, another split: still refused
    s.seed = 99
    with pytest.raises(CheckpointError, match="checkpoint"):
        fit_potential(structs, s, resume=True)


def test_evaluate_potential_on_new_data(tmp_path):
    structs = cu_structures(10)
    r = fit_potential(structs[:8], _nn_settings(tmp_path / "fit", 2))
    ev = evaluate_potential(r.model, structs[8:], str(tmp_path / "eval"))
    per = Path(ev.paths["perconfig"]).read_text().splitlines()
    assert len(per) == 3 and all(line.split()[-1] == "1" for line in per[1:])
    e_pred = [float(x.split()[4]) for x in per[1:]]
    from forcefit.neighbors import build_graph
    from forcefit.potentials.base import evaluate

    want = evaluate(r.model, build_graph(structs[8:], r.model.cutoff))["energy"]
    np.testing.assert_allclose(e_pred, want.detach().numpy(), rtol=1e-9)
    assert ev.metric("*ALL", "Test", "Force").count == 2 * len(structs[8])


def test_bad_settings_are_named(tmp_path):
    structs = cu_structures(2)
    s = _nn_settings(tmp_path, 1)
    s.model.type = "forest"
    with pytest.raises(ValueError, match="forest"):
        fit_potential(structs, s)
    s = _nn_settings(tmp_path, 1)
    s.descriptors = ToyRadial(species=(28,))
    with pytest.raises(ValueError, match="Cu"):
        fit_potential(structs, s)


def test_save_state_input_restarts_and_evaluates(tmp_path):
    """FitSNAP's save_state_input: num_epochs = 0 only evaluates the loaded model; more epochs
    continue training from it."""
    structs = cu_structures(8)
    first = fit_potential(structs, _nn_settings(tmp_path / "a", 2))
    s = _nn_settings(tmp_path / "b", 0)
    s.training.save_state_input = first.paths["model"]
    again = fit_potential(structs, s)
    for (k, x), (_, y) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(x, y), k
    assert Path(again.paths["perconfig"]).read_text() == Path(first.paths["perconfig"]).read_text()
    s = _nn_settings(tmp_path / "c", 2)
    s.training.save_state_input = first.paths["model"]
    more = fit_potential(structs, s)
    assert more.history.train_loss[0] < first.history.train_loss[0]
    s.descriptors = ToyRadial(cutoff=4.2, species=(28, 29))  # not the saved descriptors
    with pytest.raises(ValueError, match="model.pt: field 'descriptors'"):
        fit_potential(structs, s)


class _RecordingTrainer:
    """Wraps forcefit.train.Trainer and records the item lists it was given."""

    calls: typing.ClassVar[list] = []

    def __new__(cls, model, loss, train_items, val_items=None, **kw):
        from forcefit.train.trainer import Trainer

        cls.calls.append((list(train_items), list(val_items or [])))
        return Trainer(model, loss, train_items, val_items, **kw)


def test_early_stopping_selects_on_validation_never_on_test(tmp_path, monkeypatch):
    """With early stopping the trainer receives training and validation indices only; the
    restored model is the best on validation; the test loss is reported, not used."""
    import forcefit.train

    monkeypatch.setattr(forcefit.train, "Trainer", _RecordingTrainer)
    _RecordingTrainer.calls = []
    structs = cu_structures(16)
    s = _nn_settings(tmp_path, 8, patience=2)
    assert s.training.resolved_validation_fraction() == 0.1
    r = fit_potential(structs, s)
    (train_items, val_items), = _RecordingTrainer.calls
    test = set(r.split.test.tolist())
    assert test and not test & set(train_items) and not test & set(val_items)
    assert val_items == r.split.validation.tolist() and len(val_items) >= 1
    assert sorted(train_items + val_items + sorted(test)) == list(range(16))
    h = r.history
    best = min(range(len(h.val_loss)), key=h.val_loss.__getitem__) + 1
    assert h.best_epoch == best and h.best_loss == h.val_loss[best - 1]
    assert all(np.isfinite(h.test_loss))
    # the restored model's validation loss is the best one: recompute it from the dataset
    from forcefit.fit import _test_loss
    from forcefit.train.losses import PotentialLoss

    val_loss = _test_loss(PotentialLoss(), r.dataset, r.split.validation, 32)(r.model)
    assert val_loss == pytest.approx(h.best_loss, rel=1e-10)
    # split stored in the checkpoint and the saved model; validation counts as Train
    from forcefit.saved import read_metadata
    from forcefit.train import read_extra_state

    meta = read_metadata(r.paths["model"])
    assert meta["split"]["validation"] == val_items
    assert read_extra_state(str(tmp_path / "checkpoint.pt"))["split"]["validation"] == val_items
    per = Path(r.paths["perconfig"]).read_text().splitlines()[1:]
    assert sum(int(x.split()[-1]) for x in per) == len(test)
    cols = Path(r.paths["loss"]).read_text().splitlines()
    assert cols[0].split()[1:] == ["Epoch", "Train_Loss", "Test_Loss", "Learning_Rate",
                                   "Val_Loss"]
    assert float(cols[1].split()[2]) == pytest.approx(h.test_loss[0], rel=1e-9)


def test_validation_without_autograd_gives_the_same_losses(tmp_path, monkeypatch):
    """Fits validate without a parameter graph (``val_autograd=False``): the same validation
    losses and the same model as with autograd on, for every loss term."""
    import dataclasses

    import forcefit.fit as fit_module

    structs = cu_structures(12)
    a = fit_potential(structs, _nn_settings(tmp_path / "a", 3, validation_fraction=0.3))
    config = fit_module.train_config
    monkeypatch.setattr(fit_module, "train_config", lambda *args: dataclasses.replace(
        config(*args), val_autograd=True))
    b = fit_potential(structs, _nn_settings(tmp_path / "b", 3, validation_fraction=0.3))
    assert len(a.split.validation) > 0 and all(v > 0 for v in a.history.val_loss)
    assert a.history.val_loss == pytest.approx(b.history.val_loss, rel=1e-12)
    assert a.history.train_loss == b.history.train_loss


def test_without_selection_no_validation_and_test_reported(tmp_path):
    """No early stopping and no plateau schedule: no validation set, nothing selected (the
    last epoch's model is kept), the test loss still reported per epoch."""
    structs = cu_structures(12)
    r = fit_potential(structs, _nn_settings(tmp_path, 3))
    assert len(r.split.validation) == 0 and r.history.val_loss == [None] * 3
    assert all(np.isfinite(r.history.test_loss))
    s = _nn_settings(tmp_path / "b", 3, validation_fraction=0.5)
    with pytest.raises(ValueError, match="validation_fraction"):
        _nn_settings(tmp_path, 1, validation_fraction=1.5).training.resolved_validation_fraction()
    assert s.training.resolved_validation_fraction() == 0.5
