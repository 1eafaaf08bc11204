"""Tests of the generic trainer, its checkpoints and restart, and data-parallel training.

Units: the toy problems are dimensionless; times in seconds.
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

from forcefit.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingError,
    default_collate,
    load_checkpoint,
    read_extra_state,
)
from forcefit.train import checkpoint as ckpt_module
from forcefit.train import distributed as dd
from forcefit.train.checkpoint import FORMAT, save_checkpoint

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- helpers
def mse(model, batch):
    """Mean squared error of a model on a batch (x (B, F), y (B,))."""
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean()


def regression_items(n=24, n_features=4, seed=1):
    """Noisy linear data as a list of (x (F,), y ()) float64 items."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g, dtype=torch.float64)  # (n, F)
    w = torch.arange(1.0, n_features + 1, dtype=torch.float64)  # (F,)
    y = x @ w + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)  # (n,)
    return list(zip(x, y))


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 1)).double()


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_bitwise(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y), f"parameters differ: max |diff| {(x - y).abs().max().item()}"


class StopAfter:
    """Callback that interrupts the run (like Ctrl-C) after a given epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def __call__(self, epoch, history):
        if epoch == self.epoch:
            raise KeyboardInterrupt


# ----------------------------------------------------------------------------- miniff toy fit
def test_miniff_toy_fit_lbfgs():
    """miniff's example: f(r) = (r^2 - r + 1) e^-r from g_i = r^i e^-r, full-batch LBFGS."""
    r = torch.linspace(0.1, 10.0, 100, dtype=torch.float64)  # (points,)
    g = torch.stack([r**i * torch.exp(-r) for i in range(3)], dim=1)  # (points, 3)
    f = (r**2 - r + 1) * torch.exp(-r)  # (points,)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False).double()
    cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=20)
    hist = Trainer(model, mse, list(zip(g, f)), config=cfg, quiet=True).fit()
    final = mse(model, (g, f)).item()
    assert final < 1e-8
    torch.testing.assert_close(model.weight.detach().reshape(-1),
                               torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64),
                               atol=1e-3, rtol=0)
    assert hist.train_loss[0] > 1e-3 > hist.train_loss[-1]  # the loss did go down


def test_lbfgs_chunked_equals_full_batch():
    items = regression_items(30)
    out = []
    for chunk in (None, 7):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1).double()
        cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=3,
                          lbfgs_chunk_size=chunk)
        Trainer(model, mse, items, config=cfg, quiet=True).fit()
        out.append(params_of(model))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_lbfgs_collates_once_per_epoch_with_the_same_result():
    items = regression_items(30)
    calls = []

    def collate_many(lists):
        calls.append(len(lists))
        return [default_collate(lst) for lst in lists]

    out = []
    for many in (None, collate_many):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1).double()
        cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=3,
                          lbfgs_chunk_size=7)
        hist = Trainer(model, mse, items, config=cfg, quiet=True, collate_many=many).fit()
        out.append(params_of(model))
    # one call per epoch for all 5 chunks, not one per line-search evaluation
    assert len(hist.epoch) >= 2 and calls == [5] * len(hist.epoch)
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- determinism
def _adam_run(seed, tmp=None, epochs=6, **kw):
    model = mlp()
    cfg = TrainConfig(learning_rate=1e-2, num_epochs=epochs, batch_size=5, seed=seed,
                      schedule="exponential", schedule_params={"gamma": 0.8}, **kw)
    hist = Trainer(model, mse, regression_items(), regression_items(8, seed=2), config=cfg,
                   quiet=True).fit()
    return params_of(model), hist


def test_same_seed_same_result_bit_for_bit():
    a, ha = _adam_run(3)
    b, hb = _adam_run(3)
    assert_bitwise(a, b)
    assert ha.train_loss == hb.train_loss and ha.val_loss == hb.val_loss
    c, _ = _adam_run(4)  # another seed shuffles differently
    assert any(not torch.equal(x, y) for x, y in zip(a, c))


