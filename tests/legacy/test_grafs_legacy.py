"""GRAFS under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1): the search cell, its
gradients, export, the shrinking schedule and short searches with the same checks as under
Keras 3, collected from the shared modules."""

from keras_actfn import backend
from test_grafs_cell import *  # noqa: F401,F403 - the shared checks
from test_grafs_schedule import *  # noqa: F401,F403
from test_grafs_search import *  # noqa: F401,F403
from test_grafs_settings import *  # noqa: F401,F403

# tests marked single_backend (the per-operator derivative rules, the data split, preset
# arithmetic, the command line) are the same under either Keras: tests/conftest.py leaves
# them out here; the whole-cell gradient check and the smoke search cover the tf_keras layers


def test_grafs_runs_on_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
