"""Flatten nested dicts to dotted keys and diff them: what differs between recipes or runs."""

from __future__ import annotations

from typing import Any


def flatten_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and other values stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_dict(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def flat_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ, with (old, new); a missing side is None."""
    a, b = flatten_dict(old), flatten_dict(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}
