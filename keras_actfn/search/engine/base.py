"""The ask/tell contract every search algorithm follows, and the candidate it proposes.

A search algorithm never trains (DESIGN decision 4). It proposes :class:`Candidate` objects
with :meth:`SearchAlgorithm.ask` and learns their results from
:meth:`SearchAlgorithm.tell`; :func:`keras_actfn.search.engine.driver.run_search` runs the
evaluations (in-process, on a process pool or on Ray) and writes every candidate and every
result to the :class:`~keras_actfn.search.engine.store.Store` *before* the algorithm sees it, together
with the algorithm's :meth:`~SearchAlgorithm.state_dict`. A search killed at any moment
therefore resumes from the store: the driver restores the latest state and re-runs the
candidates that were asked but never finished.

Helpers for implementers: :func:`rng_state` / :func:`rng_from_state` put a NumPy generator
into a JSON-safe state dict and back; :func:`equivalence_key` is the key under which the
driver reuses the result of a numerically equivalent function; :func:`failure_record` builds
the record of a candidate that could not be evaluated at all.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import warnings

import numpy as np

from ...train.record import REASONS, EvaluationRecord

__all__ = ["Candidate", "SearchAlgorithm", "rng_state", "rng_from_state", "equivalence_key",
           "failure_record", "json_normalize"]


def json_normalize(value, what="value", allow_nan=False):
    """``value`` after a JSON round trip (tuples become lists, keys become strings).

    Raises ``TypeError`` naming ``what`` when the value is not JSON-safe. NaN and
    infinities are refused unless ``allow_nan`` (algorithm states may hold a ``-inf``
    fitness; configs and candidate meta may not, since NaN never compares equal). This
    checks and never converts; :func:`keras_actfn.train.record.json_safe` converts what
    must be written whatever it holds (records).
    """
    try:
        return json.loads(json.dumps(value, allow_nan=allow_nan, sort_keys=True))
    except (TypeError, ValueError) as err:
        numbers = "numbers" if allow_nan else "finite numbers"
        raise TypeError(f"{what} must be JSON-safe (dicts, lists, strings, {numbers}, "
                        f"booleans, None); {err}") from None


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One function proposed by a search algorithm.

    Attributes:
        text: canonical expression text (``str(parse(...))``) of the function to evaluate.
        parent: text of the function it was derived from (``None`` for a random or
            enumerated candidate). Crossover children name their first parent here and may
            put the others in ``meta``.
        mutation: the operation that made it (``"insert"``, ``"crossover"``...) or ``None``.
        generation: generation (or step) of the search that asked for it.
        meta: JSON-safe extras the algorithm wants back with the result. ``meta["seed"]``,
            when present, is the training seed for this candidate (reranking asks the same
            function with several seeds); otherwise the run's seed is used.

    ``meta`` is stored after a JSON round trip, so a candidate read back from the store
    compares equal to the one asked.
    """

    text: str
    parent: str | None = None
    mutation: str | None = None
    generation: int = 0
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise TypeError(f"Candidate.text must be non-empty expression text, got "
                            f"{self.text!r}")
        if self.parent is not None and not isinstance(self.parent, str):
            raise TypeError(f"Candidate.parent must be text or None, got {self.parent!r}")
        if self.mutation is not None and not isinstance(self.mutation, str):
            raise TypeError(f"Candidate.mutation must be a string or None, got "
                            f"{self.mutation!r}")
        if isinstance(self.generation, bool) or not isinstance(self.generation,
                                                                 (int, np.integer)):
            raise TypeError(f"Candidate.generation must be an int, got {self.generation!r}")
        if self.generation < 0:
            raise ValueError(f"Candidate.generation must be >= 0, got {self.generation}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"Candidate.meta must be a dict, got {type(self.meta).__name__}")
        object.__setattr__(self, "generation", int(self.generation))
        object.__setattr__(self, "meta", json_normalize(self.meta, "Candidate.meta"))

    def __hash__(self):  # meta is a dict; the other fields identify a candidate well enough
        return hash((self.text, self.parent, self.mutation, self.generation))

    def to_dict(self) -> dict:
        return {"text": self.text, "parent": self.parent, "mutation": self.mutation,
                "generation": self.generation, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: dict) -> "Candidate":
        unknown = sorted(set(data) - {"text", "parent", "mutation", "generation", "meta"})
        if unknown:
            raise ValueError(f"unknown Candidate field(s) {unknown}")
        return cls(**data)


class SearchAlgorithm(abc.ABC):
    """An ask/tell search: proposes candidates, learns from their records, never trains.

    The contract, which :func:`~keras_actfn.search.engine.driver.run_search` relies on:

    * ``ask()`` returns the next :class:`Candidate`, or ``None`` when it has nothing to
      propose *right now* (it waits for results, e.g. the end of a generation) or at all.
      ``ask`` may be called several times before any ``tell``: evolution is steady-state and
      asynchronous (dissertation B.2.2), so a free worker immediately gets the next
      candidate while others still train. Results may come back in any order.
    * ``tell(candidate, record)`` is called exactly once for every candidate ``ask``
      returned, with an :class:`~keras_actfn.train.record.EvaluationRecord` (``status``
      ``"failed"`` for a candidate that broke: failure is data, the search goes on). The
      candidate compares equal to the one asked (it may be a copy read back from the store).
      The record of a numerically equivalent function may be a reused copy
      (``record.info["reused_from"]`` is then set).
    * ``done()`` is true when the algorithm will propose nothing more (exhausted space,
      generations over). The driver then waits for outstanding results and stops.
    * ``state_dict()`` returns everything ``ask``/``tell``/``done`` depend on, JSON-safe:
      counters, population, outstanding candidates and the random generator's state
      (:func:`rng_state`); ``-inf``/NaN fitness values are fine there.
      ``load_state_dict(d)`` on a freshly built algorithm with the same ``config()`` must
      make it behave exactly as the one that produced ``d``. The driver
      saves the state after every ``ask`` and every ``tell``, in the same transaction as the
      candidate or result, which is what makes resuming exact.
    * ``config()`` returns what defines the search, JSON-safe: algorithm name,
      hyperparameters, seed, and the task/model/recipe it is for. A store refuses to resume
      a run whose config differs.

    ``metric`` names the record field the algorithm ranks by (see
    :meth:`EvaluationRecord.fitness`); the driver uses it for "best so far".
    """

    #: the record field fitness is read from (``EvaluationRecord.fitness(metric)``)
    metric: str = "validation_accuracy"

    @abc.abstractmethod
    def ask(self) -> Candidate | None:
        """The next candidate to evaluate, or ``None`` if there is none right now."""

    @abc.abstractmethod
    def tell(self, candidate: Candidate, record: EvaluationRecord) -> None:
        """Take the result of a candidate this algorithm asked."""

    @abc.abstractmethod
    def done(self) -> bool:
        """True when the algorithm will propose nothing more."""

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """JSON-safe state, random generator included."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-safe description of the search: ``{"algorithm": <its name>, ...}`` with its
        hyperparameters and task/model/recipe (every method names itself under
        ``"algorithm"``; reports read it there)."""


# --------------------------------------------------------------------------- helpers
def rng_state(rng: np.random.Generator) -> dict:
    """JSON-safe state of a NumPy ``Generator`` (its bit generator's state dict)."""
    def plain(value):  # Philox and MT19937 keep arrays in their state
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value.item() if isinstance(value, np.generic) else value

    return json_normalize(plain(rng.bit_generator.state), "random generator state")


def rng_from_state(state: dict) -> np.random.Generator:
    """A ``Generator`` continuing exactly where the one :func:`rng_state` saved stopped."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generators = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM,
                      "Philox": np.random.Philox, "SFC64": np.random.SFC64,
                      "MT19937": np.random.MT19937}
    if name not in bit_generators:
        raise ValueError(f"expected a NumPy bit generator state with 'bit_generator' among "
                         f"{sorted(bit_generators)}, got {name!r}")
    bit_generator = bit_generators[name]()
    bit_generator.state = state  # the setters take lists where they gave arrays
    return np.random.Generator(bit_generator)


#: values the parameter slots take (in order of first appearance) for the second fingerprint
#: of a parametric function: distinct, away from 1 and from each other, both signs
_PROBE_VALUES = (0.7, 1.6, -0.45, 2.3, 0.35, -1.2, 1.15, 0.55, -0.8, 1.9, 0.25, -2.1,
                 1.35, 0.85, -0.3, 2.7, 0.15, -1.6)


def equivalence_key(text: str) -> str | None:
    """The key under which two candidates count as the same function, or ``None``.

    Two functions get the same key when their fingerprints
    (:func:`keras_actfn.expr.fingerprint_key`) agree with every parameter at 1 *and* with
    the parameters (taken in order of first appearance) set to fixed values away from 1. So
    ``x*sigmoid(x)``, ``sigmoid(x)*x`` and ``swish(x)`` share a key, while
    ``x*sigmoid(alpha*x)`` -- which starts as swish but learns its own slope -- does not.
    Text that does not parse gets ``None`` (no reuse; the evaluator records the failure).
    """
    from ...expr import fingerprint_key, parse  # noqa: PLC0415 - the TF-free part of the call

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            expr = parse(text)
            key = fingerprint_key(expr)
            names = expr.params
            if not names:
                return key
            probe = dict(zip(names, _PROBE_VALUES * (len(names) // len(_PROBE_VALUES) + 1)))
            return f"{key}/{len(names)}:{fingerprint_key(expr, params=probe)}"
    except Exception:  # noqa: BLE001 - a candidate that cannot be fingerprinted is not reused
        return None


def failure_record(text: str, seed: int, reason: str, message: str, *, task: str = "",
                   model: str = "", recipe: str = "", runtime_s: float = 0.0,
                   info: dict | None = None) -> EvaluationRecord:
    """A failed :class:`EvaluationRecord` for a candidate that produced no record of its own
    (the evaluator raised, its worker died)."""
    if reason not in REASONS:
        raise ValueError(f"unknown failure reason {reason!r}; expected one of {sorted(REASONS)}")
    runtime_s = float(runtime_s) if math.isfinite(float(runtime_s)) else 0.0
    return EvaluationRecord(fn=str(text), task=str(task), model=str(model), recipe=str(recipe),
                            seed=int(seed), status="failed", reason=reason, message=message,
                            runtime_s=runtime_s, info=dict(info or {}))
