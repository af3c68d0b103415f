"""The dashboard's small rules: round axis steps, room for a chart's labels."""

from __future__ import annotations

import pytest

from gateway.dashboard.pages import axis_step, text_width


@pytest.mark.parametrize(
    ("peak", "step"),
    [
        (0, 100),
        (1, 100),
        (399, 100),
        (401, 200),
        (34_820_860, 10_000_000),
        (4_024_690, 2_000_000),
        (3_241_346, 1_000_000),
        (2_000_000, 500_000),
    ],
)
def test_an_axis_steps_by_one_two_or_five_times_a_power_of_ten_and_reaches_the_peak_in_four(peak, step):
    assert axis_step(peak) == step
    assert 4 * step >= peak


def test_a_chinese_label_is_given_twice_the_room_of_a_latin_letter() -> None:
    assert text_width("县级医院", 12) == 48
    assert text_width("county", 12) == 6 * 12 * 62 // 100
    assert text_width("镇(社区)卫生服务中心 township (1)", 12) > 190  # wider than the chart's old fixed margin
