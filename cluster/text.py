"""Text from outside (a node's stderr, rocm-smi keys, kernel lines, an LLM's reasoning, a history file)
made safe to print and log: control characters are shown, never executed by the terminal.

ESC, BEL, CSI and the other C0/C1 controls (and DEL) become visible escapes such as `\\x1b`; newlines and
tabs stay where the caller keeps lines (`keep_lines`). Rich markup is a separate hazard: untrusted text
is handed to rich only as `rich.text.Text` or with markup off, so `[/x]` or `[drm:...]` stays literal.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_AND_LINES = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: object, *, keep_lines: bool = True, limit: int | None = None) -> str:
    """`text` with control characters escaped (newlines and tabs kept unless keep_lines=False), cut to
    `limit` characters with the cut said."""
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[:limit] + f" [... {len(value) - limit} characters cut]"
    return (_CONTROLS if keep_lines else _CONTROLS_AND_LINES).sub(_escape, value)


def one_line(text: object, limit: int | None = 500) -> str:
    """For a single line of output: every control character, newlines included, escaped."""
    return printable(text, keep_lines=False, limit=limit)
