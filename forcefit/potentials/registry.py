"""Registry of energy models, so that any model can be rebuilt from its JSON config.

Units: none of its own (configs carry the units of each model: Angstrom and eV).

A model class registered with :func:`register` provides ``to_config() -> dict`` (JSON-able,
with ``"type"`` set to the registered name) and is rebuilt by :func:`from_config`, either
through a classmethod ``from_config_dict(config)`` when the class defines one (models that
hold other models, such as :class:`~forcefit.potentials.Sum`) or as
``cls(**{k: v for k, v in config.items() if k != "type"})``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_REGISTRY: dict[str, type] = {}


def register(name: str | type | None = None) -> Callable[[type], type] | type:
    """Class decorator registering an energy model under ``name`` (default: class name).

    Usable bare (``@register``) or with a name (``@register("MyModel")``). Registering two
    different classes under one name raises ``ValueError``.
    """
    def deco(cls: type, key: str | None = None) -> type:
        key = key or cls.__name__
        old = _REGISTRY.get(key)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"energy model type {key!r} is already registered by {old!r}")
        _REGISTRY[key] = cls
        return cls

    if isinstance(name, type):
        return deco(name)
    return lambda cls: deco(cls, name)


def registered() -> dict[str, type]:
    """A copy of the registry: type name -> class."""
    return dict(_REGISTRY)


def from_config(config: dict, state_dict: dict | None = None) -> torch.nn.Module:
    """Rebuild a registered energy model from ``config`` and optionally load ``state_dict``.

    Raises ``ValueError`` naming the missing or unknown ``type`` or the bad parameters.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"energy model config must be a dict with a 'type' key, got {config!r}")
    kind = config["type"]
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ValueError(f"unknown energy model type {kind!r}; registered: {sorted(_REGISTRY)}")
    builder = getattr(cls, "from_config_dict", None)
    try:
        if builder is not None:
            model = builder(config)
        else:
            model = cls(**{k: v for k, v in config.items() if k != "type"})
    except TypeError as err:
        raise ValueError(f"energy model {kind!r}: bad config parameters: {err}") from err
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model
