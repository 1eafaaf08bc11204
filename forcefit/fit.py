"""High-level fitting: settings -> dataset -> model -> trainer -> metrics, files, saved model.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE stress sign). Learning rate and weights
are dimensionless; ``max_time`` in seconds.

:class:`FitSettings` groups typed dataclasses whose field names follow FitSNAP's ``[PYTORCH]``
and ``[GROUPS]`` keys (``learning_rate``, ``num_epochs``, ``batch_size``, ``energy_weight``,
``force_weight``, ``stress_weight``, ``training_fraction``, ``multi_element_option``,
``manual_seed``, ``shuffle``, ``save_state_output``, ``save_state_input``) so the command line can
map a config file onto them one to one. One seed (``FitSettings.seed``) gives the split, the
initial weights and the shuffling.

:func:`fit_potential` writes into ``output_dir``: the metrics table, ``loss_vs_epochs.dat``,
``peratom.dat``, ``perconfig.dat``, ``predictions.extxyz``, the saved model
(``save_state_output``) and a training checkpoint (``checkpoint.pt``, used by ``resume=True``).
:func:`evaluate_potential` writes the same comparison files for a saved model on new data
(FitSNAP's "calculate errors on a test set").

Train, validation, test: the test structures (the groups' testing fractions) are never given to
the trainer; their loss is only reported per epoch (``loss_vs_epochs.dat`` column Test_Loss, as
FitSNAP reports it; ``TrainingSettings.report_test_loss``). Model selection (early stopping,
the restored best model, the plateau schedule) monitors a validation set carved from the
training structures per group (``TrainingSettings.validation_fraction``) or given as whole
groups (``TrainingSettings.validation_groups``; default 0.1 when
``patience`` is set, else 0: nothing is selected, the last epoch's model is kept, and a plateau
schedule monitors the training loss; set ``validation_fraction`` to make it monitor held-out
structures). Validation structures are not fitted on; in the metrics tables and the per-atom /
per-config files they count as Train (Testing_Bool 0); their indices are stored in the split
(checkpoint ``extra_state`` and the saved model's metadata ``split.validation``), and their
loss is the Val_Loss column of ``loss_vs_epochs.dat``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .data import (
    FeatureDataset,
    GlobalOverrides,
    GroupSpec,
    Split,
    energy_scale,
    feature_statistics,
    reference_energies,
    resolve_groups,
    split_by_group,
    structure_weights,
    structures_hash,
)
from .models import AtomicNetwork, FittedPotential, LinearAtomic, solve_linear
from .structure import Structure
from .train import metrics as M
from .train.distributed import is_main
from .train.losses import PotentialLoss

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass
class ModelSettings:
    """``type``: "network" or "linear"; network: ``layer_sizes`` (FitSNAP syntax),
    ``activation``, ``multi_element_option`` (1, 2, 3); linear: ``quadratic``, ``ridge``
    (relative to the mean diagonal of the normal matrix). ``reference``: a potential config dict
    (``{"type": "ZBL", "inner": 4.0, "outer": 4.8}``) or an energy-model object fitted under the
    model. ``reference_energies``: "fit" (least squares on composition), "none" or a dict
    {symbol or Z: eV}. ``feature_std_floor``: the standardisation divides by
    max(std, floor |mean|) per feature (:mod:`forcefit.data.normalize`)."""

    type: str = "network"
    layer_sizes: str | list = "num_desc 64 64 1"
    activation: str = "silu"
    multi_element_option: int = 2
    quadratic: bool = False
    ridge: float = 1e-8
    reference: Any = None
    reference_energies: str | dict = "fit"
    feature_std_floor: float = 1e-2


@dataclasses.dataclass
class TrainingSettings:
    """FitSNAP's ``[PYTORCH]`` keys plus optimiser options (:class:`forcefit.train.TrainConfig`).

    ``dtype``: training precision of the network and cached values; ``derivative_dtype``:
    storage of the cached dD (float32 halves the memory). ``per_atom_energy``: energy per
    atom (True) or total energy (False) in the loss. ``validation_fraction``: share of each
    group's training structures held out for model selection (None: 0.1 with ``patience``,
    else 0); ``validation_groups``: groups held out whole for model selection (the structures
    their spec puts in training are validated on instead); ``report_test_loss``: evaluate the
    test loss after every epoch (reported only; costs a forward pass over the test set per
    epoch). ``fused_loss``: compute a network's loss gradients in one explicit pass
    (:mod:`forcefit.models.fused`, same numbers, ~1.4x faster per step on small batches)
    instead of autograd's double backward."""

    learning_rate: float = 5e-3
    num_epochs: int = 100
    batch_size: int = 4
    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    training_fraction: float | None = None
    shuffle: bool = True
    optimizer: str = "adam"
    schedule: str = "none"
    schedule_params: dict = dataclasses.field(default_factory=dict)
    patience: int | None = None
    max_time: float | None = None
    gradient_clip: float | None = None
    per_atom_energy: bool = True
    dtype: str = "float64"
    derivative_dtype: str | None = None
    save_state_output: str = "model.pt"
    save_state_input: str | None = None
    validation_fraction: float | None = None
    validation_groups: list[str] | None = None
    report_test_loss: bool = True
    fused_loss: bool = True

    def resolved_validation_fraction(self) -> float:
        """``validation_fraction``, or its default: 0 when ``validation_groups`` are given,
        else 0.1 when early stopping (``patience``) selects a model, else 0 (a plateau schedule
        then monitors the training loss)."""
        if self.validation_fraction is not None:
            v = float(self.validation_fraction)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"TrainingSettings.validation_fraction={v}: must be in [0, 1)")
            return v
        if self.validation_groups:
            return 0.0
        return 0.1 if self.patience is not None else 0.0


