"""The TOML config schema and the FitSNAP input translator: values, defaults, and errors that
tell a new user what to fix."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from forcefit.config import ConfigError, dumps_toml, load_config, parse_config, parse_layer_sizes
from forcefit.fitsnap_input import FitsnapInputWarning, read_fitsnap_input, translate_fitsnap_input

ROOT = Path(__file__).resolve().parents[1]
TA_INPUT = ROOT / "examples" / "ta_fitsnap" / "Ta-example.in"

GOOD = """
[data]
paths = ["data.extxyz"]
group_key = "config_type"

[descriptors]
cutoff = 4.5
n_radial = 6
n_angular = 4

[model]
layer_sizes = "num_desc 16 16 1"
activation = "tanh"

[training]
learning_rate = 1e-3
num_epochs = 7
batch_size = 2
energy_weight = 1
force_weight = 10
training_fraction = 0.75

[groups.rattle]
training_size = 0.6
testing_size = 0.4
eweight = 2.0
fweight = 3
vweight = 0

[output]
folder = "out"
"""


def _write(tmp_path, text, data=True):
    if data:
        (tmp_path / "data.extxyz").write_text("")
    p = tmp_path / "fit.toml"
    p.write_text(text)
    return p


def test_good_config_is_typed_and_resolved(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.data.paths == [str(tmp_path / "data.extxyz")]
    assert cfg.descriptors.cutoff == 4.5 and cfg.descriptors.n_radial == 6
    assert cfg.model.layer_sizes == ["num_desc", 16, 16, 1]
    assert cfg.model.activation == "tanh"
    assert isinstance(cfg.training.force_weight, float) and cfg.training.force_weight == 10.0
    assert cfg.training.num_epochs == 7 and cfg.training.shuffle is True
    (g,) = cfg.groups
    assert (g.name, g.training_size, g.testing_size, g.eweight, g.fweight) == (
        "rattle", 0.6, 0.4, 2.0, 3.0)
    assert cfg.output.folder == str(tmp_path / "out")
    # round trip through TOML text gives the same config
    again = parse_config(__import__("tomllib").loads(dumps_toml(cfg)), root=tmp_path,
                         source=cfg.source)
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("old,new,expected", [
    ("learning_rate = 1e-3", "learning_rat = 1e-3",
     r"\[training\]: unknown key 'learning_rat'; did you mean 'learning_rate'\?"),
    ("num_epochs = 7", 'num_epochs = "seven"',
     r"\[training\] num_epochs: expected an integer, got string 'seven'"),
    ("num_epochs = 7", "num_epochs = 7.5", r"num_epochs: expected an integer, got number 7.5"),
    ('activation = "tanh"', 'activation = "tahn"',
     r"activation: expected one of .*got string 'tahn'; did you mean 'tanh'\?"),
    ("eweight = 2.0", "eweigth = 2.0",
     r"\[groups.rattle\]: unknown key 'eweigth'; did you mean 'eweight'\?"),
    ("[output]", "[outptu]", r"unknown section \[outptu\]; did you mean 'output'\?"),
    ("cutoff = 4.5", "cutoff = -1.0", r"\[descriptors\] cutoff: must be positive"),
    ('paths = ["data.extxyz"]', 'paths = ["dat.extxyz"]',
     r"\[data\] paths: 'dat.extxyz' does not exist .*did you mean 'data.extxyz'\?"),
    ('paths = ["data.extxyz"]', 'paths = ["nothing*.xyz"]',
     r"pattern 'nothing\*.xyz' matches no file"),
    ("testing_size = 0.4", "testing_size = 0.5", r"training_size \+ testing_size = 1.1 exceeds 1"),
    ('layer_sizes = "num_desc 16 16 1"', 'layer_sizes = "num_desc 16 16 2"',
     r"last layer must have size 1"),
    ("shuffle", "shuffle", None),
    ("batch_size = 2", "batch_size = true", r"batch_size: expected an integer, got boolean"),
    ("force_weight = 10", "force_weight = 10\ncutoff = 3",
     r"\[training\]: unknown key 'cutoff'.*belongs in section \[descriptors\]"),
])
def test_config_errors_name_the_key(tmp_path, old, new, expected):
    text = GOOD.replace(old, new)
    if expected is None:
        load_config(_write(tmp_path, text))
        return
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(_write(tmp_path, text))
    assert str(tmp_path / "fit.toml") in str(info.value)


def test_all_problems_reported_together_and_missing_sections(tmp_path):
    text = GOOD.replace("learning_rate", "learnin_rate").replace("num_epochs = 7",
                                                                 "num_epochs = 'x'")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    msg = str(info.value)
    assert "2 problems" in msg and "learnin_rate" in msg and "num_epochs: expected an integer" in msg
    with pytest.raises(ConfigError, match=r"missing section \[descriptors\]"):
        parse_config({"data": {"paths": []}}, check_paths=False)
    with pytest.raises(ConfigError, match=r"\[descriptors\]: missing required key 'cutoff'"):
        parse_config({"data": {"paths": ["x"]}, "descriptors": {}}, check_paths=False)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[data\npaths="))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_species_and_reference_energy_symbols_checked():
    base = {"data": {"paths": ["x"]}, "descriptors": {"cutoff": 3.0, "species": ["Cu", "Xx"]}}
    with pytest.raises(ConfigError, match=r"\[descriptors\] species: unknown element 'Xx'"):
        parse_config(base, check_paths=False)
    base["descriptors"]["species"] = ["Cu"]
    base["model"] = {"reference_energies": {"cu": -3.0}}
    with pytest.raises(ConfigError, match="unknown element 'cu'; did you mean 'Cu'"):
        parse_config(base, check_paths=False)


def test_layer_sizes_syntax():
    assert parse_layer_sizes("num_desc 64 64 1") == ["num_desc", 64, 64, 1]
    assert parse_layer_sizes([30, 8, 1]) == [30, 8, 1]
    with pytest.raises(ConfigError, match=r"entry 1 \('6x4'\)"):
        parse_layer_sizes("num_desc 6x4 1")
    with pytest.raises(ConfigError, match="only be the first"):
        parse_layer_sizes("64 num_desc 1")


def test_fitsnap_ta_input_translates():
    from forcefit.config import build_descriptor_set

    cfg, notes = translate_fitsnap_input(TA_INPUT, check_paths=False)
    t, m = cfg.training, cfg.model
    assert (t.learning_rate, t.num_epochs, t.batch_size) == (1.5e-3, 100, 4)
    assert (t.energy_weight, t.force_weight) == (1e-2, 1.0)
    assert t.save_state_output == "Ta_Pytorch.pt"
    assert m.layer_sizes == ["num_desc", 64, 64, 1] and m.multi_element_option == 1
    assert m.reference == {"type": "ZBL", "inner": 4.0, "outer": 4.8}
    assert m.reference_energies == {"Ta": 0.0}
    assert cfg.descriptors.cutoff == pytest.approx(4.67637)
    assert cfg.descriptors.species == ["Ta"]
    d = cfg.descriptors  # the bispectrum's place: 12 shifted G2 + 18 G5 (zeta 1, 4, 16)
    assert len(d.g2) == 12 and d.g2[0][1] == pytest.approx(0.32 * 4.67637)
    assert d.g2[-1][1] == pytest.approx(4.67637) and not d.n_radial and not d.n_angular
    assert len(d.g5) == 18 and sorted({r[1] for r in d.g5}) == [1.0, 4.0, 16.0]
    assert build_descriptor_set(d, d.species).n_features == 30
    names = [g.name for g in cfg.groups]
    assert len(names) == 12 and names[0] == "Displaced_A15"
    elastic = cfg.groups[names.index("Elastic_BCC")]
    assert (elastic.training_size, elastic.testing_size, elastic.vweight) == (0.7, 0.3, 1e-4)
    assert cfg.data.format == "fitsnap" and cfg.data.groups_from == "folder"
    assert [Path(p).name for p in cfg.data.paths] == names
    assert cfg.output.metrics == "Ta_metrics.dat" and cfg.output.dump_configs is True
    joined = "\n".join(notes)
    assert "[BISPECTRUM]" in joined and "twojmax" in joined  # named, not silently dropped
    assert "[MEMORY]" in joined


def test_fitsnap_warnings_and_errors(tmp_path):
    text = TA_INPUT.read_text()
    p = tmp_path / "x.in"
    p.write_text(text.replace("dataPath = ../../../shared/data/ta_fitsnap", "dataPath = ."))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        read_fitsnap_input(p, check_paths=False)
    assert any(issubclass(w.category, FitsnapInputWarning) and "[BISPECTRUM]" in str(w.message)
               for w in rec)
    p.write_text(text.replace("Liquid        =  0.7  0.3  467   1      1e-08", "Liquid = 0.7 0.3"))
    with pytest.raises(ConfigError, match=r"\[GROUPS\] Liquid: expected 5 values"):
        translate_fitsnap_input(p, check_paths=False)
    p.write_text(text.replace("learning_rate = 1.5e-3", "learning_rate = fast"))
    with pytest.raises(ConfigError, match=r"\[PYTORCH\] learning_rate: expected float"):
        translate_fitsnap_input(p, check_paths=False)
    p.write_text(text.replace("[PATH]", "[PATHS]"))
    with pytest.raises(ConfigError, match=r"\[PATH\] dataPath is missing"):
        translate_fitsnap_input(p, check_paths=False)
    p.write_text(text.replace("dataPath = ../../../shared/data/ta_fitsnap", "dataPath = nowhere"))
    with pytest.raises(ConfigError, match=r"\[PATH\] dataPath = nowhere: no such folder"):
        translate_fitsnap_input(p)
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(ConfigError, match=r"\[data\] paths: 'nowhere/Displaced_A15' does not exist"):
        translate_fitsnap_input(p)


def test_fitsnap_evaluate_only_and_switches(tmp_path):
    text = TA_INPUT.read_text().replace("save_state_output = Ta_Pytorch.pt",
                                        "save_state_input = Ta_Pytorch.pt")
    text = text.replace("num_epochs = 100", "num_epochs = 1").replace("stress = 1", "stress = 0")
    p = tmp_path / "eval.in"
    p.write_text(text)
    cfg, notes = translate_fitsnap_input(p, check_paths=False)
    assert cfg.training.num_epochs == 0  # FitSNAP's "calculate errors on a test set"
    assert cfg.training.save_state_input.endswith("Ta_Pytorch.pt")
    assert cfg.training.stress_weight == 0.0
    assert any("evaluating the saved model only" in n for n in notes)


def test_generated_descriptor_rows_and_set():
    from forcefit.config import angular_rows, build_descriptor_set, radial_rows

    rows = np.array(radial_rows(4.5, 8))  # (8, 2) [eta, r_s]
    np.testing.assert_allclose(rows[:, 1], np.linspace(1.0, 4.0, 8))
    spacing = 3.0 / 7
    np.testing.assert_allclose(rows[:, 0], 1 / (2 * spacing**2))
    assert radial_rows(4.5, 1) == [[1 / 4.5**2, 0.0]] and radial_rows(4.5, 0) == []
    ang = angular_rows(12)
    assert [r[1:] for r in ang[:4]] == [[1.0, 1.0], [1.0, -1.0], [2.0, 1.0], [2.0, -1.0]]
    assert ang[9][0] == 0.005 and ang[10][0] == pytest.approx(0.05)
    cfg = parse_config({"data": {"paths": ["x"]},
                        "descriptors": {"cutoff": 4.5, "n_radial": 3, "n_angular": 2,
                                        "g2": [[0.3, 0.0]], "angular_family": "g5"}},
                       check_paths=False)
    dset = build_descriptor_set(cfg.descriptors, ["Cu", "Ag"])
    assert dset.species == [29, 47]
    # per species 1 + 3 radial, per unordered pair 2 angular (G5)
    assert dset.n_features == 2 * 4 + 3 * 2
    assert sum(name.startswith("G5") for name in dset.feature_names) == 6
    bad = parse_config({"data": {"paths": ["x"]},
                        "descriptors": {"cutoff": 4.5, "g4": [[0.1, 0.5, 1.0]]}},
                       check_paths=False)
    with pytest.raises(ConfigError, match=r"\[descriptors\]: .*zeta must be >= 1"):
        build_descriptor_set(bad.descriptors, ["Cu"])


def test_fit_settings_mapping_is_one_to_one(tmp_path):
    from forcefit.config import build_fit_settings

    cfg = load_config(_write(tmp_path, GOOD))
    s = build_fit_settings(cfg, descriptors="D", quiet=True)
    assert s.descriptors == "D" and s.quiet is True and s.output_dir == str(tmp_path / "out")
    assert (s.training.learning_rate, s.training.num_epochs, s.training.batch_size) == (
        1e-3, 7, 2)
    assert (s.training.energy_weight, s.training.force_weight) == (1.0, 10.0)
    assert s.training.training_fraction == 0.75 and s.seed == cfg.training.manual_seed
    assert s.model.layer_sizes == ["num_desc", 16, 16, 1] and s.model.activation == "tanh"
    g = s.groups["rattle"]
    assert (g.training_fraction, g.testing_fraction, g.eweight, g.fweight, g.vweight) == (
        0.6, 0.4, 2.0, 3.0, 0.0)
    # every training key of the config reaches the fitting core under the same name
    import dataclasses

    core = {f.name for f in dataclasses.fields(s.training)}
    ours = {f.name for f in dataclasses.fields(cfg.training)}
    assert ours - core == {"manual_seed", "multi_element_option"}  # seed and model live apart
