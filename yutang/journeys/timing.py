"""Wait arithmetic in the brand's time zone.

- Days are calendar days on the wall clock: "wait 1 day" from 10:00 ends at 10:00 the next
  day even across a DST change (23 or 25 real hours); hours and minutes are real elapsed time.
- "Wait until HH:MM" ends at the next HH:MM at or after the moment the step is reached: reached
  at 09:30 it waits until 09:00 tomorrow; reached at exactly 09:00 it continues at once.
  With weekdays it ends at the first such time on one of those days (Monday = 0); schedules
  may name days of the month instead (`day_matches`).
- A wall time skipped by a DST jump (02:30 on a spring-forward night) happens at the same
  offset as before the jump, i.e. one hour later on the new clock; a repeated wall time
  (autumn) means its first occurrence.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo


def _local(moment: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return moment.astimezone(tz)


def _at(day: dt.date, hour: int, minute: int, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz, fold=0).astimezone(
        dt.UTC
    )


def after(
    base: dt.datetime, tz: zoneinfo.ZoneInfo, *, days: int = 0, hours: int = 0, minutes: int = 0
) -> dt.datetime:
    moment = base.astimezone(dt.UTC)
    if days:
        local = _local(moment, tz)
        day = local.date() + dt.timedelta(days=days)
        wall = dt.datetime(
            day.year, day.month, day.day, local.hour, local.minute, local.second,
            local.microsecond, tzinfo=tz,
        )  # fmt: skip
        moment = wall.astimezone(dt.UTC)
    return moment + dt.timedelta(hours=hours, minutes=minutes)


def parse_time(text: str) -> tuple[int, int]:
    hour, minute = text.split(":")
    return int(hour), int(minute)


def day_matches(
    day: dt.date, weekdays: list[int] | None = None, monthdays: list[int] | None = None
) -> bool:
    """Whether a schedule runs on `day`: one of the weekdays (Monday = 0), or one of the
    days of the month — a day past the month's end means its last day (31: month end)."""
    if monthdays:
        if day.day in monthdays:
            return True
        last = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        return day == last and any(wanted > day.day for wanted in monthdays)
    return not weekdays or day.weekday() in weekdays


def next_time_of_day(
    base: dt.datetime,
    tz: zoneinfo.ZoneInfo,
    time: str,
    weekdays: list[int] | None = None,
    monthdays: list[int] | None = None,
) -> dt.datetime:
    hour, minute = parse_time(time)
    local_day = _local(base, tz).date()
    for offset in range(0, 63 if monthdays else 15):
        day = local_day + dt.timedelta(days=offset)
        if not day_matches(day, weekdays, monthdays):
            continue
        candidate = _at(day, hour, minute, tz)
        if candidate >= base:
            return candidate
    raise AssertionError("a weekday matches within two weeks, a day of the month within two")


def slots_between(
    start: dt.datetime,
    end: dt.datetime,
    tz: zoneinfo.ZoneInfo,
    time: str,
    weekdays: list[int] | None = None,
    limit: int = 400,
    monthdays: list[int] | None = None,
) -> list[dt.datetime]:
    """Occurrences of HH:MM (on the weekdays, or the days of the month) in (start, end]."""
    hour, minute = parse_time(time)
    found: list[dt.datetime] = []
    day = _local(start, tz).date()
    last = _local(end, tz).date()
    while day <= last and len(found) < limit:
        if day_matches(day, weekdays, monthdays):
            moment = _at(day, hour, minute, tz)
            if start < moment <= end:
                found.append(moment)
        day += dt.timedelta(days=1)
    return found