def test_shuffle_order_is_deterministic_and_covers_all_items():
    seen = []

    def spy(model, batch):
        seen.append(batch[1].clone())
        return mse(model, batch)

    items = regression_items(11)
    cfg = TrainConfig(num_epochs=2, batch_size=4, seed=5)
    Trainer(mlp(), spy, items, config=cfg, quiet=True).fit()
    epoch1, epoch2 = torch.cat(seen[:3]), torch.cat(seen[3:])  # (items,) each
    targets = torch.stack([y for _, y in items])
    assert len(seen) == 6  # ceil(11 / 4) batches per epoch, last one short
    for ep in (epoch1, epoch2):
        assert torch.equal(ep.sort().values, targets.sort().values)
    assert not torch.equal(epoch1, epoch2)  # reshuffled
    g = torch.Generator().manual_seed(5)
    assert torch.equal(epoch1, targets[torch.randperm(11, generator=g)])


# ----------------------------------------------------------------------------- restart
@pytest.mark.parametrize("mode", ["interrupt", "more_epochs"])
def test_resume_adam_exponential_bit_for_bit(tmp_path, mode):
    ref, ref_hist = _adam_run(7, epochs=7)
    ckpt = tmp_path / "run.pt"
    items, val = regression_items(), regression_items(8, seed=2)

    def trainer(epochs, callbacks=()):
        cfg = TrainConfig(learning_rate=1e-2, num_epochs=epochs, batch_size=5, seed=7,
                          schedule="exponential", schedule_params={"gamma": 0.8},
                          checkpoint_path=str(ckpt))
        return Trainer(mlp(), mse, items, val, config=cfg, callbacks=callbacks, quiet=True)

    if mode == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            trainer(7, [StopAfter(3)]).fit()
    else:
        trainer(3).fit()
    assert load_checkpoint(ckpt)["epoch"] == 3
    torch.manual_seed(123)  # the global RNG is restored from the checkpoint too
    resumed = trainer(7)
    hist = resumed.fit(resume_from=str(ckpt))
    assert_bitwise(params_of(resumed.model), ref)
    assert hist.epoch == list(range(1, 8))
    assert hist.train_loss == ref_hist.train_loss and hist.lr == ref_hist.lr


def test_resume_lbfgs_bit_for_bit(tmp_path):
    items = regression_items(40)

    def run(epochs, ckpt=None, resume=None, callbacks=()):
        torch.manual_seed(0)
        model = mlp()
        cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=epochs,
                          lbfgs_max_iter=5, checkpoint_path=ckpt)
        t = Trainer(model, mse, items, config=cfg, callbacks=callbacks, quiet=True)
        t.fit(resume_from=resume)
        return params_of(model)

    ref = run(6)
    ckpt = str(tmp_path / "lbfgs.pt")
    with pytest.raises(KeyboardInterrupt):
        run(6, ckpt, callbacks=[StopAfter(2)])
    state = load_checkpoint(ckpt)
    assert state["optimizer"]["state"][0]["old_dirs"]  # the LBFGS memory is in the checkpoint
    assert_bitwise(run(6, ckpt, resume=ckpt), ref)


def test_resume_plateau_early_stopping_bit_for_bit(tmp_path):
    """Plateau schedule, validation and early-stopping counters survive a restart."""
    items, val = regression_items(24), regression_items(6, seed=9)

    def run(ckpt=None, resume=None, callbacks=()):
        cfg = TrainConfig(learning_rate=0.05, num_epochs=40, batch_size=8, seed=2,
                          schedule="plateau", schedule_params={"patience": 1, "factor": 0.5},
                          early_stopping_patience=4, checkpoint_path=ckpt)
        t = Trainer(mlp(), mse, items, val, config=cfg, callbacks=callbacks, quiet=True)
        return t, t.fit(resume_from=resume)

    ref_t, ref_h = run()
    assert ref_h.stop_reason == "early_stopping"  # the scenario must exercise it
    assert len(set(ref_h.lr)) > 1  # ... and the plateau reductions
    stop_at = len(ref_h.epoch) - 2
    ckpt = str(tmp_path / "p.pt")
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, callbacks=[StopAfter(stop_at)])
    t, h = run(ckpt, resume=ckpt)
    assert_bitwise(params_of(t.model), params_of(ref_t.model))
    a, b = h.to_dict(), ref_h.to_dict()
    assert len(a.pop("time")) == len(b.pop("time"))  # wall times differ, all else is equal
    assert a == b


