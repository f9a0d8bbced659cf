"""Run the legacy-Keras tests (tests/legacy) in their own process with TF_USE_LEGACY_KERAS=1."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_legacy_suite_passes_in_its_own_process():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    # one process: this test already runs beside the other tests (pytest-xdist)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-n", "0", str(HERE / "legacy")], env=env, cwd=HERE.parent,
                          capture_output=True, text=True, timeout=1500)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"legacy suite failed:\n{tail}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
