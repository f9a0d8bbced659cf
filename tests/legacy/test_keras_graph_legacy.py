"""keras_actfn.keras_graph under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1).

The checks are those of tests/test_keras_graph.py, collected here from the shared module so
that the one graph reader is held to the same facts in both Kerases.
"""

from keras_actfn import backend
from test_keras_graph import *  # noqa: F401,F403 - the shared checks


def test_backend_is_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
