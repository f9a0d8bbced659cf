"""AQuaSurF (dissertation ch. 6): activation-function search on a surrogate space.

Modules: ``space`` (the Table A.3 / A.4.3 search spaces, enumerated and de-duplicated by
outputs), ``features`` (output features, the eq. 6.16 / 6.17 distances and the UMAP
embedding of §6.5), ``fim`` (Fisher-information eigenvalues via K-FAC, §6.2), ``database``
(:class:`FunctionDatabase`: the workflow of the original package's database for a user's own
training script -- populate, FIM features from several processes, suggest, report).
"""

# the Act-Bench table reader is light (no TensorFlow): importable from the package
from .benchmark import Benchmark, load_benchmark  # noqa: E402,F401

__all__ = ["Benchmark", "load_benchmark", "FunctionDatabase"]


def __getattr__(name):
    # the database needs the operator registry (TensorFlow): loaded on first use
    if name == "FunctionDatabase":
        from .database import FunctionDatabase
        return FunctionDatabase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