@dataclasses.dataclass
class OutputSettings:
    """FitSNAP's output file names; ``None`` or False switches a file off."""

    metrics: str | None = "metrics.dat"
    loss: str | None = "loss_vs_epochs.dat"
    dump_peratom: bool = True
    dump_perconfig: bool = True
    dump_configs: bool = True
    checkpoint: str | None = "checkpoint.pt"


@dataclasses.dataclass
class FitSettings:
    """Everything :func:`fit_potential` needs. ``descriptors``: a descriptor set object (with
    ``cutoff``, ``n_features``, ``compute``, ``values``, ``to_config``) or its config dict;
    ``groups``: {name: GroupSpec or "train test eweight fweight vweight"}."""

    descriptors: Any
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    groups: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    outputs: OutputSettings = dataclasses.field(default_factory=OutputSettings)
    output_dir: str = "forcefit_output"
    seed: int = 0  # FitSNAP's manual_seed
    quiet: bool = False

    def to_dict(self) -> dict:
        """JSON-able summary stored in the saved model's metadata."""
        d = {
            "model": dataclasses.asdict(self.model), "training": dataclasses.asdict(self.training),
            "groups": {k: dataclasses.asdict(_group(v)) for k, v in self.groups.items()},
            "outputs": dataclasses.asdict(self.outputs), "output_dir": self.output_dir,
            "seed": self.seed,
        }
        ref = self.model.reference
        if ref is not None and not isinstance(ref, dict):
            d["model"]["reference"] = ref.to_config() if hasattr(ref, "to_config") else repr(ref)
        d["descriptors"] = (self.descriptors if isinstance(self.descriptors, dict)
                            else self.descriptors.to_config())
        return d


@dataclasses.dataclass
class FitResult:
    """``model`` (FittedPotential, float64), ``history`` (trainer History or None for linear
    fits), ``metrics`` (list of MetricRow), ``paths`` {kind: path}, ``split``, ``dataset``."""

    model: FittedPotential
    history: Any
    metrics: list
    paths: dict
    split: Split
    dataset: FeatureDataset | None = None

    def metric(self, group: str, subset: str, prop: str):
        return M.find_metric(self.metrics, group, subset, prop)


