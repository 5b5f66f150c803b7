"""Catalogue text made safe to show: no terminal escape sequences, no spreadsheet formulas."""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["csv_cell", "json_safe", "one_line", "terminal"]

# C0 and C1 control characters (ESC starts colour, cursor and OSC sequences such as window
# titles and hyperlinks); tab is kept as a space, newlines would break the table. Also the
# bidirectional overrides and isolates (U+202E turns "gpj.exe" into "exe.jpg" on screen), and
# lone surrogates, which no terminal can encode.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                      "\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    char = m.group()
    if char == "\t":
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: str | None) -> str:
    """`text` with every control character shown as a visible escape (ESC -> \\x1b)."""
    if not text:
        return ""
    return _CONTROL.sub(_escape, text)


def one_line(text: object, limit: int = 300) -> str:
    """Text from elsewhere (a server's reason phrase, an exception) as one safe line: runs of
    whitespace become one space, controls are escaped, and it is cut at `limit` characters."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return terminal(flat)


def csv_cell(value: Any) -> Any:
    """A value a spreadsheet will show, never run: text starting with = + - @ (or a tab or
    carriage return before one) gets a leading apostrophe (OWASP's CSV-injection advice)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null, so the JSON printed is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
