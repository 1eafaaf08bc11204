"""The README's Python blocks run as written (executable docs, STYLE.md item 12)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_block_runs(k, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # blocks write their outputs into the working directory
    exec(compile(BLOCKS[k], f"README.md python block {k}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "a README block prints what it computes"


def test_readme_lj13_minimum(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in BLOCKS if "Icosahedron" in b)
    exec(compile(block, "README.md LJ13 block", "exec"), {"__name__": "__readme__"})
    value = float(capsys.readouterr().out.split()[-1])
    assert value == pytest.approx(-44.326801, abs=1e-4)


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "grep" in ci and "README.md" in ci
    assert re.search(r'^pip install torch==2\.13\.0 && pip install -e "\.\[test',
                     README.read_text(), flags=re.M)
