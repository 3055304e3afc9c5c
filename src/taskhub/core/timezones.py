"""IANA time zones and calendar days: the rules behind ``users.time_zone`` and all-day tasks.

- A time zone is an IANA name that :mod:`zoneinfo` knows (``Europe/Berlin``, ``UTC``), checked
  against :func:`zoneinfo.available_timezones` (the ``tzdata`` package ships the database, so the
  answer does not depend on the host's ``/usr/share/zoneinfo``). Names are case-sensitive, as in
  the database; ``localtime``, ``posixrules`` and file paths are not names.
- A calendar day *ends* at the first instant of the next day in that zone; an all-day task's
  ``due_date`` is the last microsecond before it (:func:`end_of_day`). Computed from the calendar,
  never as "start + 24 h": a day with a DST change is 23 or 25 hours long. Where the next day
  starts in a gap (clocks jump over midnight) the first instant that exists is used.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, Field

from taskhub.core.validators import ExactText

MAX_TIME_ZONE_LENGTH = 64
FIRST_DAY = date(1, 1, 2)
"""The earliest calendar day an all-day task may have (its end stays within year 1 in every zone)."""
LAST_DAY = date(9999, 12, 30)
"""The latest calendar day an all-day task may have (its end stays within year 9999 in every zone)."""
_MICROSECOND = timedelta(microseconds=1)


# Files that zoneinfo finds on some hosts but that name no zone of the database: their meaning
# would depend on the machine that serves the request.
_HOST_DEPENDENT = frozenset({"localtime", "posixrules"})


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(available_timezones()) - _HOST_DEPENDENT


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` of a name that :func:`check_time_zone` accepted (cached)."""
    return ZoneInfo(name)


def check_time_zone(value: str) -> str:
    """``value`` when it is a known IANA time-zone name. Raises: ValueError naming the rule."""
    if value not in _names():
        raise ValueError("must be an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    return value


TimeZoneName = Annotated[
    ExactText,
    Field(
        min_length=1,
        max_length=MAX_TIME_ZONE_LENGTH,
        description="IANA time zone name (e.g. Europe/Berlin)",
        examples=["Europe/Berlin"],
    ),
    AfterValidator(check_time_zone),
]
"""A request field holding an IANA time-zone name (422 naming the field otherwise)."""


def end_of_day(day: date, time_zone: str) -> datetime:
    """The last microsecond of calendar day ``day`` in ``time_zone``, in UTC: the instant before
    the next day's first instant there. ``day`` must lie in ``FIRST_DAY..LAST_DAY``."""
    tz = zone(time_zone)
    # fold=0: where midnight is skipped (a DST gap), zoneinfo reads it with the offset in force
    # before the gap, which names the first instant of the new day.
    next_start = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return next_start.astimezone(UTC) - _MICROSECOND


def local_day(instant: datetime, time_zone: str) -> date:
    """The calendar day in ``time_zone`` that aware ``instant`` falls on."""
    return instant.astimezone(zone(time_zone)).date()
