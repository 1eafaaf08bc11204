"""Training groups, per-structure loss weights and the seeded train/test split.

Semantics follow FitSNAP's ``[GROUPS]`` section: every structure belongs to one group (its
``Structure.group``), and each group has

- ``training_fraction``, ``testing_fraction``: the fractions of the group's structures drawn
  (without replacement, after a seeded shuffle of the group) into the training and the test set;
  ``training_fraction + testing_fraction <= 1``, the rest is unused;
- ``eweight``, ``fweight``, ``vweight``: weights of the energy, force and stress (virial) terms
  of the loss for every structure of the group (dimensionless multipliers).

Global settings (FitSNAP's ``[PYTORCH]`` keys ``energy_weight``, ``force_weight``,
``stress_weight``, ``training_fraction``) override the group values for all groups when they are
given (not ``None``); a global ``training_fraction`` f sets every group to f / (1 - f).
A structure's own ``Structure.weight`` multiplies all three of its weights.

The split is a pure function of (structures' groups, group specs, seed): groups are visited in
sorted name order with one ``numpy.random.Generator(PCG64(seed))``; within a group the order is a
permutation from that generator and the first ``round(n * training_fraction)`` go to training, the
next ``round(n * testing_fraction)`` to test. No units are involved (fractions and weights only).

Validation (model selection: early stopping, best-model restore, plateau schedules) is carved
from the *training* structures, never from the test set: with ``validation_fraction`` v > 0,
:func:`split_by_group` draws, per group (sorted names, a second generator
``PCG64([seed, 1])`` so the train/test split does not change with v), ``round(n_train,g * v)``
of the group's training structures (at most n_train,g - 1) into ``Split.validation`` and removes
them from ``Split.train``. When that leaves no validation structure although some group has two
or more training structures, one is taken from the largest such group, so v > 0 always yields a
validation set when it can. Groups named in ``validation_groups`` are held out whole instead:
the structures their spec puts into training go to ``Split.validation`` (their testing
fraction stays test), and the fraction carving skips them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass
class GroupSpec:
    """One FitSNAP group line: ``name = training_size testing_size eweight fweight vweight``."""

    training_fraction: float = 1.0
    testing_fraction: float = 0.0
    eweight: float = 1.0
    fweight: float = 1.0
    vweight: float = 1.0

    def validate(self, name: str) -> None:
        for field in ("training_fraction", "testing_fraction"):
            v = getattr(self, field)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"group '{name}': {field} must be in [0, 1], got {v}")
        if self.training_fraction + self.testing_fraction > 1.0 + 1e-12:
            raise ValueError(
                f"group '{name}': training_fraction + testing_fraction = "
                f"{self.training_fraction + self.testing_fraction} exceeds 1"
            )
        for field in ("eweight", "fweight", "vweight"):
            v = getattr(self, field)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"group '{name}': {field} must be finite and >= 0, got {v}")

    @classmethod
    def from_line(cls, line: str | Sequence[float]) -> GroupSpec:
        """Parse FitSNAP's ``"0.7 0.3 100 1 1e-8"`` (or a list of the five numbers)."""
        parts = line.split() if isinstance(line, str) else list(line)
        if len(parts) != 5:
            raise ValueError(
                f"group line {line!r}: expected 5 numbers "
                "(training_size testing_size eweight fweight vweight)"
            )
        return cls(*(float(p) for p in parts))


@dataclasses.dataclass
class GlobalOverrides:
    """FitSNAP's global keys; ``None`` means "use the group value"."""

    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    training_fraction: float | None = None


def resolve_groups(
    structures: Sequence, groups: Mapping[str, GroupSpec] | None,
    overrides: GlobalOverrides | None = None,
) -> dict[str, GroupSpec]:
    """The effective :class:`GroupSpec` of every group present in ``structures``.

    Groups present in the data but absent from ``groups`` get the default spec (all training,
    unit weights) before the global overrides apply.
    """
    groups = dict(groups or {})
    overrides = overrides or GlobalOverrides()
    names = sorted({s.group for s in structures})
    out = {}
    for name in names:
        spec = dataclasses.replace(groups.get(name, GroupSpec()))
        if overrides.training_fraction is not None:
            f = float(overrides.training_fraction)
            spec.training_fraction, spec.testing_fraction = f, 1.0 - f
        if overrides.energy_weight is not None:
            spec.eweight = float(overrides.energy_weight)
        if overrides.force_weight is not None:
            spec.fweight = float(overrides.force_weight)
        if overrides.stress_weight is not None:
            spec.vweight = float(overrides.stress_weight)
        spec.validate(name)
        out[name] = spec
    return out


