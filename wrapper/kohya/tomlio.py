"""Write TOML that the `toml` package (0.10.2, what sd-scripts reads with) parses back exactly.

`toml.dumps` itself is not used: it cannot write some strings back faithfully. This writer covers
exactly the shapes the configs use (tables, arrays of tables, scalars, homogeneous arrays) and
proves each file by parsing it back with `toml` before anything is written.
"""

from __future__ import annotations

import math
from typing import Any

from wrapper.errors import ConfigError

_ESCAPES = {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escaped(text: str, specials: str) -> str:
    out = []
    for ch in text:
        if ch in specials:
            out.append(f"\\u{ord(ch):04x}")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _candidates(text: str) -> list[str]:
    """Spellings of one string, most readable first. toml 0.10.2 misreads some of them: a lone
    escaped quote comes back empty, and inside arrays it splits on raw commas and brackets before
    unescaping; so several spellings are tried and the first that reads back is kept."""
    candidates = [f'"{_escaped(text, chr(34))}"', f'"{_escaped(text, chr(34) + ",[]#")}"',
                  f'"{_escaped(text, chr(34) + chr(92) + ",[]#")}"']  # a backslash as \u005c: "\u001f\\u"
    if not any(c in text for c in "'\n\r") and all(ord(c) >= 0x20 and ord(c) != 0x7F or c == "\t" for c in text):
        candidates.append(f"'{text}'")
    candidates.append(f'"""{_escaped(text, chr(34) + ",[]#")}"""')
    return candidates


def quote(text: str, *, in_array: bool = False) -> str:
    """A TOML string that toml 0.10.2 reads back as exactly `text` (alone or inside an array)."""
    import toml

    for candidate in _candidates(text):
        try:
            back = toml.loads(f"v = [{candidate}]" if in_array else f"v = {candidate}")["v"]
        except Exception:  # toml 0.10.2 also fails with IndexError/ValueError on some valid TOML
            continue
        if back == ([text] if in_array else text):
            return candidate
    raise ConfigError(f"the string {text!r} cannot be written so that toml 0.10.2 reads it back unchanged")


def _value(value: Any, where: str, *, in_array: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: TOML for sd-scripts cannot hold NaN or infinity")
        return repr(value)
    if isinstance(value, str):
        return quote(value, in_array=in_array)
    if isinstance(value, list | tuple):
        kinds = {type(v) for v in value}
        if len(kinds) > 1:
            raise ConfigError(f"{where} = {value!r}: toml 0.10.2 needs arrays of one type")
        return "[" + ", ".join(_value(v, where, in_array=True) for v in value) + "]"
    raise ConfigError(f"{where} = {value!r}: cannot be written as TOML")


def _key(key: str) -> str:
    # toml 0.10.2 does not unescape quoted keys, so only bare keys are written (all sd-scripts keys are)
    if not key or not all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        raise ConfigError(f"key {key!r}: sd-scripts' configs need plain keys (letters, digits, _ and -)")
    return key


def _table(lines: list[str], path: str, table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_tables(v)}
    nested = {k: v for k, v in table.items() if _is_tables(v)}
    for key, value in scalars.items():
        if value is None:
            continue
        lines.append(f"{_key(key)} = {_value(value, f'{path}.{key}' if path else key)}")
    for key, value in nested.items():
        sub = f"{path}.{_key(key)}" if path else _key(key)
        if isinstance(value, dict):
            lines += ["", f"[{sub}]"]
            _table(lines, sub, value)
        else:
            for item in value:
                lines += ["", f"[[{sub}]]"]
                _table(lines, sub, item)


def _is_tables(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def dumps(data: dict[str, Any]) -> str:
    """TOML text for `data`, checked to parse back to the same values with toml 0.10.2."""
    lines: list[str] = []
    _table(lines, "", data)
    text = "\n".join(lines).lstrip("\n") + "\n"
    import toml

    back = toml.loads(text)
    if not _same(back, _without_none(data)):
        raise ConfigError(f"internal error: TOML did not read back as written:\n{text}")
    return text


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (1 and 1.0 differ here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _without_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list | tuple):
        return [_without_none(v) for v in data]
    return data