def _group(v) -> GroupSpec:
    if isinstance(v, GroupSpec):
        return v
    if isinstance(v, Mapping):
        return GroupSpec(**v)
    return GroupSpec.from_line(v)


def _descriptor_set(d):
    if isinstance(d, Mapping):
        from .saved import _descriptors_from_config

        return _descriptors_from_config(dict(d))
    for attr in ("cutoff", "n_features", "compute", "values", "to_config"):
        if not hasattr(d, attr):
            raise TypeError(f"FitSettings.descriptors: object lacks '{attr}'")
    return d


def _prior(ref):
    if ref is None:
        return None
    if isinstance(ref, Mapping):
        from .potentials import from_config

        return from_config(dict(ref))
    return ref


def _species(dset, structures) -> list[int]:
    present = sorted({int(z) for s in structures for z in np.unique(s.numbers)})
    declared = getattr(dset, "species", None)
    if declared:
        declared = [int(z) for z in declared]
        missing = sorted(set(present) - set(declared))
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in missing)
            raise ValueError(f"structures contain species {names} that the descriptor set "
                             f"does not cover (species {declared})")
        return declared
    return present


def _same_descriptors(dset):
    """Factory for :func:`forcefit.saved.load`: reuse ``dset`` when the saved config matches,
    otherwise rebuild the saved descriptors through ``forcefit.descriptors``."""
    def factory(config: dict):
        if config == dset.to_config():
            return dset
        from .saved import _descriptors_from_config

        return _descriptors_from_config(config)
    return factory


def _log(settings: FitSettings) -> Callable[[str], Any] | None:
    return None if settings.quiet else print


def build_model(dset, species: list[int], settings: ModelSettings, prior, seed: int
                ) -> FittedPotential:
    """A fresh FittedPotential; network weights drawn from ``seed`` (global RNG untouched)."""
    n_f, n_s = int(dset.n_features), len(species)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if settings.type == "network":
            atomic = AtomicNetwork(n_f, n_s, settings.layer_sizes, settings.activation,
                                   int(settings.multi_element_option))
        elif settings.type == "linear":
            atomic = LinearAtomic(n_f, n_s, quadratic=settings.quadratic, bias=True)
        else:
            raise ValueError(f"ModelSettings.type={settings.type!r}: use 'network' or 'linear'")
        return FittedPotential(dset, species, atomic, prior)


def _normalise(model: FittedPotential, ds: FeatureDataset, train: np.ndarray,
               settings: ModelSettings) -> None:
    mean, std = feature_statistics(ds, train, settings.feature_std_floor)
    ref_setting = settings.reference_energies
    if isinstance(ref_setting, Mapping):
        from ase.data import atomic_numbers

        table = {(atomic_numbers[k] if isinstance(k, str) else int(k)): float(v)
                 for k, v in ref_setting.items()}
        missing = [z for z in model.species if z not in table]
        if missing:
            raise ValueError(f"reference_energies: no value for species Z={missing}")
        ref = torch.tensor([table[z] for z in model.species], dtype=torch.float64)
    elif ref_setting == "fit":
        ref = reference_energies(ds, train, model.species)
    elif ref_setting == "none":
        ref = torch.zeros(len(model.species), dtype=torch.float64)
    else:
        raise ValueError(f"reference_energies={ref_setting!r}: use 'fit', 'none' or a table")
    with torch.no_grad():
        model.feature_mean.copy_(mean)
        model.feature_std.copy_(std)
        model.ref_energy.copy_(ref)
        model.energy_scale.fill_(energy_scale(ds, train, ref, model.species))