def test_checkpoint_is_weights_only_atomic_and_complete(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.pt"
    split = {"train": torch.arange(10), "test": [3, 4], "name": "cu"}
    cfg = TrainConfig(num_epochs=2, batch_size=4, checkpoint_path=str(ckpt))
    t = Trainer(mlp(), mse, regression_items(12), regression_items(4, seed=3), config=cfg,
                extra_state=split, quiet=True)
    t.fit()
    state = torch.load(ckpt, weights_only=True)  # no pickled code in it
    assert state["format"] == FORMAT and state["epoch"] == 2
    for key in ("model", "optimizer", "schedule", "shuffle_rng", "best_state", "history"):
        assert state[key] is not None, key
    assert state["shuffle_rng"].dtype == torch.uint8
    assert torch.equal(read_extra_state(ckpt)["train"], torch.arange(10))
    assert state["history"]["epoch"] == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]  # no temporary file left behind
    # a failing write leaves the previous checkpoint intact and no temporary file
    with pytest.raises(CheckpointError, match="extra_state"):
        save_checkpoint(ckpt, {"extra_state": {"bad": object()}})
    assert load_checkpoint(ckpt)["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]

    def crash(obj, fh):  # a write that dies half-way (disk full, killed process)
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        t.save_checkpoint(str(ckpt))
    monkeypatch.undo()
    assert load_checkpoint(ckpt)["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_resume_refuses_a_different_split_or_dataset(tmp_path):
    ckpt = str(tmp_path / "c.pt")
    items = regression_items(12)
    cfg = TrainConfig(num_epochs=3, batch_size=4, checkpoint_path=ckpt)
    Trainer(mlp(), mse, items, config=cfg, extra_state={"test": [0, 1]}, quiet=True).fit()
    cfg5 = TrainConfig(num_epochs=5, batch_size=4, checkpoint_path=ckpt)
    other = Trainer(mlp(), mse, items, config=cfg5, extra_state={"test": [0, 2]}, quiet=True)
    with pytest.raises(CheckpointError, match="extra_state differs"):
        other.fit(resume_from=ckpt)
    with pytest.raises(CheckpointError, match="n_train"):
        Trainer(mlp(), mse, items[:10], config=cfg5, quiet=True).fit(resume_from=ckpt)
    with pytest.raises(CheckpointError, match="optimizer"):
        Trainer(mlp(), mse, items, config=TrainConfig(optimizer="lbfgs", num_epochs=5),
                quiet=True).fit(resume_from=ckpt)
    wrong_model = torch.nn.Linear(4, 1).double()
    with pytest.raises(CheckpointError, match="does not match"):
        Trainer(wrong_model, mse, items, config=cfg5, quiet=True).fit(resume_from=ckpt)
    with pytest.raises(CheckpointError, match="no such file"):
        Trainer(mlp(), mse, items, config=cfg5, quiet=True).fit(resume_from=ckpt + ".x")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    # without its own extra_state, a trainer adopts the checkpoint's
    t = Trainer(mlp(), mse, items, config=cfg5, quiet=True)
    t.fit(resume_from=ckpt)
    assert t.extra_state == {"test": [0, 1]} and t.history.epoch == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- errors
def test_nan_loss_names_epoch_and_batch():
    items = regression_items(12)
    x, _ = items[9]
    items[9] = (x, torch.tensor(float("nan"), dtype=torch.float64))
    cfg = TrainConfig(num_epochs=3, batch_size=4, shuffle=False)
    with pytest.raises(TrainingError, match=r"epoch 1, batch 3: the loss is nan.*9"):
        Trainer(mlp(), mse, items, config=cfg, quiet=True).fit()
    val = regression_items(4)
    val[2] = (val[2][0], torch.tensor(float("inf"), dtype=torch.float64))
    with pytest.raises(TrainingError, match=r"epoch 1: the validation loss is inf.*batch 2"):
        Trainer(mlp(), mse, regression_items(8), val,
                config=TrainConfig(num_epochs=2, batch_size=2), quiet=True).fit()
    with pytest.raises(TrainingError, match="epoch 1, full batch"):
        Trainer(mlp(), mse, items, config=TrainConfig(optimizer="lbfgs"), quiet=True).fit()
    with pytest.raises(TrainingError, match="scalar tensor"):
        Trainer(mlp(), lambda m, b: m(b[0]), regression_items(4), quiet=True).fit()


@pytest.mark.parametrize("kw, field", [
    ({"optimizer": "sgd"}, "optimizer"), ({"schedule": "step"}, "schedule"),
    ({"batch_size": 0}, "batch_size"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"schedule": "exponential", "schedule_params": {"gama": 0.9}}, "schedule_params"),
    ({"schedule": "exponential", "schedule_params": {"gamma": 1.5}}, "gamma"),
    ({"optimizer": "lbfgs", "clip_grad_norm": 1.0}, "clip_grad_norm"),
    ({"early_stopping_patience": 0}, "early_stopping_patience"),
])
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_unstorable_extra_state_and_empty_data_are_refused():
    with pytest.raises(CheckpointError, match=r"extra_state\['split'\]"):
        Trainer(mlp(), mse, regression_items(4), extra_state={"split": {1, 2}}, quiet=True)
    with pytest.raises(ValueError, match="0 training items"):
        Trainer(mlp(), mse, [], quiet=True)


# ----------------------------------------------------------------------------- behaviour
class Scalar(torch.nn.Module):
    """One parameter w; items carry the target t, loss (w - t)^2."""

    def __init__(self, w0=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))

    def forward(self, t):
        return ((self.w - t) ** 2).mean()


