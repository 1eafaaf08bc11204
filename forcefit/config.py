"""The fit configuration: one TOML file parsed once into typed, validated dataclasses.

Units in the config are forcefit's: lengths (``cutoff``, ZBL ``inner``/``outer``) in Angstrom,
energies (``reference_energies``) in eV, loss weights dimensionless (they multiply mean squared
errors of energy per atom in eV^2, force components in (eV/A)^2 and stress components in
(eV/A^3)^2), ``learning_rate`` in the optimiser's own units.

A config looks like this (every section but ``[data]`` and ``[descriptors]`` is optional)::

    [data]
    paths = ["cu_emt.extxyz"]          # files, folders or globs, relative to this file
    group_key = "config_type"          # groups from an info key (or groups_from = "folder")

    [descriptors]
    cutoff = 5.0                       # Angstrom
    n_radial = 8                       # generated Behler G2 grid ...
    n_angular = 4                      # ... and G4 functions

    [model]
    layer_sizes = "num_desc 32 32 1"   # FitSNAP's syntax (a list works too)
    activation = "silu"

    [training]                         # FitSNAP's [PYTORCH] keys under their usual names
    learning_rate = 5e-3
    num_epochs = 200
    batch_size = 8
    training_fraction = 0.8

    [groups.rattle]                    # FitSNAP's [GROUPS] columns
    training_size = 0.8
    testing_size = 0.2
    eweight = 1.0
    fweight = 1.0
    vweight = 0.0

    [output]
    folder = "forcefit_output"
    plots = true

Every error is a :class:`ConfigError` that names the file, the section and the key, and for a
misspelt key or choice suggests the closest valid one (``difflib``); all problems of a file are
reported together.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import tomllib

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DescriptorConfig",
    "GroupConfig",
    "ModelConfig",
    "OutputConfig",
    "TrainingConfig",
    "build_descriptor_set",
    "build_fit_settings",
    "load_config",
    "parse_config",
    "parse_layer_sizes",
]


class ConfigError(ValueError):
    """A configuration problem; the message names the file, section and key."""


# --------------------------------------------------------------------------- schema


@dataclasses.dataclass
class DataConfig:
    """``[data]``: where the labelled structures come from.

    ``paths``: files, folders (FitSNAP group folders) or glob patterns, relative to the config
    file. Groups come from ``group_key`` (an ``info`` key such as extxyz's ``config_type``) or
    from ``groups_from = "folder"`` (the parent folder's name, FitSNAP's layout) or ``"file"``.
    """

    paths: list[str]
    format: str | None = None
    index: str = ":"
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    group_key: str | None = None
    groups_from: Literal["none", "folder", "file"] = "none"
    #: a separate labelled test set, evaluated with the fitted model after the fit into
    #: ``OUTPUT/test_set`` (FitSNAP's "calculate errors on a test set")
    test_paths: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DescriptorConfig:
    """``[descriptors]``: Behler-Parrinello symmetry functions (Angstrom, eta in 1/Angstrom^2).

    Explicit rows as :class:`forcefit.descriptors.DescriptorSet` takes them: ``g2 = [[eta,
    r_s], ...]``, ``sigmoid = [[r0, dr], ...]``, ``g4``/``g5 = [[eta, zeta, lambda], ...]``,
    ``g1 = true``; or the generated grids ``n_radial`` (G2) and ``n_angular`` (G4 or G5 after
    ``angular_family``), added to any explicit rows. ``species`` (chemical symbols) defaults
    to the elements found in the data.
    """

    cutoff: float
    species: list[str] | None = None
    cutoff_function: Literal["cosine", "polynomial"] = "cosine"
    g1: bool = False
    g2: list[list[float]] | None = None
    sigmoid: list[list[float]] | None = None
    g4: list[list[float]] | None = None
    g5: list[list[float]] | None = None
    n_radial: int | None = None
    n_angular: int | None = None
    angular_family: Literal["g4", "g5"] = "g4"


@dataclasses.dataclass
class ModelConfig:
    """``[model]``: network or linear model, element option, reference potential.

    ``layer_sizes`` uses FitSNAP's syntax, ``"num_desc 64 64 1"`` or ``["num_desc", 64, 64, 1]``.
    ``multi_element_option``: 1 one shared network, 2 one network per element, 3 one shared
    network with a one-hot species input. ``reference``: a potential config (``type = "ZBL"``
    ...) fitted underneath. ``reference_energies``: ``"fit"`` (least squares on composition),
    ``"none"`` or a table of per-element energies in eV (FitSNAP's ``[ESHIFT]``).
    """

    type: Literal["network", "linear"] = "network"
    layer_sizes: str | list[int | str] = dataclasses.field(
        default_factory=lambda: ["num_desc", 32, 32, 1])
    activation: Literal["softplus", "silu", "tanh", "sigmoid"] = "silu"
    multi_element_option: Literal[1, 2, 3] = 2
    quadratic: bool = False
    ridge: float = 1e-8
    reference: dict | None = None
    reference_energies: str | dict = "fit"
    feature_std_floor: float = 1e-2


@dataclasses.dataclass
class TrainingConfig:
    """``[training]``: FitSNAP's ``[PYTORCH]`` keys plus optimiser, schedule, early stopping.

    ``energy_weight``/``force_weight``/``stress_weight`` and ``training_fraction``, when given,
    override the per-group values (FitSNAP's global weights). ``save_state_input`` restarts from
    a saved state; with ``num_epochs = 0`` it only evaluates.
    """

    learning_rate: float = 5e-3
    num_epochs: int = 100
    batch_size: int = 8
    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    training_fraction: float | None = None
    multi_element_option: Literal[1, 2, 3] | None = None
    manual_seed: int = 0
    shuffle: bool = True
    save_state_output: str = "model.pt"
    save_state_input: str | None = None
    optimizer: Literal["adam", "lbfgs"] = "adam"
    schedule: Literal["none", "plateau", "exponential", "cosine"] = "plateau"
    patience: int | None = None
    max_time: float | None = None
    gradient_clip: float | None = None
    per_atom_energy: bool = True
    dtype: Literal["float32", "float64"] = "float64"
    derivative_dtype: Literal["float32", "float64"] | None = None
    schedule_params: dict | None = None
    validation_fraction: float | None = None
    validation_groups: list[str] | None = None
    report_test_loss: bool = True
    fused_loss: bool = True


@dataclasses.dataclass
class GroupConfig:
    """One ``[groups.NAME]`` table: FitSNAP's group columns (fractions and loss weights)."""

    name: str
    training_size: float = 1.0
    testing_size: float = 0.0
    eweight: float = 1.0
    fweight: float = 1.0
    vweight: float = 1.0


@dataclasses.dataclass
class OutputConfig:
    """``[output]``: the output folder and what goes into it (FitSNAP's file names)."""

    folder: str = "forcefit_output"
    metrics: str = "metrics.dat"
    dump_peratom: bool = True
    dump_perconfig: bool = True
    dump_configs: bool = True
    plots: bool = True
    log: str = "forcefit.log"


@dataclasses.dataclass
class Config:
    """A whole fit configuration. Paths are absolute once parsed (resolved against ``root``)."""

    data: DataConfig
    descriptors: DescriptorConfig
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    groups: list[GroupConfig] = dataclasses.field(default_factory=list)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    source: str = "<config>"
    root: str = "."

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able dict (stored with a saved model)."""
        d = dataclasses.asdict(self)
        d["groups"] = {g["name"]: {k: v for k, v in g.items() if k != "name"}
                       for g in d["groups"]}
        return d


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "descriptors": DescriptorConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "output": OutputConfig,
}
REQUIRED_SECTIONS = ("data", "descriptors")


# --------------------------------------------------------------------------- helpers


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(arg)}" if arg is not Any else "a list"
    if tp is type(None):
        return "absent"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            dict: "a table"}.get(tp, getattr(tp, "__name__", str(tp)))


def _describe(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) < 40 else text[:37] + '...'}"


class _Invalid(Exception):
    def __init__(self, why: str):
        self.why = why


def _coerce(value, tp):
    """Return ``value`` checked against the annotation ``tp`` (ints accepted as floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _Invalid as e:
                errors.append(e.why)
        raise _Invalid(f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise _Invalid(f"expected {_type_name(tp)}, got {_describe(value)}"
                       + _suggest(value, choices))
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(f"expected {_type_name(tp)}, got {_describe(value)}")
        (arg,) = typing.get_args(tp) or (Any,)
        out = []
        for k, v in enumerate(value):
            try:
                out.append(_coerce(v, arg))
            except _Invalid as e:
                raise _Invalid(f"item {k}: {e.why}") from None
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict and isinstance(value, dict):
        return value
    raise _Invalid(f"expected {_type_name(tp)}, got {_describe(value)}")


def _all_keys() -> dict[str, str]:
    """key -> section, for suggestions of keys put in the wrong section."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, section)
    return out


def _build(cls, table: dict, where: str, errors: list[str], extra: dict | None = None):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = dict(extra or {})
    for key, value in table.items():
        if key not in fields or key in (extra or {}):
            msg = f"{where}: unknown key '{key}'" + _suggest(key, [k for k in fields
                                                                  if k not in (extra or {})])
            if "did you mean" not in msg:
                other = _all_keys().get(key)
                if other is not None and f"[{other}]" != where:
                    msg += f"; '{key}' belongs in section [{other}]"
                else:
                    msg += "; valid keys: " + ", ".join(k for k in fields if k not in (extra or {}))
            errors.append(msg)
            continue
        try:
            kwargs[key] = _coerce(value, hints[key])
        except _Invalid as e:
            errors.append(f"{where} {key}: {e.why}")
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in missing:
        errors.append(f"{where}: missing required key '{name}' ({_type_name(hints[name])})")
    if missing or any(k not in kwargs for k in table if k in fields):
        return None
    return cls(**kwargs)


def parse_layer_sizes(value: list | str, where: str = "[model] layer_sizes") -> list[int | str]:
    """FitSNAP's ``"num_desc 64 64 1"`` (or a list) -> ``["num_desc", 64, 64, 1]``.

    The first entry must be ``num_desc`` (or the number of descriptors), the last 1.
    """
    items = value.split() if isinstance(value, str) else list(value)
    out: list[int | str] = []
    for k, item in enumerate(items):
        if isinstance(item, str) and item.strip() == "num_desc":
            if k != 0:
                raise ConfigError(f"{where}: 'num_desc' may only be the first entry, got {value!r}")
            out.append("num_desc")
            continue
        try:
            n = int(item)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: entry {k} ({item!r}) is neither 'num_desc' nor an "
                              f"integer; write e.g. \"num_desc 64 64 1\"") from None
        if n < 1:
            raise ConfigError(f"{where}: entry {k} must be positive, got {n}")
        out.append(n)
    if len(out) < 2:
        raise ConfigError(f"{where}: need at least an input and an output size, got {value!r}")
    if out[-1] != 1:
        raise ConfigError(f"{where}: the last layer must have size 1 (the atomic energy), "
                          f"got {out[-1]}")
    return out


def _resolve_paths(patterns: list[str], root: Path, where: str, errors: list[str]) -> list[str]:
    out = []
    for p in patterns:
        full = Path(os.path.expanduser(p))
        if not full.is_absolute():
            full = root / full
        full = Path(os.path.normpath(full))
        if glob.has_magic(str(full)):
            if not sorted(glob.glob(str(full), recursive=True)):
                errors.append(f"{where}: pattern '{p}' matches no file (looked in {full.parent})")
            out.append(str(full))
        elif not full.exists():
            parent = full.parent
            near = ""
            if parent.is_dir():
                near = _suggest(full.name, [c.name for c in parent.iterdir()])
            errors.append(f"{where}: '{p}' does not exist (resolved to {full}){near}")
            out.append(str(full))
        else:
            out.append(str(full))
    return out


def _check_values(cfg: Config, errors: list[str], explicit_meo: bool = False) -> None:
    d, t, m = cfg.descriptors, cfg.training, cfg.model
    if not d.cutoff > 0:
        errors.append(f"[descriptors] cutoff: must be positive (Angstrom), got {d.cutoff}")
    for key in ("n_radial", "n_angular"):
        v = getattr(d, key)
        if v is not None and v < 0:
            errors.append(f"[descriptors] {key}: must be >= 0, got {v}")
    for key, width, cols in (("g2", 2, "[eta, r_s]"), ("sigmoid", 2, "[r0, dr]"),
                             ("g4", 3, "[eta, zeta, lambda]"), ("g5", 3, "[eta, zeta, lambda]")):
        for k, row in enumerate(getattr(d, key) or []):
            if len(row) != width:
                errors.append(f"[descriptors] {key}: row {k} has {len(row)} numbers, expected "
                              f"{width} {cols}")
    if not (d.g1 or d.g2 or d.sigmoid or d.g4 or d.g5 or d.n_radial or d.n_angular):
        errors.append("[descriptors]: no functions; set n_radial / n_angular or give rows "
                      "g2, g4, g5, sigmoid (or g1 = true)")
    if t.learning_rate <= 0:
        errors.append(f"[training] learning_rate: must be positive, got {t.learning_rate}")
    if t.num_epochs < 0:
        errors.append(f"[training] num_epochs: must be >= 0, got {t.num_epochs}")
    if t.batch_size < 1:
        errors.append(f"[training] batch_size: must be >= 1, got {t.batch_size}")
    if t.training_fraction is not None and not 0 < t.training_fraction <= 1:
        errors.append(f"[training] training_fraction: must be in (0, 1], got "
                      f"{t.training_fraction}")
    for key in ("energy_weight", "force_weight", "stress_weight"):
        v = getattr(t, key)
        if v is not None and v < 0:
            errors.append(f"[training] {key}: must be >= 0, got {v}")
    if t.patience is not None and t.patience < 1:
        errors.append(f"[training] patience: must be >= 1, got {t.patience}")
    if t.validation_fraction is not None and not 0 <= t.validation_fraction < 1:
        errors.append(f"[training] validation_fraction: must be in [0, 1), got "
                      f"{t.validation_fraction}")
    if t.num_epochs == 0 and t.save_state_input is None and m.type == "network":
        errors.append("[training] num_epochs = 0 only evaluates a saved state: set "
                      "save_state_input, or num_epochs > 0")
    if t.multi_element_option is not None and explicit_meo \
            and t.multi_element_option != m.multi_element_option:
        errors.append("[training] multi_element_option and [model] multi_element_option "
                      "disagree; set it in one place")
    if t.multi_element_option is not None:
        m.multi_element_option = t.multi_element_option
    try:
        m.layer_sizes = parse_layer_sizes(m.layer_sizes)
    except ConfigError as e:
        errors.append(str(e))
    if m.ridge < 0:
        errors.append(f"[model] ridge: must be >= 0, got {m.ridge}")
    if not m.feature_std_floor >= 0:
        errors.append(f"[model] feature_std_floor: must be >= 0, got {m.feature_std_floor}")
    if isinstance(m.reference_energies, str) and m.reference_energies not in ("fit", "none"):
        errors.append(f"[model] reference_energies: expected 'fit', 'none' or a table of "
                      f"element energies, got {m.reference_energies!r}"
                      + _suggest(m.reference_energies, ["fit", "none"]))
    if isinstance(m.reference_energies, dict):
        _check_symbols(m.reference_energies, "[model] reference_energies", errors)
    if m.reference is not None:
        _check_reference(m.reference, errors)
    if d.species is not None:
        _check_symbols(d.species, "[descriptors] species", errors)
    if cfg.data.group_key is not None and cfg.data.groups_from != "none":
        errors.append("[data]: give either group_key or groups_from, not both")
    for g in cfg.groups:
        where = f"[groups.{g.name}]"
        for key in ("training_size", "testing_size"):
            v = getattr(g, key)
            if not 0 <= v <= 1:
                errors.append(f"{where} {key}: must be a fraction in [0, 1], got {v}")
        if g.training_size + g.testing_size > 1 + 1e-9:
            errors.append(f"{where}: training_size + testing_size = "
                          f"{g.training_size + g.testing_size:g} exceeds 1")
        for key in ("eweight", "fweight", "vweight"):
            if getattr(g, key) < 0:
                errors.append(f"{where} {key}: must be >= 0, got {getattr(g, key)}")


def _check_reference(ref: dict, errors: list[str]) -> None:
    """The reference potential table must build through the potentials registry."""
    if "type" not in ref:
        errors.append("[model] reference: a potential table needs a 'type' (e.g. type = \"ZBL\")")
        return
    try:
        from .potentials import from_config, registered
    except ImportError:  # pragma: no cover - the potentials layer is part of the package
        return
    names = sorted(registered())
    if ref["type"] not in names:
        errors.append(f"[model] reference: unknown potential type {ref['type']!r}"
                      + _suggest(ref["type"], names) + f" (known: {', '.join(names)})")
        return
    try:
        from_config(dict(ref))
    except (TypeError, ValueError, KeyError) as e:
        errors.append(f"[model] reference: {e}")


def _check_symbols(symbols, where: str, errors: list[str]) -> None:
    from ase.data import chemical_symbols

    valid = chemical_symbols[1:]
    for s in symbols:
        if s not in valid:
            hint = (f"; did you mean '{s.capitalize()}'?" if s.capitalize() in valid
                    else _suggest(s, valid))
            errors.append(f"{where}: unknown element '{s}'" + hint)


# --------------------------------------------------------------------------- entry points


def parse_config(table: dict, *, source: str = "<config>", root: str | Path = ".",
                 check_paths: bool = True) -> Config:
    """Validate a config dict (as read from TOML) and return a :class:`Config`.

    Relative data paths are resolved against ``root``; with ``check_paths`` a path that does not
    exist is an error. Raises :class:`ConfigError` listing every problem found.
    """
    root = Path(root).resolve()
    errors: list[str] = []
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: the config must be a table of sections")
    known = list(SECTIONS) + ["groups"]
    for name in table:
        if name not in known:
            errors.append(f"unknown section [{name}]" + _suggest(name, known)
                          + ("" if _suggest(name, known) else "; valid sections: "
                             + ", ".join(f"[{k}]" for k in known)))
    for name in REQUIRED_SECTIONS:
        if name not in table:
            errors.append(f"missing section [{name}]")
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        sub = table.get(name, {})
        if not isinstance(sub, dict):
            errors.append(f"[{name}]: expected a section (table), got {_describe(sub)}")
            continue
        if name in table or name not in REQUIRED_SECTIONS:
            built[name] = _build(cls, sub, f"[{name}]", errors)
    groups = []
    raw_groups = table.get("groups", {})
    if not isinstance(raw_groups, dict):
        errors.append(f"[groups]: expected tables [groups.NAME], got {_describe(raw_groups)}")
        raw_groups = {}
    for gname, gtable in raw_groups.items():
        if not isinstance(gtable, dict):
            errors.append(f"[groups] {gname}: expected a table of training_size, testing_size, "
                          f"eweight, fweight, vweight; got {_describe(gtable)}")
            continue
        g = _build(GroupConfig, gtable, f"[groups.{gname}]", errors, extra={"name": gname})
        if g is not None:
            groups.append(g)
    if errors or any(built.get(k) is None for k in SECTIONS if k in built):
        raise ConfigError(_format(source, errors))
    cfg = Config(data=built["data"], descriptors=built["descriptors"], model=built["model"],
                 training=built["training"], groups=groups, output=built["output"],
                 source=str(source), root=str(root))
    _check_values(cfg, errors, "multi_element_option" in table.get("model", {}))
    if check_paths:
        cfg.data.paths = _resolve_paths(cfg.data.paths, root, "[data] paths", errors)
        cfg.data.test_paths = _resolve_paths(cfg.data.test_paths, root, "[data] test_paths",
                                             errors)
        if not cfg.data.paths:
            errors.append("[data] paths: empty list; give at least one file, folder or glob")
        t = cfg.training
        if t.save_state_input is not None:
            t.save_state_input = _resolve_paths([t.save_state_input], root,
                                                "[training] save_state_input", errors)[0]
    out = Path(os.path.expanduser(cfg.output.folder))
    cfg.output.folder = str(out if out.is_absolute() else root / out)
    if errors:
        raise ConfigError(_format(source, errors))
    return cfg


def _format(source: str, errors: list[str]) -> str:
    if len(errors) == 1:
        return f"{source}: {errors[0]}"
    return f"{source}: {len(errors)} problems:\n" + "\n".join(f"  - {e}" for e in errors)


def load_config(path: str | Path, *, check_paths: bool = True) -> Config:
    """Read and validate a TOML config file; relative paths are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(table, source=str(path), root=path.resolve().parent,
                        check_paths=check_paths)


def dumps_toml(cfg: Config) -> str:
    """Write ``cfg`` back as TOML text (None values are left out)."""
    d = cfg.to_dict()
    lines: list[str] = []
    for section in ("data", "descriptors", "model", "training", "output"):
        lines.append(f"[{section}]")
        for k, v in d[section].items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    for name, g in d["groups"].items():
        lines.append(f"[groups.{_toml_key(name)}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in g.items()]
        lines.append("")
    return "\n".join(lines)


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _toml_value(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


# --------------------------------------------------------------------------- config -> objects


def radial_rows(cutoff: float, n: int) -> list[list[float]]:
    """``n_radial``: n shifted G2 rows [eta, r_s]: r_s evenly spaced on [1, rc - 0.5] A and
    eta = 1 / (2 dr^2) with dr the spacing (neighbouring Gaussians cross near half height);
    one centred row [1 / rc^2, 0] for n = 1."""
    import numpy as np

    if n <= 0:
        return []
    if n == 1:
        return [[1.0 / cutoff**2, 0.0]]
    rs = np.linspace(1.0, max(cutoff - 0.5, 1.5), n)  # (n,) Angstrom
    eta = 1.0 / (2.0 * (rs[1] - rs[0]) ** 2)  # 1/Angstrom^2
    return [[float(eta), float(r)] for r in rs]


def angular_rows(n: int) -> list[list[float]]:
    """``n_angular``: n angular rows [eta, zeta, lambda]: zeta cycling through 1, 2, 4, 8, 16,
    each with lambda = +1 then -1; eta = 0.005 1/A^2 for the first ten rows, 0.05 for the next
    ten, and so on (wide Gaussians: the angular part carries the information)."""
    zetas = (1.0, 2.0, 4.0, 8.0, 16.0)
    return [[0.005 * 10 ** (k // 10), zetas[(k // 2) % 5], 1.0 if k % 2 == 0 else -1.0]
            for k in range(n)]


def build_descriptor_set(d: DescriptorConfig, species):
    """The :class:`~forcefit.descriptors.DescriptorSet` of a ``[descriptors]`` section for
    ``species`` (atomic numbers or symbols): explicit rows plus the generated grids."""
    from .descriptors import DescriptorSet

    angular = angular_rows(d.n_angular or 0)
    g2 = [list(r) for r in (d.g2 or [])] + radial_rows(d.cutoff, d.n_radial or 0)
    g4 = [list(r) for r in (d.g4 or [])] + (angular if d.angular_family == "g4" else [])
    g5 = [list(r) for r in (d.g5 or [])] + (angular if d.angular_family == "g5" else [])
    try:
        return DescriptorSet(d.cutoff, list(species), g1=d.g1, g2=g2,
                             sigmoid=[list(r) for r in (d.sigmoid or [])], g4=g4, g5=g5,
                             cutoff_function=d.cutoff_function)
    except ValueError as e:
        raise ConfigError(f"[descriptors]: {e}") from None


def build_fit_settings(cfg: Config, descriptors, *, quiet: bool = False):
    """Map a :class:`Config` onto :class:`forcefit.fit.FitSettings` (one to one: the fitting
    core uses FitSNAP's key names too)."""
    from .data import GroupSpec
    from .fit import FitSettings, ModelSettings, OutputSettings, TrainingSettings

    m, t, o = cfg.model, cfg.training, cfg.output
    model = ModelSettings(type=m.type, layer_sizes=list(m.layer_sizes), activation=m.activation,
                          multi_element_option=m.multi_element_option, quadratic=m.quadratic,
                          ridge=m.ridge, reference=m.reference,
                          reference_energies=m.reference_energies,
                          feature_std_floor=m.feature_std_floor)
    training = TrainingSettings(
        learning_rate=t.learning_rate, num_epochs=t.num_epochs, batch_size=t.batch_size,
        energy_weight=t.energy_weight, force_weight=t.force_weight,
        stress_weight=t.stress_weight, training_fraction=t.training_fraction,
        shuffle=t.shuffle, optimizer=t.optimizer, schedule=t.schedule,
        schedule_params=dict(t.schedule_params or {}), patience=t.patience,
        max_time=t.max_time, gradient_clip=t.gradient_clip, per_atom_energy=t.per_atom_energy,
        dtype=t.dtype, derivative_dtype=t.derivative_dtype,
        save_state_output=t.save_state_output, save_state_input=t.save_state_input,
        validation_fraction=t.validation_fraction,
        validation_groups=list(t.validation_groups) if t.validation_groups else None,
        report_test_loss=t.report_test_loss, fused_loss=t.fused_loss)
    outputs = OutputSettings(metrics=o.metrics, dump_peratom=o.dump_peratom,
                             dump_perconfig=o.dump_perconfig, dump_configs=o.dump_configs)
    groups = {g.name: GroupSpec(g.training_size, g.testing_size, g.eweight, g.fweight, g.vweight)
              for g in cfg.groups}
    return FitSettings(descriptors=descriptors, model=model, training=training, groups=groups,
                       outputs=outputs, output_dir=cfg.output.folder, seed=t.manual_seed,
                       quiet=quiet)