def predict(model: FittedPotential, ds: FeatureDataset, testing: np.ndarray,
            batch_size: int = 32) -> M.Predictions:
    """Predictions of ``model`` on every structure of ``ds`` from the cached descriptors."""
    e_p, f_p, s_p = [], [], []
    order = np.arange(len(ds))
    for start in range(0, len(ds), batch_size):  # batches of whole structures
        b = ds.collate(order[start:start + batch_size])
        out = model.predict_cached(b, forces=ds.derivatives is not None,
                                   stress=ds.derivatives is not None, create_graph=False)
        e_p.append(out["energy"].detach().double())
        if "forces" in out:
            f_p.append(out["forces"].detach().double())
            s_p.append(out["stress"].detach().double())
    n = int(ds.n_atoms.sum())
    nan = float("nan")
    forces_pred = torch.cat(f_p).numpy() if f_p else np.full((n, 3), nan)
    stress_pred = torch.cat(s_p).numpy() if s_p else np.full((len(ds), 3, 3), nan)
    return _predictions(ds, testing, torch.cat(e_p).numpy(), forces_pred, stress_pred)


def _predictions(ds, testing, energy_pred, forces_pred, stress_pred) -> M.Predictions:
    nan = float("nan")
    has_f_atom = ds.has_forces.numpy()[np.repeat(np.arange(len(ds)), ds.n_atoms.numpy())]
    periodic = ds.pbc.numpy().all(1)
    stress_pred = np.where(periodic[:, None, None], stress_pred, nan)
    return M.Predictions(
        names=list(ds.names), groups=list(ds.groups), n_atoms=ds.n_atoms.numpy(),
        testing=np.asarray(testing, bool), numbers=ds.numbers.numpy(),
        energy_true=np.where(ds.has_energy.numpy(), ds.energy.numpy(), nan),
        energy_pred=energy_pred,
        forces_true=np.where(has_f_atom[:, None], ds.forces.numpy(), nan),
        forces_pred=forces_pred,
        stress_true=np.where(ds.has_stress.numpy()[:, None, None], ds.stress.numpy(), nan),
        stress_pred=stress_pred,
    )


def write_outputs(outdir: str, structures, pred: M.Predictions, outputs: OutputSettings,
                  history=None) -> tuple[list, dict]:
    """Metrics table and comparison files; returns (metric rows, {kind: path})."""
    rows = M.metrics_table(pred)
    paths = {}
    if outputs.metrics:
        paths["metrics"] = M.write_metrics(os.path.join(outdir, outputs.metrics), rows)
    if outputs.loss and history is not None:
        paths["loss"] = M.write_loss_vs_epochs(os.path.join(outdir, outputs.loss), history.epoch,
                                               history.train_loss, history.test_loss, history.lr,
                                               val=history.val_loss)
    if outputs.dump_peratom:
        paths["peratom"] = M.write_peratom(os.path.join(outdir, "peratom.dat"), pred)
    if outputs.dump_perconfig:
        paths["perconfig"] = M.write_perconfig(os.path.join(outdir, "perconfig.dat"), pred)
    if outputs.dump_configs:
        paths["configs"] = M.write_predictions_extxyz(
            os.path.join(outdir, "predictions.extxyz"), structures, pred)
    return rows, paths


def train_config(settings: FitSettings, checkpoint: str | None):
    from .train import TrainConfig

    t = settings.training
    return TrainConfig(
        optimizer=t.optimizer, learning_rate=t.learning_rate, num_epochs=t.num_epochs,
        batch_size=t.batch_size, shuffle=t.shuffle, seed=int(settings.seed),
        val_batch_size=max(t.batch_size, 32),  # validation has no optimiser steps: fewer calls
        schedule=t.schedule, schedule_params=dict(t.schedule_params),
        clip_grad_norm=t.gradient_clip, early_stopping_patience=t.patience,
        checkpoint_path=checkpoint, max_time=t.max_time,
        # validation needs no parameter gradients: the cached path gives forces without a
        # graph (a network's explicit chain rule; other models enable autograd themselves)
        val_autograd=False,
    )


