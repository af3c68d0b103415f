"""The worker supervisor's rules that need no process: the restart budget, the port check, the metrics folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings
from gateway.http import workers


def _supervisor(tmp_path: Path, clock: list[float]) -> workers.Supervisor:
    settings = load_settings({}, data_dir=str(tmp_path), workers=2)
    return workers.Supervisor(settings, "postgresql://unused", metrics_dir=tmp_path, clock=lambda: clock[0])


def test_restarts_are_bounded_per_window(tmp_path):
    clock = [1000.0]
    supervisor = _supervisor(tmp_path, clock)
    assert [supervisor._may_restart() for _ in range(workers.RESTART_BUDGET)] == [True] * workers.RESTART_BUDGET
    assert not supervisor._may_restart()  # a sixth death inside the minute: stop instead
    clock[0] += workers.RESTART_WINDOW - 1
    assert not supervisor._may_restart()
    clock[0] += 2  # the first restarts have left the window
    assert supervisor._may_restart()


def test_a_port_someone_listens_on_is_refused_and_a_free_one_is_not():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with pytest.raises(workers.PortInUse, match=f"127.0.0.1:{port} is already in use"):
            workers.check_ports_free("127.0.0.1", [port])
    workers.check_ports_free("127.0.0.1", [port])  # closed now: free again


def test_the_metrics_folder_is_emptied_of_value_files_only(tmp_path):
    folder = tmp_path / "prometheus-multiproc"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "README").write_text("not ours to delete")
    assert workers.fresh_metrics_folder(folder) == folder
    assert sorted(path.name for path in folder.iterdir()) == ["README"]


def test_one_worker_is_the_default_and_zero_is_refused(tmp_path):
    assert load_settings({}, data_dir=str(tmp_path)).workers == 1
    assert load_settings({"MEDSETTLE_WORKERS": "4"}, data_dir=str(tmp_path)).workers == 4
    with pytest.raises(ConfigError, match="MEDSETTLE_WORKERS"):
        load_settings({"MEDSETTLE_WORKERS": "0"}, data_dir=str(tmp_path))
