"""The dashboard's small rules: which callers get a page, round axis steps, room for a chart's labels."""

from __future__ import annotations

import pytest

from gateway.dashboard.pages import axis_step, text_width
from gateway.dashboard.refusals import prefers_html, render_refusal
from gateway.problems import ApiError

CHROMIUM = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (CHROMIUM, True),
        (FIREFOX, True),
        ("text/html", True),
        ("application/json", False),
        ("application/problem+json", False),
        ("application/json, text/html;q=0.5", False),  # JSON first
        ("text/html;q=0.9, application/json;q=0.9", True),  # a tie goes to the page
        ("*/*", False),  # curl: names neither
        ("", False),
        ("text/html;q=0", False),  # refused outright
        ("text/html;q=nonsense", False),
        ("TEXT/HTML", True),
    ],
)
def test_a_page_goes_to_whoever_asks_for_html_before_json(accept: str, page: bool) -> None:
    assert prefers_html(accept) is page


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


def test_the_refusal_page_escapes_what_it_quotes_and_names_the_code() -> None:
    page = render_refusal(ApiError(422, "validation_failed", "from <b>2026-13-01</b> is not a date"), "req-1")
    assert "<b>2026" not in page and "&lt;b&gt;2026-13-01&lt;/b&gt;" in page
    assert 'data-code="validation_failed"' in page and "req-1" in page
    expired = render_refusal(ApiError(401, "session_expired", "ended"), "req-2")
    assert "登录已过期" in expired and "Your session has ended" in expired
    assert "medsettle dashboard-link --terminal finance-1" in expired
