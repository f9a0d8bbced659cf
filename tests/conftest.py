"""Test configuration.

Tests under ``tests/legacy`` need the legacy Keras (``tf_keras``), which must be chosen before
TensorFlow is imported, so they run in their own process: ``tests/test_legacy_suite.py``
starts ``python -m pytest tests/legacy`` with ``TF_USE_LEGACY_KERAS=1``. A Keras 3 process
collects everything but ``tests/legacy``; a legacy process collects only ``tests/legacy``.
"""

import os

LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "0") == "1"

collect_ignore = [] if LEGACY else ["legacy"]
collect_ignore_glob = ["test_*.py"] if LEGACY else []


#: the longest single tests, started first so that the parallel run (pytest-xdist, -n 2 in
#: setup.cfg) does not end waiting on one of them
FIRST = ("test_legacy_suite.py",)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``keras3_only`` (shared modules re-collected by tests/legacy) check
    features tf_keras does not have, tests marked ``single_backend`` check logic that is
    the same under either Keras: the legacy process does not collect them. In the Keras 3
    process the files of :data:`FIRST` go first."""
    if not LEGACY:
        items.sort(key=lambda item: item.nodeid.split("::")[0].rsplit("/", 1)[-1] not in FIRST)
        return
    def once(item):
        return any(item.get_closest_marker(m) for m in ("keras3_only", "single_backend"))

    keep = [item for item in items if not once(item)]
    dropped = [item for item in items if once(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