def prepare(structures: Sequence[Structure], settings: FitSettings):
    """Groups, split, descriptor set, prior and cached dataset (the expensive part, once)."""
    structures = list(structures)
    if not structures:
        raise ValueError("fit_potential: no structures")
    t = settings.training
    specs = resolve_groups(structures, {k: _group(v) for k, v in settings.groups.items()},
                           GlobalOverrides(t.energy_weight, t.force_weight, t.stress_weight,
                                           t.training_fraction))
    validation = t.resolved_validation_fraction() if settings.model.type == "network" else 0.0
    split = split_by_group(structures, specs, settings.seed, validation_fraction=validation,
                           validation_groups=list(t.validation_groups or ()))
    if len(split.train) == 0:
        raise ValueError("fit_potential: the split left no training structures")
    dset = _descriptor_set(settings.descriptors)
    prior = _prior(settings.model.reference)
    dtype = DTYPES[t.dtype]
    ds = FeatureDataset.build(structures, dset, prior=prior, dtype=dtype,
                              derivative_dtype=DTYPES[t.derivative_dtype or t.dtype],
                              weights=structure_weights(structures, specs),
                              progress=not settings.quiet)
    return structures, specs, split, dset, prior, ds


def fit_potential(structures: Sequence[Structure], settings: FitSettings, *,
                  resume: bool = False, callbacks: Sequence[Callable] = (),
                  prepared=None, metadata: dict | None = None) -> FitResult:
    """Fit a potential to ``structures`` (see the module docstring for what is written).

    ``resume=True`` continues from ``output_dir/checkpoint.pt`` when it exists (the split is
    checked against the checkpoint's, so test structures never leak into training).
    ``prepared``: the tuple returned by :func:`prepare` (reuse a cached dataset).
    ``metadata``: extra JSON-able entries for the saved model (e.g. the CLI's parsed config).
    """
    from .saved import load, save

    structures, specs, split, dset, prior, ds = prepared or prepare(structures, settings)
    t = settings.training
    outdir = settings.output_dir
    os.makedirs(outdir, exist_ok=True)
    species = _species(dset, structures)
    if t.save_state_input:  # FitSNAP's restart / "calculate errors on a test set"
        model = load(t.save_state_input, descriptor_factory=_same_descriptors(dset))
        if model.species != species:
            raise ValueError(f"save_state_input {t.save_state_input}: species {model.species} "
                             f"differ from the data's {species}")
    else:
        model = build_model(dset, species, settings.model, prior, settings.seed)
        _normalise(model, ds, split.train, settings.model)
    history = None
    if isinstance(model.atomic, LinearAtomic):
        solve_linear(model, ds, split.train, per_atom=t.per_atom_energy, ridge=settings.model.ridge)
    elif t.num_epochs > 0:
        history = _train(model, ds, split, settings, resume, callbacks)
    model = model.to(torch.float64).eval()
    testing = np.zeros(len(ds), bool)
    testing[split.test] = True
    pred = predict(model, ds, testing)
    if not is_main():  # under torch.distributed every rank holds the same model; rank 0 writes
        return FitResult(model, history, M.metrics_table(pred), {}, split, ds)
    rows, paths = write_outputs(outdir, structures, pred, settings.outputs, history)
    meta = {"config": settings.to_dict(), "data_sha256": structures_hash(structures),
            "split": split.to_dict(),
            "groups": {k: dataclasses.asdict(v) for k, v in specs.items()},
            "metrics": [dataclasses.asdict(r) for r in rows], **(metadata or {})}
    if t.save_state_output:
        paths["model"] = save(model, os.path.join(outdir, t.save_state_output), meta)
    return FitResult(model, history, rows, paths, split, ds)


