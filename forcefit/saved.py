"""Saved potentials: tensors plus JSON metadata, loadable without pickled code.

Units: the saved model works in Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (recorded in the
metadata under ``units``).

File layout (``torch.save`` of plain containers only, so ``torch.load(weights_only=True)``
reads it):

- ``format``: ``"forcefit-potential"``, ``format_version``: 1
- ``metadata``: a JSON string with ``forcefit_version``, ``species`` (atomic numbers),
  ``symbols``, ``model`` (the :meth:`FittedPotential.to_config` dict: descriptor parameters,
  atomic model, prior), ``normalisation`` (feature mean/std, reference energies, energy scale),
  ``units``, and whatever the caller adds (the fit config, ``data_sha256``, metrics)
- ``state_dict``: the model's tensors (network weights, normalisation buffers, prior parameters)

:func:`load` rebuilds the :class:`~forcefit.models.FittedPotential` from the metadata (the
descriptor set through ``forcefit.descriptors``, the prior through
``forcefit.potentials.from_config``) and loads the tensors; the result evaluates any structure
with its own neighbour list and descriptors and gives an ASE calculator (``.calculator()``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from ase.data import chemical_symbols

from .atomic import atomic_path
from .models.potential import FittedPotential, atomic_model_from_config

FORMAT = "forcefit-potential"
FORMAT_VERSION = 1
UNITS = {"length": "Angstrom", "energy": "eV", "forces": "eV/Angstrom",
         "stress": "eV/Angstrom^3 (ASE sign, positive is tensile)"}


def _version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except ImportError:
        return "unknown"


def model_metadata(model: FittedPotential) -> dict:
    return {
        "forcefit_version": _version(),
        "species": list(model.species),
        "symbols": [chemical_symbols[z] for z in model.species],
        "cutoff": float(model.cutoff),
        "model": model.to_config(),
        "normalisation": {
            "feature_mean": model.feature_mean.double().tolist(),
            "feature_std": model.feature_std.double().tolist(),
            "reference_energies": model.ref_energy.double().tolist(),
            "energy_scale": float(model.energy_scale),
        },
        "units": dict(UNITS),
    }


def save(model: FittedPotential, path: str | os.PathLike, metadata: dict | None = None) -> str:
    """Write ``model`` (+ JSON-able ``metadata``) to ``path`` atomically; returns the path."""
    meta = model_metadata(model)
    meta.update(metadata or {})
    try:
        text = json.dumps(meta, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"save: metadata is not JSON-serialisable ({err})") from None
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": text,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _descriptors_from_config(config: dict):
    from . import descriptors as d

    if hasattr(d, "from_config"):
        return d.from_config(config)
    return d.DescriptorSet.from_config(config)


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a saved potential."""
    return json.loads(_read(path)["metadata"])


def _read(path) -> dict:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"saved potential {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"saved potential {path}: cannot be read as a forcefit potential "
                         f"({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"saved potential {path}: field 'format' is not {FORMAT!r}")
    if int(payload.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(f"saved potential {path}: format_version {payload['format_version']} "
                         f"is newer than this forcefit ({FORMAT_VERSION})")
    return payload


def load(path: str | os.PathLike, *, descriptor_factory: Callable[[dict], object] | None = None
         ) -> FittedPotential:
    """Rebuild a saved :class:`FittedPotential` (float64, evaluation mode).

    ``descriptor_factory(config)`` builds the descriptor set (default: ``forcefit.descriptors``).
    The metadata dict is attached as ``model.metadata``.
    """
    payload = _read(path)
    meta = json.loads(payload["metadata"])
    cfg = meta["model"]
    state = payload["state_dict"]
    try:
        dset = (descriptor_factory or _descriptors_from_config)(cfg["descriptors"])
    except Exception as err:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"saved potential {os.fspath(path)}: field 'descriptors' cannot be "
                         f"rebuilt ({type(err).__name__}: {err})") from None
    prior = None
    if cfg.get("prior") is not None:
        from .potentials import from_config

        sub = {k[len("prior."):]: v for k, v in state.items() if k.startswith("prior.")}
        prior = from_config(cfg["prior"], state_dict=sub or None)
    model = FittedPotential(dset, cfg["species"], atomic_model_from_config(cfg["atomic"]), prior)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.metadata = meta
    return model