def test_early_stopping_restores_the_best_model():
    seen = {}

    def record(epoch, history):
        seen[epoch] = model.w.item()

    model = Scalar()
    train = [torch.tensor(1.0, dtype=torch.float64)] * 4  # w walks from 0 towards 1
    val = [torch.tensor(0.3, dtype=torch.float64)]  # best somewhere near w = 0.3
    cfg = TrainConfig(learning_rate=0.05, num_epochs=200, batch_size=4,
                      early_stopping_patience=3)
    hist = Trainer(model, lambda m, b: m(b), train, val, config=cfg, callbacks=[record],
                   quiet=True).fit()
    best = min(range(len(hist.val_loss)), key=hist.val_loss.__getitem__) + 1
    assert hist.stop_reason == "early_stopping"
    assert hist.best_epoch == best and len(hist.epoch) == best + 3
    assert model.w.item() == seen[best] != seen[len(hist.epoch)]
    assert abs(model.w.item() - 0.3) < 0.05


def test_gradient_clipping_bounds_the_step_gradient():
    for clip, check in ((0.1, lambda n: abs(n - 0.1) < 1e-8), (None, lambda n: n > 10)):
        model = Scalar(100.0)
        cfg = TrainConfig(num_epochs=1, batch_size=2, clip_grad_norm=clip)
        Trainer(model, lambda m, b: m(b), [torch.zeros((), dtype=torch.float64)] * 2,
                config=cfg, quiet=True).fit()
        assert check(model.w.grad.norm().item())  # the gradient the last step used


def _lrs(schedule, params, epochs=6, loss=None):
    model = Scalar()
    cfg = TrainConfig(learning_rate=0.1, num_epochs=epochs, batch_size=1, schedule=schedule,
                      schedule_params=params)
    fn = (lambda m, b: m(b)) if loss is None else loss
    return Trainer(model, fn, [torch.zeros((), dtype=torch.float64)], config=cfg,
                   quiet=True).fit().lr


