"""Named activation functions from the seeds, as text that :func:`keras_actfn.parse` reads.

``BASELINE_FUNCTIONS`` are the fixed baselines of dissertation §4.7 (the learnable ones —
PReLU, PSwish, APL, PAU, SPLASH — are layers in :mod:`keras_actfn.layers.baselines`); the
eight functions an AQuaSurF search on a new task starts from are another set,
:data:`keras_actfn.search.aquasurf.surrogate.AQUASURF_START_FUNCTIONS`.
``DISCOVERED_FUNCTIONS`` are functions PANGAEA discovered (Table 4.2), keyed by a short name,
with the architecture they were specialized for.
"""

BASELINE_FUNCTIONS = {
    "relu": "relu(x)",
    "elish": "elish(x)",
    "elu": "elu(x)",
    "gelu": "gelu_tanh(x)",  # §4.7 uses the tanh approximation; "gelu(x)" is exact
    "hard_sigmoid": "hard_sigmoid(x)",
    "leaky_relu": "leaky_relu(x)",
    "mish": "mish(x)",
    "selu": "selu(x)",
    "sigmoid": "sigmoid(x)",
    "softplus": "softplus(x)",
    "softsign": "softsign(x)",
    "swish": "swish(x)",
    "tanh": "tanh(x)",
}

# Table 4.2 (CIFAR-100): specialized and general functions found by PANGAEA.
DISCOVERED_FUNCTIONS = {
    "wrn_log_sigmoid_arcsinh": ("log(sigmoid(alpha*x)) * beta*arcsinh(x)", "WRN-10-4"),
    "wrn_neg_swish_swish": ("-swish(swish(alpha*x))", "WRN-10-4"),
    "resnet_v1_linear_log_sigmoid": ("alpha*x - beta*log(sigmoid(gamma*x))", "ResNet-v1-56"),
    "resnet_v1_max_swish_0": ("max(swish(x), 0)", "ResNet-v1-56"),
    "resnet_v2_softplus_elu": ("softplus(elu(x))", "ResNet-v2-56"),
    "resnet_v2_min_log_sigmoid": ("min(log(sigmoid(x)), alpha*log(sigmoid(beta*x)))",
                                  "ResNet-v2-56"),
    "general_max_swish_log_sigmoid": ("max(swish(x), alpha*log(sigmoid(relu(x))))", "general"),
    "general_min_swish_elu": ("min(swish(x), alpha*elu(relu(beta*x)))", "general"),
    "general_log_sigmoid": ("log(sigmoid(x))", "general"),
}
