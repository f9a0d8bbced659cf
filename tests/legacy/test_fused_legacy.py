"""Issue 20 under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1): the fused
CustomActivation (values and gradients equal to the unfused path, the fallbacks, the option
in configs and ``.keras`` files, a training step) and mixed_float16 (CustomActivation, the
GRAFS cell, AutoInit), with the same checks as under Keras 3, from the shared modules."""

from keras_actfn import backend
from test_fused_activation import *  # noqa: F401,F403 - the shared checks
from test_mixed_precision import *  # noqa: F401,F403


def test_fused_and_mixed_precision_run_on_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
