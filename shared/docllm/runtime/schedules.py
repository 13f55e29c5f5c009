"""EventBridge Scheduler expressions: when a schedule fires next (pure).

``rate(N minute|minutes|hour|hours|day|days)``, ``cron(minutes hours day-of-month month
day-of-week year)`` with ``* ? , - /`` and month/day names (day-of-week 1-7 is SUN-SAT, as AWS
counts; one of the two day fields is ``?``), and ``at(yyyy-mm-ddThh:mm:ss)``, in the schedule's
time zone. ``L``, ``W`` and ``#`` are refused with the expression named.

A rate schedule fires first one period after the local platform starts (EventBridge Scheduler
starts counting when the schedule is created); ``scale`` shrinks its period (``DOCLLM_SCHEDULE_SCALE``
in tests: 0.01 turns 5 minutes into 3 seconds). Cron and one-time schedules follow the clock.

>>> s = parse_schedule("rate(5 minutes)")
>>> s.next_after(1000.0, started=1000.0) - 1000.0
300.0
>>> s = parse_schedule("cron(0/15 * * * ? *)")
>>> s.next_after(0.0, started=0.0)
900.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from docllm.exceptions import ConfigurationError

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
#: (label, low, high, names) of each cron field, in order.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule expression."""

    expression: str
    timezone: str = "UTC"
    rate_s: float | None = None
    cron: tuple[frozenset[int] | None, ...] | None = None  # None for a "?" day field
    at: datetime | None = None

    def next_after(self, now: float, *, started: float, scale: float = 1.0) -> float | None:
        """Epoch seconds of the first firing after ``now`` (None: never again).

        ``started``: when the schedule began counting (rate schedules fire at ``started + k * period``).
        """
        if self.rate_s is not None:
            period = self.rate_s * scale
            k = max(1, int((now - started) // period) + 1)
            return started + k * period
        tz = _zone(self.timezone, self.expression)
        local_now = datetime.fromtimestamp(now, tz).replace(tzinfo=None)
        if self.at is not None:
            return self.at.replace(tzinfo=tz).timestamp() if self.at > local_now else None
        assert self.cron is not None
        found = _cron_next(self.cron, local_now)
        return found.replace(tzinfo=tz).timestamp() if found is not None else None


def parse_schedule(expression: str, timezone: str = "UTC") -> Schedule:
    """Parse ``rate(…)``, ``cron(…)`` or ``at(…)``; ConfigurationError names what is wrong."""
    text = expression.strip()
    _zone(timezone, text)
    if m := _RATE.match(text):
        value = int(m.group(1))
        if value <= 0:
            raise ConfigurationError(f"schedule {expression!r}: the rate must be positive")
        return Schedule(text, timezone, rate_s=float(value * _UNIT_S[m.group(2).rstrip("s")]))
    if m := _AT.match(text):
        return Schedule(text, timezone, at=datetime.fromisoformat(m.group(1)))
    if m := _CRON.match(text):
        parts = m.group(1).split()
        if len(parts) != 6:
            raise ConfigurationError(f"schedule {expression!r}: cron takes 6 fields (minutes … year)")
        if (parts[2] == "?") == (parts[4] == "?"):
            raise ConfigurationError(f"schedule {expression!r}: one of day-of-month and day-of-week must be '?'")
        fields = tuple(
            None if part == "?" else _cron_field(part, spec, expression)
            for part, spec in zip(parts, _FIELDS, strict=True)
        )
        return Schedule(text, timezone, cron=fields)
    raise ConfigurationError(f"schedule {expression!r}: expected rate(N unit), cron(6 fields) or at(timestamp)")


def _zone(timezone: str, expression: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigurationError(f"schedule {expression!r}: unknown time zone {timezone!r}") from e


def _cron_field(part: str, spec: tuple[str, int, int, dict[str, int]], expression: str) -> frozenset[int]:
    label, low, high, names = spec
    values: set[int] = set()
    for item in part.split(","):
        if any(c in item.upper() for c in ("L", "W", "#")) and not any(n in item.upper() for n in names):
            raise ConfigurationError(f"schedule {expression!r}: {label} {item!r}: L, W and # are not supported locally")
        base, _, step_text = item.partition("/")
        step = _number(step_text, names, expression, label) if step_text else 1
        if base in ("*", ""):
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(a, names, expression, label), _number(b, names, expression, label)
        else:
            first = _number(base, names, expression, label)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or step <= 0 or first > last:
            raise ConfigurationError(f"schedule {expression!r}: {label} {item!r} is out of {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, names: dict[str, int], expression: str, label: str) -> int:
    key = text.strip().upper()
    if key in names:
        return names[key]
    if not key.isdigit():
        raise ConfigurationError(f"schedule {expression!r}: {label} {text!r} is not a number")
    return int(key)


def _cron_next(fields: tuple[frozenset[int] | None, ...], now: datetime) -> datetime | None:
    minutes, hours, dom, months, dow, years = fields
    assert minutes is not None and hours is not None and months is not None and years is not None
    t = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    while t.year <= max(years):
        if t.year not in years:
            t = datetime(t.year + 1, 1, 1)
            continue
        if t.month not in months:
            t = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1)
            continue
        aws_dow = (t.weekday() + 1) % 7 + 1  # Python: Monday 0; AWS: Sunday 1
        if (dom is not None and t.day not in dom) or (dow is not None and aws_dow not in dow):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if t.hour not in hours:
            t = datetime(t.year, t.month, t.day, t.hour) + timedelta(hours=1)
            continue
        if t.minute not in minutes:
            t += timedelta(minutes=1)
            continue
        return t
    return None
