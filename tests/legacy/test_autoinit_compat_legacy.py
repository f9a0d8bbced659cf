"""The published AutoInit API under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1).

The checks are those of tests/test_autoinit_compat.py (every README pattern of the original
package, custom estimators in its interface, constrain_weights, the visualizer's arguments,
recurrent heads and max pooling in band), collected here so both Kerases are held to the
same numbers. There, a Keras-2 JSON is refused by Keras 3 with a line naming
TF_USE_LEGACY_KERAS=1; here the same JSON loads and is initialized.
"""

from keras_actfn import backend
from test_autoinit_compat import *  # noqa: F401,F403 - the shared checks


def test_backend_is_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
