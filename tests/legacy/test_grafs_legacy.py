"""GRAFS under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1): the search cell, its
gradients, export, the shrinking schedule and short searches with the same checks as under
Keras 3, collected from the shared modules."""

from keras_actfn import backend
from test_grafs_cell import *  # noqa: F401,F403 - the shared checks
from test_grafs_schedule import *  # noqa: F401,F403
from test_grafs_search import *  # noqa: F401,F403
from test_grafs_settings import *  # noqa: F401,F403

# one operator at a time, the cell's derivative rules are the same TensorFlow code under
# either Keras (the whole-cell gradient check above covers the tf_keras layers): not twice
del test_unary_rule_is_the_operators_derivative, test_binary_rule_is_the_operators_derivative  # noqa: F821


def test_grafs_runs_on_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
