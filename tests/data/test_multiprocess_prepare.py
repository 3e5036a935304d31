"""Several processes and one dataset preparation: process 0 prepares, the others wait for it on
the file system, however long it takes (no collective deadline), saying what they wait for."""

import io

import pytest

from cervix_jax.data import DataError, data_module
from configs import default
from tools.launch_local import launch


def _data_config(tmp_path):
    config = default.get_config()
    config.data.synthetic = True
    return data_module.resolved_data_config(config, tmp_path)


def test_waiting_reports_and_ends_when_prepared(tmp_path, monkeypatch, capsys):
    answers = iter([False, False, False, True])
    monkeypatch.setattr(data_module, "is_prepared", lambda data_config: next(answers))
    data_module.wait_until_prepared(_data_config(tmp_path), poll_s=0.0, report_every_s=0.0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("process 0: waiting for process 0 to prepare sipakmed/full in ")
    assert str(tmp_path / "tfds") in lines[0]


def test_waiting_has_a_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "is_prepared", lambda data_config: False)
    with pytest.raises(DataError, match="still not prepared"):
        data_module.wait_until_prepared(_data_config(tmp_path), timeout_s=0.0, poll_s=0.0)


@pytest.mark.slow
def test_a_preparation_slower_than_the_collective_deadline(tmp_path):
    """Gloo's collectives give up after 30 s; process 0 here prepares for over 35 s."""
    log = io.StringIO()
    code = launch(
        ["-m", "tests.data.prepare_worker", f"--workdir={tmp_path}", "--delay_s=35"],
        num_processes=2,
        devices_per_process=1,
        sink=log,
    )
    out = log.getvalue()
    assert code == 0, out[-4000:]
    assert "[p1] process 1: waiting for process 0 to prepare sipakmed/full in " in out
    assert "[p0] process 0 sees [20, 20] records" in out, out[-4000:]
    assert "[p1] process 1 sees [20, 20] records" in out, out[-4000:]