def _train(model, ds, split, settings, resume, callbacks):
    from .train import Trainer

    t = settings.training
    ckpt = (os.path.join(settings.output_dir, settings.outputs.checkpoint)
            if settings.outputs.checkpoint else None)
    model.to(DTYPES[t.dtype])
    w = ds.weights[torch.as_tensor(split.train)]  # (S_train, 3)
    loss = PotentialLoss(per_atom_energy=t.per_atom_energy,
                         use_forces=bool((w[:, 1] > 0).any() and ds.derivatives is not None),
                         use_stress=bool((w[:, 2] > 0).any() and ds.derivatives is not None),
                         fused=t.fused_loss)
    report = (_test_loss(loss, ds, split.test, max(t.batch_size, 32))
              if t.report_test_loss and len(split.test) else None)
    # the trainer sees training and validation indices only; the test set enters via report
    config = train_config(settings, ckpt)
    if isinstance(model.atomic, AtomicNetwork) and len(model.atomic.nets) > 1:
        # per-species networks: a species absent from a rank's batch leaves its network
        # without a gradient there, which DDP must be told to expect
        config = dataclasses.replace(config, find_unused_parameters=True)
    trainer = Trainer(model, loss, split.train.tolist(), split.validation.tolist() or None,
                      config=config, collate=ds.collate,
                      extra_state={"split": split.to_dict()}, callbacks=callbacks,
                      log=_log(settings), quiet=settings.quiet, report=report,
                      collate_many=functools.partial(ds.collate_many, dtype=DTYPES[t.dtype]))
    resume_from = ckpt if (resume and ckpt and os.path.exists(ckpt)) else None
    return trainer.fit(resume_from=resume_from)


def _test_loss(loss: PotentialLoss, ds: FeatureDataset, test: np.ndarray, batch_size: int):
    """``report(model) -> float``: the item-weighted mean loss over the test structures (the
    same weighted loss as training), without building a graph for the parameters."""
    from .train.losses import weighted_mse

    idx = np.asarray(test, dtype=np.int64)
    batches = [idx[k:k + batch_size] for k in range(0, len(idx), batch_size)]

    def report(model) -> float:
        total = 0.0
        with torch.no_grad():
            for b in batches:  # batches of whole structures
                batch = ds.collate(b)
                pred = model.predict_cached(batch, forces=loss.use_forces,
                                            stress=loss.use_stress, create_graph=False)
                parts = weighted_mse(pred, batch, per_atom_energy=loss.per_atom_energy)
                total += float(parts.total) * len(b)
        return total / len(idx)
    return report


def evaluate_potential(model: FittedPotential, structures: Sequence[Structure], outdir: str, *,
                       outputs: OutputSettings | None = None, batch_size: int = 16) -> FitResult:
    """Errors of ``model`` on labelled ``structures`` (all counted as Test), computed on the
    fly (the model's own neighbour lists and descriptors); writes the metrics table,
    ``peratom.dat``, ``perconfig.dat`` and ``predictions.extxyz`` into ``outdir``."""
    from .neighbors import build_graph
    from .potentials.base import evaluate

    structures = list(structures)
    outputs = outputs or OutputSettings(loss=None, checkpoint=None)
    model = model.to(torch.float64).eval()
    e, f, s = [], [], []
    for start in range(0, len(structures), batch_size):  # batches of whole structures
        part = structures[start:start + batch_size]
        out = evaluate(model, build_graph(part, model.cutoff), forces=True, stress=True)
        e.append(out["energy"].detach())
        f.append(out["forces"].detach())
        s.append(out["stress"].detach())
    ds = FeatureDataset.from_tensors(torch.zeros(sum(len(x) for x in structures), 0),
                                     [len(x) for x in structures])
    labels = FeatureDataset._labels(structures)
    ds.__dict__.update(labels)
    ds.numbers = torch.as_tensor(np.concatenate([x.numbers for x in structures]))
    ds.pbc = torch.as_tensor(np.array([x.pbc for x in structures], dtype=bool))
    ds.names = [x.name or f"structure_{k}" for k, x in enumerate(structures)]
    ds.groups = [x.group for x in structures]
    pred = _predictions(ds, np.ones(len(structures), bool), torch.cat(e).numpy(),
                        torch.cat(f).numpy(), torch.cat(s).numpy())
    rows, paths = write_outputs(outdir, structures, pred, outputs)
    return FitResult(model, None, rows, paths,
                     Split(np.zeros(0, np.int64), np.arange(len(structures))))