def test_schedules_follow_their_formulas():
    assert _lrs("none", {}) == [0.1] * 6
    exp = _lrs("exponential", {"gamma": 0.5})
    assert exp == pytest.approx([0.1 * 0.5**e for e in range(6)], rel=1e-14)
    frac = _lrs("exponential", {"final_fraction": 0.05}, epochs=10)
    assert frac[-1] * 0.05 ** 0.1 == pytest.approx(0.1 * 0.05, rel=1e-12)
    cos = _lrs("cosine", {"min_lr": 0.01}, epochs=4)
    assert cos == pytest.approx([0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * e / 4))
                                 for e in range(4)], rel=1e-12)
    # per step: before step k of epoch e the rate is lr_0 gamma^(e + k / n_steps)
    used = []
    model = Scalar()
    opt_lr = lambda m, b: (used.append(trainer.optimizer.param_groups[0]["lr"]), m(b))[1]
    cfg = TrainConfig(learning_rate=0.1, num_epochs=3, batch_size=1, schedule="exponential",
                      schedule_params={"gamma": 0.5, "per_step": True})
    trainer = Trainer(model, opt_lr, [torch.zeros((), dtype=torch.float64)] * 4, config=cfg,
                      quiet=True)
    trainer.fit()
    assert used == pytest.approx([0.1 * 0.5 ** (k / 4) for k in range(12)], rel=1e-14)
    # a constant loss never improves: reduce after `patience` + 1 bad epochs, floor at min_lr
    flat = _lrs("plateau", {"patience": 1, "factor": 0.5, "min_lr": 0.02}, epochs=9,
                loss=lambda m, b: m.w * 0 + 1.0)
    assert flat == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])


def test_max_time_and_callback_stop_cleanly():
    def slow(model, batch):
        time.sleep(0.05)
        return mse(model, batch)

    cfg = TrainConfig(num_epochs=1000, batch_size=8, max_time=0.2)
    t0 = time.perf_counter()
    hist = Trainer(mlp(), slow, regression_items(8), config=cfg, quiet=True).fit()
    assert hist.stop_reason == "max_time" and 1 <= len(hist.epoch) < 20
    assert hist.elapsed >= 0.05 * len(hist.epoch)  # each epoch slept 0.05 s
    assert time.perf_counter() - t0 < 5
    lines = []
    hist = Trainer(mlp(), mse, regression_items(8), config=TrainConfig(num_epochs=50),
                   callbacks=[lambda e, h: e == 4], log=lines.append).fit()
    assert hist.stop_reason == "callback" and hist.epoch == [1, 2, 3, 4]
    assert any("epoch 4/50" in ln and "train" in ln for ln in lines)
    assert any("callback" in ln for ln in lines)


def test_default_collate_and_validation_autograd():
    batch = default_collate([(torch.zeros(3), 1.0, {"a": torch.ones(2)})] * 5)
    assert batch[0].shape == (5, 3) and batch[1].shape == (5,) and batch[2]["a"].shape == (5, 2)
    with pytest.raises(ValueError, match="collate="):
        default_collate([torch.zeros(2), torch.zeros(3)])

    def force_like(model, batch):  # needs autograd even in validation, as force losses do
        x, y = batch
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return ((g.sum(-1) - y) ** 2).mean()

    hist = Trainer(mlp(), force_like, regression_items(8), regression_items(4, seed=4),
                   config=TrainConfig(num_epochs=2), quiet=True).fit()
    assert all(math.isfinite(v) for v in hist.val_loss)


# ----------------------------------------------------------------------------- distributed
class LinearWithMethod(torch.nn.Linear):
    def predict(self, x):
        return self(x).squeeze(-1)


