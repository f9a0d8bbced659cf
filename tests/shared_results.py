"""Expensive fixture results computed once per test run and shared by the pytest-xdist workers.

A module-scoped fixture runs once per worker that runs a test of its module, and
``--dist worksteal`` may split a module between the two workers: a fixture that runs a whole
search (the real-Ray scenarios, the evidence script's smoke run) then runs twice, each copy
at half speed beside the other. :func:`run_once` computes it in the first worker that asks,
under a file lock in the run's shared temporary folder; the other worker waits for it and
reads the same result (it would otherwise spend the same time computing it again).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


def shared_root(tmp_path_factory) -> Path:
    """The temporary folder of this pytest run that every xdist worker sees (a worker's own
    base folder is ``<run folder>/popen-gwN``); the base folder without xdist."""
    base = Path(tmp_path_factory.getbasetemp())
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def run_once(tmp_path_factory, name: str, compute):
    """``(folder, result)``: ``compute(folder)`` run once in this pytest run for ``name``,
    its result JSON-encoded in ``folder``; every later call, from any worker, returns the
    folder and the decoded result. A ``compute`` that raises writes nothing: the next caller
    tries again (and fails the same way, in its own test)."""
    root = shared_root(tmp_path_factory)
    folder = root / f"shared-{name}"
    done = folder / "result.json"
    with open(root / f"shared-{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return folder, json.loads(done.read_text(encoding="utf-8"))
        folder.mkdir(exist_ok=True)
        result = compute(folder)
        part = folder / "result.json.part"
        part.write_text(json.dumps(result), encoding="utf-8")
        os.replace(part, done)
        return folder, result
