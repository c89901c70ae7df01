"""Durations on the command line: `30d`, `12h`, `90m`, `45s`, `2w` (a whole number and one unit)."""

from __future__ import annotations

import re
from datetime import timedelta

from sync_admin.errors import BadInput

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Six digits are more than any retention needs and keep the interval far from timedelta's limits.
_DURATION = re.compile(r"(?P<amount>[0-9]{1,6})(?P<unit>[wdhms])")


def parse(text: str, option: str = "duration") -> timedelta:
    """`30d` -> 30 days; BadInput (exit 2) for anything else, zero included (`m` is minutes, not months)."""
    match = _DURATION.fullmatch(text.strip().lower())
    amount = int(match["amount"]) if match else 0
    if not match or amount == 0:
        raise BadInput(
            f"{option} must be a positive whole number and a unit (w, d, h, m or s), like 30d, 12h or 90m; not {text!r}"
        )
    return timedelta(**{_UNITS[match["unit"]]: amount})


def describe(value: timedelta) -> str:
    """The largest unit (up to days) that divides the duration evenly: 30 days -> `30d`, 90 minutes -> `90m`."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