def structure_weights(structures: Sequence, specs: Mapping[str, GroupSpec]) -> np.ndarray:
    """(structures, 3) float64 array of (energy, force, stress) weights, times Structure.weight."""
    w = np.array(
        [[specs[s.group].eweight, specs[s.group].fweight, specs[s.group].vweight]
         for s in structures], dtype=np.float64,
    ).reshape(-1, 3)
    own = np.array([s.weight for s in structures], dtype=np.float64)  # (structures,)
    return w * own[:, None]


@dataclasses.dataclass
class Split:
    """Indices into the structure list: ``train`` (fitted on), ``test`` (reported only) and
    ``validation`` (model selection only; carved from the training structures); sorted int64
    arrays, pairwise disjoint."""

    train: np.ndarray
    test: np.ndarray
    validation: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_dict(self) -> dict:
        return {"train": self.train.tolist(), "test": self.test.tolist(),
                "validation": self.validation.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Split:
        return cls(np.asarray(d["train"], dtype=np.int64), np.asarray(d["test"], dtype=np.int64),
                   np.asarray(d.get("validation", []), dtype=np.int64))


def split_by_group(structures: Sequence, specs: Mapping[str, GroupSpec], seed: int,
                   validation_fraction: float = 0.0,
                   validation_groups: Sequence[str] = ()) -> Split:
    """Seeded per-group split (see the module docstring for the exact rule)."""
    unknown = sorted(set(validation_groups) - set(specs))
    if unknown:
        raise ValueError(f"validation_groups: no structures in group(s) {unknown} "
                         f"(groups: {sorted(specs)})")
    if not (0.0 <= float(validation_fraction) < 1.0):
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    groups = np.array([s.group for s in structures], dtype=object)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    train, test = [], []
    for name in sorted(specs):
        members = np.flatnonzero(groups == name)
        if len(members) == 0:
            continue
        perm = members[rng.permutation(len(members))]
        spec = specs[name]
        n_train = round(len(members) * spec.training_fraction)
        n_test = min(round(len(members) * spec.testing_fraction), len(members) - n_train)
        train.append(perm[:n_train])
        test.append(perm[n_train:n_train + n_test])
    missing = sorted(set(groups.tolist()) - set(specs))
    if missing:
        raise ValueError(f"structures belong to groups with no spec: {missing}")

    def cat(parts):
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    split = Split(cat(train), cat(test))
    if validation_groups:
        whole = np.isin(groups[split.train], list(validation_groups))  # (train,)
        split = Split(split.train[~whole], split.test, split.train[whole])
    if validation_fraction > 0:
        split = _carve_validation(split, groups, float(validation_fraction), int(seed))
    return split


def _carve_validation(split: Split, groups: np.ndarray, fraction: float, seed: int) -> Split:
    """Move ``round(n_train,g * fraction)`` training structures of every group to validation."""
    rng = np.random.Generator(np.random.PCG64([seed, 1]))
    val, largest = [split.validation], (0, None)
    for name in sorted(set(groups[split.train].tolist())):
        members = split.train[groups[split.train] == name]  # this group's training indices
        perm = members[rng.permutation(len(members))]
        n_val = min(round(len(members) * fraction), len(members) - 1)
        val.append(perm[:max(n_val, 0)])
        if len(members) > largest[0]:
            largest = (len(members), perm)
    picked = np.concatenate(val)
    if len(picked) == 0 and largest[0] >= 2:
        picked = largest[1][:1]
    picked = np.sort(picked).astype(np.int64)
    return Split(np.setdiff1d(split.train, picked).astype(np.int64), split.test, picked)
