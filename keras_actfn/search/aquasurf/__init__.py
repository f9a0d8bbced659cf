"""AQuaSurF (dissertation ch. 6): activation-function search on a surrogate space.

Modules: ``space`` (the Table A.3 / A.4.3 search spaces, enumerated and de-duplicated by
outputs), ``features`` (output features, the eq. 6.16 / 6.17 distances and the UMAP
embedding of §6.5), ``fim`` (Fisher-information eigenvalues via K-FAC, §6.2).
"""

# the Act-Bench table reader is light (no TensorFlow): importable from the package
from .benchmark import Benchmark, load_benchmark  # noqa: E402,F401

__all__ = ["Benchmark", "load_benchmark"]
