"""AQuaSurF (dissertation ch. 6): activation-function search on a surrogate space.

Modules: ``space`` (the Table A.3 / A.4.3 search spaces, enumerated and de-duplicated by
outputs), ``features`` (output features, the eq. 6.16 / 6.17 distances and the UMAP
embedding of §6.5), ``fim`` (Fisher-information eigenvalues via K-FAC, §6.2), ``database``
(:class:`FunctionDatabase`: the workflow of the original package's database for a user's own
training script -- populate, FIM features from several processes, suggest, report),
``bench`` (building, replaying and plotting Act-Bench tables: ``keras-actfn bench``).
"""

from ..._lazy import lazy_exports

#: public name -> module; resolved on first use (the Act-Bench table reader is light, the
#: database and the bench workflows need the operator registry and TensorFlow)
_EXPORTS = {"Benchmark": ".benchmark", "load_benchmark": ".benchmark",
            "FunctionDatabase": ".database"}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
