"""Atomic writes: an interrupted write leaves the old file and no temporary file."""

import os

import pytest

from forcefit.atomic import atomic_path, atomic_write_text


def test_write_then_interrupted_write_keeps_old_file(tmp_path):
    target = tmp_path / "sub" / "out.dat"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half of the second")
        raise KeyboardInterrupt
    assert target.read_text() == "first\n"
    assert os.listdir(target.parent) == ["out.dat"]


def test_temporary_name_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.endswith(".png")
        open(tmp, "w").close()
    assert (tmp_path / "plot.png").exists()
