"""cervix_jax.files.check_new_file: what a tool asks of its output file before any work."""

from __future__ import annotations

import pytest

from cervix_jax import files


def test_check_new_file(tmp_path):
    files.check_new_file(tmp_path / "new" / "out.csv", suffixes=(".csv", ".json"))
    files.check_new_file(tmp_path / "OUT.JSON", suffixes=(".csv", ".json"))
    (tmp_path / "old.csv").write_text("keep")
    files.check_new_file(tmp_path / "old.csv", force=True)
    cases = [
        (dict(path=tmp_path / "old.csv"), "old.csv exists; pass --force to replace it"),
        (dict(path=tmp_path / "x.txt", suffixes=(".npz",)), r"expected a file ending in \.npz"),
        (dict(path=tmp_path, force=True), "is a folder; expected a file name"),
        (dict(path=tmp_path / "old.csv" / "x.csv"), "a folder on that path is a file"),
        (dict(path=tmp_path / "old.csv", name="the plot"), "^the plot=.*old.csv exists"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            files.check_new_file(**kwargs)
    assert (tmp_path / "old.csv").read_text() == "keep" and not (tmp_path / "new").exists()