def _ddp_worker(rank, world, out_dir):
    """Runs on each of 2 gloo ranks; saves what the parent checks."""
    torch.set_num_threads(1)
    out = {}
    for n, bs in ((16, 2), (13, 3)):  # equal shards; uneven shards (rank 1 runs out early)
        items = regression_items(n)
        for mode in ("ddp", "allreduce"):
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 1).double()
            cfg = TrainConfig(learning_rate=0.5, num_epochs=4, batch_size=bs, shuffle=False,
                              distributed_mode=mode)
            hist = Trainer(model, mse, items, items[:5], config=cfg, quiet=True).fit()
            out[f"{mode}_{n}"] = (params_of(model), hist.train_loss, hist.val_loss)
    for mode in ("ddp", "allreduce"):  # ranks start apart: rank 0's parameters are broadcast
        torch.manual_seed(rank)
        model = torch.nn.Linear(4, 1).double()
        Trainer(model, mse, regression_items(8), config=TrainConfig(num_epochs=1, batch_size=2),
                quiet=True).fit()
        out[f"start_apart_{mode}"] = params_of(model)
    # a loss calling a model method goes through DDP too; bypassing the wrapper is refused
    items = regression_items(16)
    cfg = TrainConfig(learning_rate=0.5, num_epochs=4, batch_size=2, shuffle=False)
    torch.manual_seed(0)
    model = LinearWithMethod(4, 1).double()
    Trainer(model, lambda m, b: ((m.predict(b[0]) - b[1]) ** 2).mean(), items, items[:5],
            config=cfg, quiet=True).fit()
    out["method"] = params_of(model)
    bare = torch.nn.Linear(4, 1).double()
    try:
        Trainer(bare, lambda m, b: mse(bare, b), items, config=cfg, quiet=True).fit()
        out["bypass"] = "no error"
    except TrainingError as exc:
        out["bypass"] = str(exc)
    items = regression_items(13)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).double()
    Trainer(model, mse, items, config=TrainConfig(optimizer="lbfgs", learning_rate=1.0,
                                                  num_epochs=2), quiet=True).fit()
    out["lbfgs_13"] = params_of(model)
    # shuffled run, interrupted and resumed from rank 0's checkpoint
    ckpt = os.path.join(out_dir, f"ckpt_rank{rank}.pt" if rank else "ckpt.pt")

    def shuffled(epochs):
        torch.manual_seed(0)
        cfg = TrainConfig(learning_rate=0.1, num_epochs=epochs, batch_size=2, seed=3,
                          schedule="exponential", schedule_params={"gamma": 0.9},
                          checkpoint_path=ckpt)
        return Trainer(mlp(), mse, regression_items(20), config=cfg, quiet=True)

    t = shuffled(5)
    out["shuffled_losses"] = t.fit().train_loss
    out["shuffled"] = params_of(t.model)
    shuffled(2).fit()
    t = shuffled(5)
    t.fit(resume_from=os.path.join(out_dir, "ckpt.pt"))
    out["resumed"] = params_of(t.model)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


def _single(items, bs, epochs=4, val=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).double()
    cfg = TrainConfig(learning_rate=0.5, num_epochs=epochs, batch_size=bs, shuffle=False)
    hist = Trainer(model, mse, items, val, config=cfg, quiet=True).fit()
    return params_of(model), hist


