"""``medsettle serve --insurer-sim``: the settings it changes, and what it refuses before anything starts.
(tests/integration/test_serve.py runs it as a process and settles through the simulator.)"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.cli.main import build_parser
from gateway.cli.serve import INSURER_DEMO_DATA_DIR, INSURER_DEMO_POLICY_DIR, insurer_demo, serve_defaults
from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_its_own_data_folder_and_policy_unless_the_environment_names_others() -> None:
    args = build_parser().parse_args(["serve", "--demo", "--insurer-sim"])
    assert serve_defaults(args, {}) == {"data_dir": ".data-insurer", "policy_dir": str(INSURER_DEMO_POLICY_DIR)}
    named = {"MEDSETTLE_DATA_DIR": "/srv/medsettle", "MEDSETTLE_POLICY_DIR": "/srv/policies"}
    assert serve_defaults(args, named) == {}
    assert serve_defaults(build_parser().parse_args(["serve", "--demo"]), {}) == {}
    assert serve_defaults(build_parser().parse_args(["demo"]), {}) == {}


def test_the_development_secrets_are_kept_in_its_own_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pepper keys every person: one read from the default demo's folder would not match the people
    # stored in .data-insurer once the gateway is started there without the flag.
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["serve", "--insurer-sim"])
    settings = load_settings({}, **serve_defaults(args, {}))
    assert settings.data_dir == INSURER_DEMO_DATA_DIR
    assert (tmp_path / INSURER_DEMO_DATA_DIR / "id-pepper").read_bytes() == settings.id_pepper
    assert not (tmp_path / ".data").exists()


def test_one_process_only_and_a_policy_that_calls_an_insurer() -> None:
    beside = load_settings({"MEDSETTLE_ID_PEPPER": "p" * 32, "MEDSETTLE_TERMINAL_KEY_KEY": "ab" * 32})
    beside = msgspec.structs.replace(beside, policy_dir=str(INSURER_DEMO_POLICY_DIR))
    demo = insurer_demo(beside, None)
    assert demo.port != demo.control_port and demo.url == f"http://127.0.0.1:{demo.port}"
    given = insurer_demo(beside, 18090)
    assert (given.port, given.control_port) == (18090, 18091)
    with pytest.raises(ValueError, match="one process"):
        insurer_demo(msgspec.structs.replace(beside, workers=2), None)
    with pytest.raises(ValueError, match=r"names an \[insurer\]"):
        insurer_demo(msgspec.structs.replace(beside, policy_dir=str(REPO / "policies")), None)


def test_the_simulator_answers_the_national_way_unless_told_to_echo() -> None:
    assert build_parser().parse_args(["insurer-sim"]).answer_id == "platform"
    assert build_parser().parse_args(["insurer-sim", "--answer-id", "echo"]).answer_id == "echo"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["insurer-sim", "--answer-id", "msgid"])
