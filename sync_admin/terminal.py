"""What reaches a terminal: text only, never control sequences or markup, whatever a value contains.

Reasons, actors, account values and flag names come from the database, and a person or an application can put
anything in them: an escape sequence that recolours or clears the screen, a newline that fakes a second status
line, a right-to-left override that reverses what follows, or rich markup such as "[red]". `printable` shows
every such character as an escape (`\\x1b`, `\\n`, `\\u202e`); `SafeConsole` prints with markup off and applies
it to every string it is given. JSON output escapes control characters itself, markdown output escapes its own.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console

# C0 controls (newline and tab included: one value, one line), DEL, C1 controls, the line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """VALUE as one line of plain text, every control character shown as an escape."""
    return _UNPRINTABLE.sub(_escaped, str(value))


class SafeConsole(Console):
    """A rich console for untrusted text: markup off, control characters escaped in every string printed.

    Print one line per call: a newline inside a string is printed as `\\n`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, highlight=False, **kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)