def test_distributed_two_gloo_ranks(tmp_path):
    """2 gloo ranks: identical parameters, loss decreases, DDP = single process with batch 2 bs.

    Shards are items[0::2] and items[1::2]; with ``shuffle=False`` rank r's step t uses
    shard_r[t bs:(t+1) bs], so a single process with batch 2 bs on the order shard_0 batch t +
    shard_1 batch t sees the same items per step. It matches to rounding, not bit for bit: DDP
    averages two batch means (sum then / 2), a single process takes one mean over 2 bs items,
    a different order of floating-point additions.
    """
    if not dd.dist.is_available() or not dd.dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    dd.spawn_local(_ddp_worker, 2, args=(str(tmp_path),))
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0:  # every rank ends with the same parameters and losses
        if key not in ("shuffled_losses", "bypass"):
            assert_bitwise(r0[key][0] if isinstance(r0[key], tuple) else r0[key],
                           r1[key][0] if isinstance(r1[key], tuple) else r1[key])
    assert_bitwise(r0["method"], r0["ddp_16"][0])
    for r in (r0, r1):
        assert "did not run the model through the DDP wrapper" in r["bypass"], r["bypass"]
    assert r0["shuffled_losses"] == r1["shuffled_losses"]
    assert r0["shuffled_losses"][-1] < 0.5 * r0["shuffled_losses"][0]
    for n, bs in ((16, 2), (13, 3)):
        items = regression_items(n)
        shards = [items[0::2], items[1::2]]
        steps = -(-len(shards[0]) // bs)
        order = [it for t in range(steps) for s in shards for it in s[t * bs:(t + 1) * bs]]
        ref, hist = _single(order, 2 * bs, val=items[:5])
        for mode in ("ddp", "allreduce"):
            params, train_loss, val_loss = r0[f"{mode}_{n}"]
            for a, b in zip(params, ref):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
            assert train_loss == pytest.approx(hist.train_loss, rel=1e-12)
            assert val_loss == pytest.approx(hist.val_loss, rel=1e-12)
            assert train_loss[-1] < 0.5 * train_loss[0]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).double()
    Trainer(model, mse, regression_items(13), config=TrainConfig(
        optimizer="lbfgs", learning_rate=1.0, num_epochs=2), quiet=True).fit()
    for a, b in zip(r0["lbfgs_13"], params_of(model)):  # 7 + 6 items: weights n_r / N
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert_bitwise(r0["resumed"], r0["shuffled"])  # restart under DDP is exact too
    assert (tmp_path / "ckpt.pt").exists() and not (tmp_path / "ckpt_rank1.pt").exists()


def test_shard_indices():
    assert list(dd.shard_indices(7, 1, 3)) == [1, 4]
    got = sorted(i for r in range(3) for i in dd.shard_indices(7, r, 3))
    assert got == list(range(7))
    with pytest.raises(ValueError, match="rank 3"):
        dd.shard_indices(7, 3, 3)



def test_report_is_recorded_but_never_selects():
    """A report() loss (the fitting core's test set) lands in History.test_loss and changes
    nothing: early stopping and the restored model follow the validation loss only."""
    target_val, target_report = 0.3, 0.9  # the report would pick a much later epoch
    seen = {}

    def run(report):
        model = Scalar()
        train = [torch.tensor(1.0, dtype=torch.float64)] * 4
        val = [torch.tensor(target_val, dtype=torch.float64)]
        cfg = TrainConfig(learning_rate=0.05, num_epochs=200, batch_size=4,
                          early_stopping_patience=3)
        hist = Trainer(model, lambda m, b: m(b), train, val, config=cfg, quiet=True,
                       callbacks=[lambda e, h: seen.__setitem__(e, model.w.item())],
                       report=report).fit()
        return model, hist

    base_model, base = run(None)
    model, hist = run(lambda m: float((m.w.detach() - target_report) ** 2))
    assert base.test_loss == [None] * len(base.epoch)
    assert len(hist.test_loss) == len(hist.epoch)
    # the reported values are the report target's loss after each epoch's updates
    for e, t in zip(hist.epoch, hist.test_loss):
        assert t == pytest.approx((seen[e] - target_report) ** 2, rel=1e-12)
    best_val = min(range(len(hist.val_loss)), key=hist.val_loss.__getitem__) + 1
    best_report = min(range(len(hist.test_loss)), key=hist.test_loss.__getitem__) + 1
    assert hist.best_epoch == best_val != best_report
    assert model.w.item() == base_model.w.item() == seen[best_val]
    assert hist.val_loss == base.val_loss and hist.epoch == base.epoch


def test_adam_is_fused_or_foreach_and_matches_the_loop():
    """The trainer's Adam uses the fused (or foreach) implementation; a few steps agree with
    torch's per-parameter loop to rounding."""
    items = regression_items()
    model = mlp()
    ref = mlp()
    trainer = Trainer(model, mse, items, config=TrainConfig(num_epochs=3, batch_size=6,
                                                            shuffle=False), quiet=True)
    d = trainer.optimizer.defaults
    assert d.get("fused") or d.get("foreach")
    trainer.fit()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, foreach=False)
    for _ in range(3):
        for k in range(0, len(items), 6):
            opt.zero_grad()
            mse(ref, default_collate(items[k:k + 6])).backward()
            opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
