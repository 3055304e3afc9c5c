"""Quick add: one line such as ``Call Ann tomorrow 5pm !high #family`` read into the fields of a
new task (``POST /tasks/parse``; nothing is written).

- ``!high``, ``!medium``, ``!low`` (or ``!1``, ``!2``, ``!3``, 1 = high), case-insensitive, as a
  word of its own: the priority (the first one counts; later ones stay in the title).
- ``#tag`` (up to the next space): a tag, normalised like task tags (trimmed, lower-cased, NFC);
  at most 20, each 1..50 characters; a longer one stays in the title.
- The date phrase is found by ``dateparser`` (``dateparser.search.search_dates``, English only,
  dates preferred in the future, relative to now in the user's time zone); the first phrase that
  names a day or a time counts. A phrase that names only a month or a year ("may", "march",
  "1234") is refused: in task titles those are almost always ordinary words or numbers.
  A day without a time ("friday", "dec 24", "in 3 days", "next week") makes an all-day task; a
  time ("tomorrow 5pm", "friday 9am", "tonight") a timed one.

Time zones: dateparser 1.5 attaches the UTC offset of its reference time to every result, so a
result on the other side of a DST change comes back an hour off ("tomorrow 9am" read on
2026-03-07 in New York gives -05:00 instead of -04:00). It is therefore asked for wall-clock time
(naive, relative to the naive local now) and the zone is attached here with :mod:`zoneinfo`. A
wall-clock time that a DST change skips or repeats resolves like ``fold=0`` (the offset before
the change); relative hours ("in 3 hours") count wall-clock hours.

The clock is :func:`clock`, looked up on each call, so that tests can fix "now".

Parsing is CPU work (1-5 ms; the first call of a process loads dateparser's language data, about
half a second): the endpoint runs it in the thread pool, one call at a time per process
(dateparser's search keeps module-level state and does not say it is thread-safe).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dateparser.date import DateDataParser
from dateparser.search import search_dates

from taskhub.core.timeutil import utcnow
from taskhub.core.timezones import FIRST_DAY, LAST_DAY, end_of_day, zone
from taskhub.tasks.schemas import QuickAddPart, QuickAddResult, normalize_tag

_PRIORITY = re.compile(r"(?<!\S)!(high|medium|low|1|2|3)(?!\S)", re.IGNORECASE)
_PRIORITY_NAMES = {"1": "high", "2": "medium", "3": "low"}
_TAG = re.compile(r"(?<!\S)#(\S+)")
_MAX_TAGS, _MAX_TAG_LENGTH = 20, 50
_LANGUAGES = ["en"]
_DAY_PERIODS = frozenset({"day", "week"})
_TIME_PERIODS = frozenset({"time", "part_of_day"})
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\S+")
_TIME_OR_ORDINAL = re.compile(r"\d{1,2}(?::\d{2})?(?:am|pm|a\.m\.|p\.m\.|h)|\d{1,2}(?:st|nd|rd|th)", re.I | re.ASCII)
# A phrase must name a day, a month, a unit of time or a clock time: dateparser alone also reads
# "2 t20" or "400" as dates.
_DATE_SIGNAL = re.compile(
    r"""\b(?:today|tomorrow|tonight|yesterday|noon|midnight|morning|afternoon|evening|night|weekend|fortnight
    |mon|monday|tue|tues|tuesday|wed|wednesday|thu|thur|thurs|thursday|fri|friday|sat|saturday|sun|sunday
    |jan|january|feb|february|mar|march|apr|april|may|jun|june|jul|july|aug|august|sep|sept|september
    |oct|october|nov|november|dec|december|days?|weeks?|months?|years?|hours?|minutes?|mins?)\b
    |\d(?:am|pm|a\.m\.|p\.m\.)|\d\s(?:am|pm|a\.m\.|p\.m\.)|\d:\d\d|\d{4}-\d\d-\d\d|\d[./]\d""",
    re.I | re.X | re.ASCII,
)
_REFUSED_PHRASES = frozenset({"now"})  # "Call mom now" is a title, not a due date
_DATEPARSER = threading.Lock()


def clock() -> datetime:
    """The current time (aware, UTC) quick add reads relative dates from."""
    return utcnow()


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int


def _due_phrase(text: str, taken: list[_Span], time_zone: str, now: datetime) -> tuple[_Span, datetime | date] | None:
    """The first date phrase of ``text`` outside ``taken``: its span and a date (all-day) or an
    aware UTC datetime (timed)."""
    # The text without the priority and tag parts, and without codes of letters and digits
    # ("LH400", "t20": dateparser reads some as dates and gives up on whole texts for others),
    # with a map back to offsets in ``text``.
    hidden = taken + [_Span(m.start(), m.end()) for m in _WORD.finditer(text) if _is_code(m.group())]
    kept = [i for i in range(len(text)) if not any(s.start <= i < s.end for s in hidden)]
    rest = "".join(text[i] for i in kept)
    local_now = now.astimezone(zone(time_zone)).replace(tzinfo=None)
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": local_now, "RETURN_TIME_AS_PERIOD": True}
    found = search_dates(rest, languages=_LANGUAGES, settings=settings) or []
    periods = DateDataParser(languages=_LANGUAGES, settings=settings)
    cursor = 0
    for phrase, when in found:
        # search_dates returns the phrase with its spaces collapsed: find it again word by word.
        words = phrase.split()
        match = re.compile(r"\s+".join(map(re.escape, words)), re.IGNORECASE).search(rest, cursor) if words else None
        if match is None:
            continue
        cursor = match.end()
        if phrase.strip().lower() in _REFUSED_PHRASES:
            continue
        start, end, period = _without_stray_numbers(rest, match.start(), match.end(), periods)
        if not _DATE_SIGNAL.search(rest[start:end]):
            continue
        span = _Span(kept[start], kept[end - 1] + 1)
        if period in _DAY_PERIODS:
            day = when.date()
            if FIRST_DAY <= day <= LAST_DAY:
                return span, day
        elif period in _TIME_PERIODS:
            try:
                return span, when.replace(tzinfo=zone(time_zone)).astimezone(UTC)
            except OverflowError:  # a time in year 1 or 9999 whose UTC instant leaves the calendar
                continue
    return None


def _is_code(word: str) -> bool:
    """A word of letters and digits that is no clock time or ordinal ("LH400", "t20", "A4")."""
    word = word.strip(".,;:!?()[]\"'")
    has_digit = any(c.isdigit() for c in word)
    has_letter = any(c.isalpha() for c in word)
    return has_digit and has_letter and not _TIME_OR_ORDINAL.fullmatch(word)


def _without_stray_numbers(rest: str, start: int, end: int, periods: DateDataParser) -> tuple[int, int, str | None]:
    """``(start, end, period)``: ``rest[start:end]`` without a bare number at either edge when the
    phrase means the same without it (dateparser reads "read 1984 tomorrow" as the phrase "1984
    tomorrow"), and the phrase's dateparser period ("day", "time", ...), the same for both."""
    whole = periods.get_date_data(rest[start:end])
    while True:
        words = list(_WORD.finditer(rest, start, end))
        if len(words) < 2:
            return start, end, whole.period
        for edge, keep in ((words[0], (words[1].start(), end)), (words[-1], (start, words[-2].end()))):
            if edge.group().isdigit():
                shorter = periods.get_date_data(rest[keep[0] : keep[1]])
                if (shorter.date_obj, shorter.period) == (whole.date_obj, whole.period):
                    start, end = keep
                    break
        else:
            return start, end, whole.period


def parse(text: str, time_zone: str, now: datetime) -> QuickAddResult:
    """Read ``text`` into task fields, relative to ``now`` (aware) in ``time_zone`` (IANA name).

    Offsets in the parts count code points of ``text``. Never raises for any text: what is not
    recognised stays in the title.
    """
    parts: list[QuickAddPart] = []
    taken: list[_Span] = []
    priority: str | None = None
    for match in _PRIORITY.finditer(text):
        if priority is None:
            priority = _PRIORITY_NAMES.get(match.group(1), match.group(1).lower())
            parts.append(_part("priority", text, match.start(), match.end(), priority))
            taken.append(_Span(match.start(), match.end()))
    tags: list[str] = []
    for match in _TAG.finditer(text):
        tag = normalize_tag(match.group(1))
        if not 1 <= len(tag) <= _MAX_TAG_LENGTH or len(tags) >= _MAX_TAGS:
            continue
        if tag not in tags:
            tags.append(tag)
        parts.append(_part("tag", text, match.start(), match.end(), tag))
        taken.append(_Span(match.start(), match.end()))
    due_date: datetime | None = None
    due_on: date | None = None
    with _DATEPARSER:
        found = _due_phrase(text, taken, time_zone, now)
    if found is not None:
        span, when = found
        if isinstance(when, datetime):
            due_date = when
            value = when.isoformat().replace("+00:00", "Z")
        else:
            due_on, due_date = when, end_of_day(when, time_zone)
            value = when.isoformat()
        parts.append(_part("due", text, span.start, span.end, value))
        taken.append(span)
    parts.sort(key=lambda p: p.start)
    title = "".join(ch for i, ch in enumerate(text) if not any(s.start <= i < s.end for s in taken))
    return QuickAddResult(
        title=_SPACES.sub(" ", title).strip(),
        due_date=due_date,
        all_day=due_on is not None,
        due_on=due_on,
        priority=priority,
        tags=tags,
        parts=parts,
        time_zone=time_zone,
    )


def _part(kind: str, text: str, start: int, end: int, value: str) -> QuickAddPart:
    return QuickAddPart.model_validate(
        {"kind": kind, "text": text[start:end], "start": start, "end": end, "value": value}
    )
