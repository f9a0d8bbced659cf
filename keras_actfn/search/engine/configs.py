"""The one "refuse to resume with another config" check of the engine and the methods.

A search that resumes from what it wrote (a :class:`~keras_actfn.search.engine.store.Store`
run, a GRAFS checkpoint folder) first compares the configuration it was started with to the
one it is asked to run now. :func:`config_differences` finds the keys that differ and
:func:`describe_differences` writes one line per key; each caller wraps the lines in its own
error (:class:`~keras_actfn.search.engine.store.StoreConfigError`,
:class:`~keras_actfn.search.grafs.search.CheckpointError`), which names the fix.
"""

from __future__ import annotations

import json

__all__ = ["ABSENT", "flatten_config", "config_differences", "describe_differences"]

#: how :func:`config_differences` shows a key present on one side only (by default)
ABSENT = "<absent>"


def flatten_config(value, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves (an empty or a
    non-dict config is one leaf, ``"(config)"``)."""
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(flatten_config(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(config)": value}


def config_differences(stored, requested, absent=ABSENT) -> dict:
    """The keys whose values differ between two configs (nested dicts compared by dotted
    key, :func:`flatten_config`), sorted: ``{key: (stored value, requested value)}``.

    ``absent``: what a key on one side only reads as on the other. With the default,
    :data:`ABSENT`, such a key always differs (the store's check); any other value is
    compared like one -- ``absent=None`` makes a missing key equal to a ``None`` value, so
    a setting added later with the default ``None`` still matches a config written before
    it existed (GRAFS checkpoints).
    """
    old, new = flatten_config(stored), flatten_config(requested)
    differences = {}
    for key in sorted(set(old) | set(new)):
        one_side = (key in old) != (key in new)
        pair = (old.get(key, absent), new.get(key, absent))
        if (one_side and absent is ABSENT) or pair[0] != pair[1]:
            differences[key] = pair
    return differences


def _json_text(value):
    return value if value is ABSENT else json.dumps(value)


def describe_differences(differences: dict, stored: str = "stored",
                         requested: str = "requested", show=_json_text,
                         limit: int | None = None) -> list[str]:
    """One line per key of :func:`config_differences`' result,
    ``"<key>: <stored> <old>, <requested> <new>"`` with the values written by ``show``
    (default: JSON, :data:`ABSENT` as it is); past ``limit`` lines, one line counts the
    rest."""
    lines = [f"{key}: {stored} {show(a)}, {requested} {show(b)}"
             for key, (a, b) in differences.items()]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines
