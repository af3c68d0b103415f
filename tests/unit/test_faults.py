"""The fault-point setting: parsed strictly, refused in production."""

from __future__ import annotations

import pytest

from adapters.faults import FaultConfigError, FaultInjected, Faults
from gateway.config import ConfigError, load_settings


def test_parses_points_actions_and_hit_numbers():
    faults = Faults.parse("settle.before_commit=kill, settle.after_lock=stall:2.5,reverse.after_commit=raise@3")
    assert faults.armed["settle.before_commit"].action == "kill"
    assert faults.armed["settle.after_lock"].seconds == 2.5
    assert faults.armed["reverse.after_commit"].on_hit == 3
    assert not Faults.parse("").enabled


@pytest.mark.parametrize(
    "text",
    ["settle.nowhere=kill", "settle.before_commit=explode", "settle.after_lock=stall", "settle.after_lock=stall:x"],
)
def test_refuses_unknown_points_actions_and_bad_numbers(text):
    with pytest.raises(FaultConfigError):
        Faults.parse(text)


async def test_raise_fires_only_on_the_chosen_hit():
    faults = Faults.parse("settle.after_commit=raise@2")
    await faults.reach("settle.after_commit")
    with pytest.raises(FaultInjected):
        await faults.reach("settle.after_commit")
    await faults.reach("settle.after_commit")
    await faults.reach("settle.before_commit")  # not armed


def test_production_refuses_fault_points(tmp_path):
    environ = {
        "MEDSETTLE_ENV": "production",
        # Secrets production accepts (tests/unit/test_config.py), so the refusal is the fault points'.
        "MEDSETTLE_ID_PEPPER": "f87be7fb52d01d5dc858ffbc54b039b9e809b6bd610eb9523d7f75a9faf291d1",
        "MEDSETTLE_TERMINAL_KEY_KEY": "63fb0cff17cb98177c4e330c45d80a07e8f229d99b836f4d2f5c212bcf772381",
        "MEDSETTLE_FAULTS": "settle.before_commit=kill",
    }
    with pytest.raises(ConfigError, match="refused in production"):
        load_settings(environ)
    with pytest.raises(ConfigError, match="unknown fault point"):
        load_settings({"MEDSETTLE_DATA_DIR": str(tmp_path), "MEDSETTLE_FAULTS": "nowhere=kill"})
