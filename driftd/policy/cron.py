"""A small five-field cron matcher (minute hour day-of-month month day-of-week), pure.

Supports ``*``, lists (``1,15``), ranges (``1-5``), steps (``*/15``, ``0-30/10``) and the names
``jan``..``dec`` and ``sun``..``sat``; day-of-week 0 and 7 are both Sunday. As in Vixie cron, when
both day-of-month and day-of-week are restricted a day matches if EITHER does.

Time zones follow PEP 495: a wall-clock time that happens twice (autumn) opens a window once, at its
first occurrence; a time skipped by a spring-forward jump opens it at the instant the skipped time
maps to with the pre-jump offset (02:30 in a 02:00->03:00 gap opens at 03:30), so a daily window
still opens on the day of the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    expression: str = ""

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Raises ValueError naming the field and the offending text."""
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"expected five fields (minute hour day-of-month month day-of-week), "
                             f"found {len(parts)} in {expression!r}")
        sets = [_parse_field(p, *f) for p, f in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(0 if d == 7 else d for d in sets[4])
        return cls(minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3], weekdays=weekdays,
                   days_restricted=parts[2] != "*", weekdays_restricted=parts[4] != "*",
                   expression=expression)

    def matches_day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def matches(self, local: datetime) -> bool:
        """Does this wall-clock time (naive or aware, read as is) match?"""
        return local.minute in self.minutes and local.hour in self.hours and self.matches_day(local.date())

    def last_start(self, now: datetime, tz: ZoneInfo, lookback: timedelta) -> datetime | None:
        """The latest instant <= ``now`` (aware) at which the schedule fired in ``tz``, searching back
        ``lookback`` (plus a day of slack). Returned in UTC."""
        now_utc = now.astimezone(UTC)
        earliest = now_utc - lookback - timedelta(days=1)
        day = now_utc.astimezone(tz).date() + timedelta(days=1)  # +1: offsets can move the wall date
        hours = sorted(self.hours, reverse=True)
        minutes = sorted(self.minutes, reverse=True)
        while True:
            if datetime.combine(day, datetime.max.time(), tz).astimezone(UTC) < earliest:
                return None
            if self.matches_day(day):
                for h in hours:
                    for m in minutes:
                        t = datetime(day.year, day.month, day.day, h, m, tzinfo=tz, fold=0).astimezone(UTC)
                        if t <= now_utc:
                            return t if t >= earliest else None
            day -= timedelta(days=1)


def window_open(schedule: CronSchedule, duration: float, tz: ZoneInfo, now: datetime) -> bool:
    """Is ``now`` within ``duration`` seconds (elapsed, not wall-clock) of the schedule's last start?"""
    start = schedule.last_start(now, tz, timedelta(seconds=duration))
    return start is not None and (now.astimezone(UTC) - start).total_seconds() < duration


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        rng, _, step_s = item.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"{name}: expected a positive step after '/', found {item!r}")
            step = int(step_s)
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = _value(a_s, name, low, high, names), _value(b_s, name, low, high, names)
            if a > b:
                raise ValueError(f"{name}: range {rng!r} runs backwards")
        else:
            a = _value(rng, name, low, high, names)
            b = high if step_s else a  # "5/15" means from 5 to the end, every 15
        out.update(range(a, b + 1, step))
    return frozenset(out)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    t = text.strip().lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        raise ValueError(f"{name}: expected a number {low}-{high}" + (" or a name" if names else "")
                         + f", found {text!r}")
    v = int(t)
    if not low <= v <= high:
        raise ValueError(f"{name}: {v} is outside {low}-{high}")
    return v
