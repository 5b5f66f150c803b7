"""Catalogue text made safe to show: no terminal escape sequences, no spreadsheet formulas."""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["csv_cell", "json_safe", "terminal"]

# C0 and C1 control characters (ESC starts colour, cursor and OSC sequences such as window
# titles and hyperlinks); tab is kept as a space, newlines would break the table.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal(text: str | None) -> str:
    """`text` with every control character shown as a visible escape (ESC -> \\x1b)."""
    if not text:
        return ""
    return _CONTROL.sub(lambda m: " " if m.group() == "\t" else f"\\x{ord(m.group()):02x}",
                        text)


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
