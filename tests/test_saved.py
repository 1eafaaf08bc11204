"""Saved potentials: weights_only loading, metadata, identical predictions, ASE calculator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_models import ToyRadial, cu_structures

from forcefit.fit import FitSettings, ModelSettings, TrainingSettings, fit_potential
from forcefit.neighbors import build_graph
from forcefit.potentials.base import evaluate
from forcefit.saved import load, read_metadata, save


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    structs = cu_structures(8, species=("Cu", "Ni"))
    settings = FitSettings(
        descriptors=ToyRadial(cutoff=4.2, species=(28, 29)),
        model=ModelSettings(type="network", layer_sizes="num_desc 6 1", multi_element_option=2,
                            reference={"type": "ZBL", "inner": 1.8, "outer": 2.6}),
        training=TrainingSettings(num_epochs=2, training_fraction=0.75),
        output_dir=str(tmp), quiet=True)
    return fit_potential(structs, settings), structs


def _load(path):
    return load(path, descriptor_factory=ToyRadial.from_config)


def test_file_is_plain_tensors_and_json(fitted):
    r, structs = fitted
    raw = torch.load(r.paths["model"], weights_only=True)
    assert raw["format"] == "forcefit-potential"
    meta = json.loads(raw["metadata"])
    assert meta["species"] == [28, 29] and meta["symbols"] == ["Ni", "Cu"]
    assert meta["model"]["descriptors"]["type"] == "ToyRadial"
    assert meta["model"]["prior"]["type"] == "ZBL"
    assert len(meta["normalisation"]["feature_mean"]) == 6
    assert meta["units"]["energy"] == "eV"
    assert len(meta["data_sha256"]) == 64
    assert meta["config"]["training"]["num_epochs"] == 2
    assert meta["forcefit_version"]
    assert read_metadata(r.paths["model"]) == meta


def test_loaded_model_predicts_the_same(fitted):
    r, structs = fitted
    model = _load(r.paths["model"])
    g = build_graph(structs, model.cutoff)
    a = evaluate(r.model, g)
    b = evaluate(model, g)
    for k in ("energy", "forces", "stress"):
        assert torch.equal(a[k], b[k]), k
    assert model.prior is not None and model.cutoff == r.model.cutoff


def test_calculator_of_loaded_model(fitted):
    r, structs = fitted
    model = _load(r.paths["model"])
    atoms = structs[3].to_ase(labels=False)
    atoms.calc = model.calculator()
    out = evaluate(model, build_graph([structs[3]], model.cutoff))
    np.testing.assert_allclose(atoms.get_potential_energy(), float(out["energy"][0].detach()), rtol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-12)


def test_unknown_species_and_bad_files(fitted, tmp_path):
    r, structs = fitted
    model = _load(r.paths["model"])
    bad = structs[0].copy()
    bad.numbers = bad.numbers.copy()
    bad.numbers[0] = 26
    with pytest.raises(ValueError, match=r"Fe \(Z=26\)"):
        evaluate(model, build_graph([bad], model.cutoff))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        load(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ValueError, match="format"):
        load(other)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load(tmp_path / "missing.pt")


def test_save_is_atomic_and_roundtrips_metadata(fitted, tmp_path):
    r, _ = fitted
    path = save(r.model, tmp_path / "m.pt", {"note": "hello"})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
    assert read_metadata(path)["note"] == "hello"
    with pytest.raises(TypeError, match="JSON"):
        save(r.model, tmp_path / "n.pt", {"bad": object()})
    assert not (tmp_path / "n.pt").exists()


def test_real_descriptors_roundtrip(tmp_path):
    d = pytest.importorskip("forcefit.descriptors")
    structs = cu_structures(4)
    dset = d.DescriptorSet(4.0, [29], g2=d.radial_grid(4.0, 4, "shifted"),
                           g4=d.angular_grid(cutoff=4.0, n_eta=1, zetas=(1,)))
    settings = FitSettings(descriptors=dset, model=ModelSettings(type="linear"),
                           training=TrainingSettings(training_fraction=1.0),
                           output_dir=str(tmp_path), quiet=True)
    r = fit_potential(structs, settings)
    model = load(r.paths["model"])
    g = build_graph(structs, model.cutoff)
    f = evaluate(model, g)["forces"]
    assert torch.isfinite(f).all()
    assert torch.equal(f, evaluate(r.model, g)["forces"])
    # the loaded model's on-the-fly forces equal the cached-path predictions of the fit
    np.testing.assert_allclose(f.detach().numpy(), np.concatenate(
        [a.get_array("forces_pred") for a in __import__("ase.io").io.read(
            r.paths["configs"], index=":")]), atol=1e-8)
