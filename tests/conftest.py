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
