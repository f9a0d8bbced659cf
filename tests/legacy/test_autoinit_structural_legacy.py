"""The weight-free AutoInit rules under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1).

The checks are those of tests/test_autoinit_structural.py (each rule against the real
tf_keras layer run in training mode on Gaussian input), collected here from the shared
module so the two Kerases are held to the same numbers.
"""

from keras_actfn import backend
from test_autoinit_structural import *  # noqa: F401,F403 - the shared checks


def test_backend_is_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
