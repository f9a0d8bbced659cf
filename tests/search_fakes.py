"""Cheap stand-ins for the search tests: a fake evaluator and toy ask/tell algorithms.

Importable by pool workers and by the child process of the SIGKILL test (``tests`` is on
their ``sys.path``), so everything here is module-level and picklable.

The fake evaluator is a deterministic function of (text, seed) that never trains:

* text containing ``log(`` fails with ``nan_loss`` (what a NaN loss gives);
* ``expm1(`` gives an *ok* record whose metrics are NaN/inf (they become ``None``);
* ``cosh(`` makes the evaluator raise (the executor must turn that into a failed record);
* ``sinh(`` kills the worker process (only with :func:`crashing_evaluator`);
* anything else: validation accuracy in [0.10, 0.95] from a hash of the text and seed, so
  numerically equivalent but differently written functions get *different* fake scores
  (a reused result is recognizable by its score).
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from keras_actfn.search.engine.base import Candidate, SearchAlgorithm, rng_from_state, rng_state
from keras_actfn.train.record import EvaluationRecord

#: the toy search space: equivalent spellings, failures, a NaN record, an evaluator error
EXPRESSIONS = ("x", "relu(x)", "max(x, 0)", "x * sigmoid(x)", "sigmoid(x) * x", "swish(x)",
               "tanh(x)", "x * tanh(x)", "abs(x)", "softplus(x)", "elu(x)", "selu(x)",
               "erf(x)", "arctan(x)", "softsign(x)", "log(x)", "log(abs(x))", "expm1(x)",
               "cosh(x)", "x * sigmoid(alpha * x)", "alpha * x", "min(x, 0)", "square(x)",
               "x * erf(x)")
WRAPPERS = ("tanh", "relu", "arctan", "softsign", "abs", "expm1", "log", "neg", "erf")


def fake_score(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{text}|{seed}".encode()).digest()
    return 0.10 + 0.85 * int.from_bytes(digest[:8], "big") / 2.0 ** 64


class FakeEvaluator:
    """``evaluator(text, seed=...)`` -> a fake :class:`EvaluationRecord`.

    ``delay`` sleeps that long per call (to make runs last long enough to be killed, or to
    spread work over pool workers). ``log_path``: append one line per call (text, seed,
    pid) so a test can count real evaluations across processes.
    """

    def __init__(self, delay: float = 0.0, log_path: str | None = None):
        self.delay = float(delay)
        self.log_path = log_path

    def __call__(self, text, seed=0):
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"{text}\t{seed}\t{os.getpid()}\n")
        if self.delay:
            time.sleep(self.delay)
        if "cosh(" in text:
            raise RuntimeError(f"fake evaluator cannot handle {text}")
        record = EvaluationRecord(fn=text, task="fake", model="fake", recipe="fake",
                                  seed=int(seed), runtime_s=0.01, epochs_run=1)
        if "log(" in text:
            return record.fail("nan_loss", "the training loss became NaN")
        if "expm1(" in text:
            record.validation_accuracy = float("nan")
            record.validation_loss = float("inf")
            return record
        score = fake_score(text, seed)
        record.validation_accuracy = score
        record.validation_loss = 1.0 - score
        record.train_accuracy = min(score + 0.02, 1.0)
        record.history = {"val_accuracy": [score]}
        return record


def crashing_evaluator(text, seed=0):
    """Like :class:`FakeEvaluator`, but ``sinh(`` kills the process that runs it."""
    if "sinh(" in text:
        os._exit(3)
    time.sleep(0.05)
    return FakeEvaluator()(text, seed=seed)


class RandomListSearch(SearchAlgorithm):
    """Random search over :data:`EXPRESSIONS`, sometimes wrapping the best function so far
    in a unary operator (so what it asks depends on what it was told).

    The state holds the RNG state, counters, the best so far, the ask indices still
    outstanding and a digest of every tell in order. ``tell`` refuses a candidate that is
    not outstanding, so a duplicated tell fails loudly.
    """

    def __init__(self, seed: int = 0, limit: int | None = None, max_outstanding=None,
                 wrap_prob: float = 0.4, texts=EXPRESSIONS):
        self.seed, self.limit, self.max_outstanding = seed, limit, max_outstanding
        self.wrap_prob, self.texts = wrap_prob, tuple(texts)
        self.rng = np.random.default_rng(seed)
        self.n_asked = self.n_told = 0
        self.best_text, self.best_fitness = None, None
        self.outstanding: list[int] = []
        self.digest = ""

    def ask(self):
        if self.done():
            return None
        if self.max_outstanding is not None and len(self.outstanding) >= self.max_outstanding:
            return None
        if (self.best_text is not None and self.best_text.count("(") < 4
                and self.rng.random() < self.wrap_prob):
            wrapper = WRAPPERS[int(self.rng.integers(len(WRAPPERS)))]
            text, parent, mutation = f"{wrapper}({self.best_text})", self.best_text, "wrap"
        else:
            text = self.texts[int(self.rng.integers(len(self.texts)))]
            parent = mutation = None
        index = self.n_asked
        self.n_asked += 1
        self.outstanding.append(index)
        return Candidate(text, parent=parent, mutation=mutation, generation=index // 10,
                         meta={"index": index})

    def tell(self, candidate, record):
        index = candidate.meta["index"]
        if index not in self.outstanding:
            raise AssertionError(f"told about candidate {index} ({candidate.text}), which is "
                                 f"not outstanding: a duplicated or foreign tell")
        self.outstanding.remove(index)
        self.n_told += 1
        fitness = record.fitness(self.metric)
        self.digest = hashlib.sha1(f"{self.digest}|{index}|{candidate.text}|{fitness!r}"
                                   .encode()).hexdigest()
        if np.isfinite(fitness) and (self.best_fitness is None or fitness > self.best_fitness):
            self.best_text, self.best_fitness = candidate.text, float(fitness)

    def done(self):
        return self.limit is not None and self.n_told >= self.limit

    def state_dict(self):
        return {"rng": rng_state(self.rng), "n_asked": self.n_asked, "n_told": self.n_told,
                "best_text": self.best_text, "best_fitness": self.best_fitness,
                "outstanding": list(self.outstanding), "digest": self.digest}

    def load_state_dict(self, state):
        self.rng = rng_from_state(state["rng"])
        self.n_asked, self.n_told = state["n_asked"], state["n_told"]
        self.best_text, self.best_fitness = state["best_text"], state["best_fitness"]
        self.outstanding = list(state["outstanding"])
        self.digest = state["digest"]

    def config(self):
        return {"algorithm": "random-list", "seed": self.seed, "limit": self.limit,
                "max_outstanding": self.max_outstanding, "wrap_prob": self.wrap_prob,
                "texts": list(self.texts), "task": "fake", "model": "fake", "recipe": "fake"}


class SequenceSearch(SearchAlgorithm):
    """Asks the given texts in order, once each; records what it was told."""

    def __init__(self, texts, seeds=None):
        self.texts = list(texts)
        self.seeds = None if seeds is None else list(seeds)
        self.position = 0
        self.told: list[tuple[str, float]] = []

    def ask(self):
        if self.position >= len(self.texts):
            return None
        meta = {} if self.seeds is None else {"seed": self.seeds[self.position]}
        candidate = Candidate(self.texts[self.position], generation=0, meta=meta)
        self.position += 1
        return candidate

    def tell(self, candidate, record):
        self.told.append((candidate.text, record.fitness()))

    def done(self):
        return self.position >= len(self.texts) and len(self.told) >= len(self.texts)

    def state_dict(self):
        return {"position": self.position, "told": [list(item) for item in self.told]}

    def load_state_dict(self, state):
        self.position = state["position"]
        self.told = [tuple(item) for item in state["told"]]

    def config(self):
        return {"algorithm": "sequence", "texts": self.texts, "seeds": self.seeds}
