"""The five-field cron matcher and enforce windows, across time zones and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from driftd.policy.cron import CronSchedule, window_open

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")


def test_parse_fields() -> None:
    s = CronSchedule.parse("*/15 9-17 1,15 jan-mar mon-fri")
    assert s.minutes == frozenset({0, 15, 30, 45})
    assert s.hours == frozenset(range(9, 18))
    assert s.days == frozenset({1, 15})
    assert s.months == frozenset({1, 2, 3})
    assert s.weekdays == frozenset({1, 2, 3, 4, 5})


def test_steps_ranges_and_sunday_seven() -> None:
    s = CronSchedule.parse("0-30/10 5/6 * * 7")
    assert s.minutes == frozenset({0, 10, 20, 30})
    assert s.hours == frozenset({5, 11, 17, 23})
    assert s.weekdays == frozenset({0})


@pytest.mark.parametrize(("expr", "fragment"), [
    ("* * * *", "five fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 5-2 * * *", "runs backwards"),
    ("* * * foo *", "month"),
    ("*/0 * * * *", "positive step"),
])
def test_parse_errors_name_the_field(expr: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CronSchedule.parse(expr)


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    s = CronSchedule.parse("0 0 13 * fri")
    assert s.matches(datetime(2024, 9, 13, 0, 0))  # Friday the 13th
    assert s.matches(datetime(2024, 9, 6, 0, 0))  # a Friday
    assert s.matches(datetime(2024, 8, 13, 0, 0))  # a Tuesday the 13th
    assert not s.matches(datetime(2024, 9, 10, 0, 0))
    only_dow = CronSchedule.parse("0 0 * * fri")
    assert not only_dow.matches(datetime(2024, 8, 13, 0, 0))


def test_window_weekday_office_hours_in_a_time_zone() -> None:
    s = CronSchedule.parse("0 9 * * mon-fri")
    eight_h = 8 * 3600
    # Wednesday 2024-06-12 10:00 in Paris (08:00 UTC): open.
    assert window_open(s, eight_h, PARIS, datetime(2024, 6, 12, 8, 0, tzinfo=UTC))
    # 08:59 Paris: not yet.
    assert not window_open(s, eight_h, PARIS, datetime(2024, 6, 12, 6, 59, tzinfo=UTC))
    # 17:00 Paris exactly: closed (duration is half-open).
    assert not window_open(s, eight_h, PARIS, datetime(2024, 6, 12, 15, 0, tzinfo=UTC))
    # Same UTC instant is 04:00 in New York: closed there.
    assert not window_open(s, eight_h, NY, datetime(2024, 6, 12, 8, 0, tzinfo=UTC))
    # Saturday: closed.
    assert not window_open(s, eight_h, PARIS, datetime(2024, 6, 15, 8, 0, tzinfo=UTC))


def test_window_spanning_midnight_and_weekend() -> None:
    s = CronSchedule.parse("0 22 * * fri")
    assert window_open(s, 10 * 3600, UTC, datetime(2024, 6, 15, 3, 0, tzinfo=UTC))  # Sat 03:00
    assert not window_open(s, 10 * 3600, UTC, datetime(2024, 6, 15, 8, 0, tzinfo=UTC))


def test_spring_forward_window_still_opens_and_lasts_elapsed_time() -> None:
    # Europe/Paris jumps 02:00 -> 03:00 on 2024-03-31. A window at 02:30 does not exist that day:
    # it opens at 03:30 CEST (01:30 UTC), like Vixie cron running skipped jobs after the jump.
    s = CronSchedule.parse("30 2 * * *")
    assert not window_open(s, 3600, PARIS, datetime(2024, 3, 31, 1, 29, tzinfo=UTC))
    assert window_open(s, 3600, PARIS, datetime(2024, 3, 31, 1, 30, tzinfo=UTC))
    assert not window_open(s, 3600, PARIS, datetime(2024, 3, 31, 2, 30, tzinfo=UTC))
    # A window at 01:00 for 3h on that night lasts 3 real hours: 00:00-03:00 UTC (01:00-05:00 CEST).
    s1 = CronSchedule.parse("0 1 * * *")
    assert window_open(s1, 3 * 3600, PARIS, datetime(2024, 3, 31, 2, 59, tzinfo=UTC))
    assert not window_open(s1, 3 * 3600, PARIS, datetime(2024, 3, 31, 3, 0, tzinfo=UTC))


def test_fall_back_ambiguous_time_opens_once_at_first_occurrence() -> None:
    # America/New_York repeats 01:00-02:00 on 2024-11-03: 01:30 EDT = 05:30 UTC, 01:30 EST = 06:30 UTC.
    s = CronSchedule.parse("30 1 * * *")
    assert window_open(s, 1800, NY, datetime(2024, 11, 3, 5, 45, tzinfo=UTC))
    assert not window_open(s, 1800, NY, datetime(2024, 11, 3, 6, 45, tzinfo=UTC))
    start = s.last_start(datetime(2024, 11, 3, 7, 0, tzinfo=UTC), NY, timedelta(hours=2))
    assert start == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)


def test_last_start_respects_lookback() -> None:
    s = CronSchedule.parse("0 0 1 1 *")  # once a year
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert s.last_start(now, UTC, timedelta(days=1)) is None
    assert s.last_start(now, UTC, timedelta(days=200)) == datetime(2024, 1, 1, tzinfo=UTC)
