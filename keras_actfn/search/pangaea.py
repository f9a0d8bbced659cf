"""PANGAEA (dissertation ch. 4): regularized evolution of parametric activation graphs.

The algorithm (§4.1.2), as an ask/tell object:

* The first ``population`` (P) candidates are random graphs of the two initial shapes,
  parameterized (k in {0..3} multiplicative per-channel parameters on random edges).
* Every later candidate: sample ``sample`` (S) members of the population with replacement;
  the fittest is the parent; its parameters are stripped, it is mutated (insert, remove,
  change or regenerate, with every rule of §4.1.1) and the child is parameterized afresh.
* A result whose fitness is below ``threshold`` (V) never enters the population but counts
  toward the ``budget`` (C). A valid result joins the population and the oldest member
  leaves, so the population is the P most recent valid functions -- the sliding window of
  B.2.2, which is what asynchronous workers see: a free worker immediately gets a child of
  the current population while others still train.

Baselines of §4.4.1: :meth:`Pangaea.random_search` (P=1, S=1, V=0: mutations without regard
to fitness) and ``parameterize=False`` (nonparametric evolution). Reranking the top
functions with the full schedule is :class:`Rerank`.
"""

from __future__ import annotations

import numpy as np

from ..expr import parse
from ..train.user_model import ORIGINAL
from .engine.base import Candidate, SearchAlgorithm, rng_from_state, rng_state
from .spaces import PangaeaSpace


class Pangaea(SearchAlgorithm):
    """Regularized evolution with the paper's defaults P=64, S=16, C=1,000, V=20%.

    Args:
        population: P, the size of the sliding window of recent valid functions.
        sample: S, tournament size (with replacement).
        budget: C, candidates evaluated in total (failures and below-V ones included).
        threshold: V, minimum fitness to enter the population (0.2 = 20% validation
            accuracy with the default metric).
        parameterize: add k in {0,1,2,3} learnable parameters per candidate (§4.1.1).
        seed: seed of every random choice.
        metric: record field ranked by (``validation_accuracy`` or ``validation_loss``).
        context: JSON-safe description of what is searched for (task, model, recipe),
            part of :meth:`config` so a store refuses to mix searches.
        space: a :class:`PangaeaSpace` (operators of Table 4.1 by default).
    """

    name = "pangaea"

    def __init__(self, population=64, sample=16, budget=1000, threshold=0.2,
                 parameterize=True, seed=0, metric="validation_accuracy", context=None,
                 space=None):
        if population < 1 or sample < 1 or budget < 1:
            raise ValueError(f"population, sample and budget must be >= 1; got P={population}, "
                             f"S={sample}, C={budget}")
        self.population_size = int(population)
        self.sample_size = int(sample)
        self.budget = int(budget)
        self.threshold = float(threshold)
        self.parameterize = bool(parameterize)
        self.seed = int(seed)
        self.metric = metric
        self.context = dict(context or {})
        self.space = space or PangaeaSpace(max_params=3 if self.parameterize else 0)
        self.rng = np.random.default_rng(self.seed)
        self.asked = 0
        self.told = 0
        self.population: list = []   # [text, fitness], oldest first

    @classmethod
    def random_search(cls, budget=1000, **kwargs) -> "Pangaea":
        """§4.4.1's random-search baseline: each candidate mutates the latest one."""
        return cls(population=1, sample=1, budget=budget, threshold=0.0, **kwargs)

    # ------------------------------------------------------------------- ask / tell
    def ask(self):
        if self.asked >= self.budget:
            return None
        outstanding = self.asked - self.told
        if self.asked < self.population_size or (not self.population and outstanding == 0):
            expr = self.space.initial(self.rng) if self.parameterize else \
                self.space.random_graph(self.rng)
            candidate = Candidate(str(expr), generation=self.asked)
        elif self.population:
            picks = self.rng.integers(0, len(self.population), self.sample_size)
            parent = max((self.population[i] for i in picks), key=lambda m: m[1])[0]
            child, mutation = self.space.child(parse(parent), self.rng)
            candidate = Candidate(str(child), parent=parent, mutation=mutation,
                                  generation=self.asked)
        else:
            return None  # the initial population is still training: wait for a result
        self.asked += 1
        return candidate

    def tell(self, candidate, record):
        self.told += 1
        fitness = record.fitness(self.metric)
        if record.ok and fitness >= self._threshold_value():
            self.population.append([candidate.text, float(fitness)])
            if len(self.population) > self.population_size:
                self.population.pop(0)

    def _threshold_value(self):
        # V applies to accuracy; a loss metric has no natural threshold (fitness = -loss)
        return self.threshold if self.metric.endswith("accuracy") else -np.inf

    def done(self):
        return self.told >= self.budget

    # ---------------------------------------------------------------------- state
    def state_dict(self):
        return {"asked": self.asked, "told": self.told, "population": self.population,
                "rng": rng_state(self.rng)}

    def load_state_dict(self, state):
        self.asked, self.told = int(state["asked"]), int(state["told"])
        self.population = [[text, float(f)] for text, f in state["population"]]
        self.rng = rng_from_state(state["rng"])

    def config(self):
        return {"algorithm": self.name, "population": self.population_size,
                "sample": self.sample_size, "budget": self.budget,
                "threshold": self.threshold, "parameterize": self.parameterize,
                "seed": self.seed, "metric": self.metric, "space": self.space.get_config(),
                **({"context": self.context} if self.context else {})}


class Rerank(SearchAlgorithm):
    """Re-evaluate given functions ``runs`` times each (seeds 0..runs-1 offset by ``seed``);
    the adjusted fitness is the mean (§4.1.2: top 10, two full-schedule runs, top 3 kept)."""

    name = "rerank"

    def __init__(self, functions, runs=2, seed=0, metric="validation_accuracy", context=None):
        # ORIGINAL: the user's model with its own activations (the baseline of a comparison)
        self.functions = [f if f == ORIGINAL else str(parse(f)) for f in functions]
        if not self.functions:
            raise ValueError("Rerank needs at least one function")
        self.runs, self.seed, self.metric = int(runs), int(seed), metric
        self.context = dict(context or {})
        self.asked = 0
        self.scores: dict = {}

    def ask(self):
        if self.asked >= len(self.functions) * self.runs:
            return None
        text = self.functions[self.asked // self.runs]
        run = self.asked % self.runs
        self.asked += 1
        return Candidate(text, mutation="rerank", generation=run,
                         meta={"seed": self.seed + run})

    def tell(self, candidate, record):
        self.scores.setdefault(candidate.text, []).append(record.fitness(self.metric))

    def done(self):
        return sum(len(v) for v in self.scores.values()) >= len(self.functions) * self.runs

    def ranking(self):
        """``[(text, mean fitness, [fitness per run])]``, best first."""
        rows = [(t, float(np.mean(v)), list(v)) for t, v in self.scores.items()]
        return sorted(rows, key=lambda r: r[1], reverse=True)

    def state_dict(self):
        return {"asked": self.asked,
                "scores": {t: [float(x) if np.isfinite(x) else None for x in v]
                           for t, v in self.scores.items()}}

    def load_state_dict(self, state):
        self.asked = int(state["asked"])
        self.scores = {t: [(-np.inf if x is None else x) for x in v]
                       for t, v in state["scores"].items()}

    def config(self):
        return {"algorithm": self.name, "functions": self.functions, "runs": self.runs,
                "seed": self.seed, "metric": self.metric,
                **({"context": self.context} if self.context else {})}


__all__ = ["Pangaea", "Rerank"]
