"""CAFE (dissertation ch. 3): exhaustive, random and evolutionary search over S_d.

Three ask/tell algorithms over a :class:`~keras_actfn.search.spaces.CafeSpace`:

* :class:`CafeExhaustive`: every function of the space in rank order (S_1: 3,456).
* :class:`CafeRandom`: uniform samples of the space.
* :class:`CafeEvolution` (§3.1.4): a generational search. Each generation's fitness is the
  softmax of the metric over the population (eq. 3.2: validation accuracy, or negative
  validation loss); ``2 (N - m - e)`` parents are drawn with replacement in proportion to
  it, pairs are crossed over (same-depth subtrees) and the child mutated; the ``e`` best of
  the population survive unchanged (elitism) and ``m`` random newcomers join, so every
  generation has N members, of which ``N - e`` are new and evaluated. Defaults: N=50, m=10,
  e=5, 10 generations. Functions with the best results over the whole history are the
  result (read them from the store).
"""

from __future__ import annotations

import math

import numpy as np

from ..expr import parse
from .engine.base import Candidate, SearchAlgorithm, rng_from_state, rng_state
from .spaces import CafeSpace


class _CafeBase(SearchAlgorithm):
    def __init__(self, space, seed, metric, context):
        self.space = space if space is not None else CafeSpace(1)
        self.seed = int(seed)
        self.metric = metric
        self.context = dict(context or {})
        self.rng = np.random.default_rng(self.seed)

    def _config(self, **extra):
        return {"algorithm": self.name, "space": self.space.get_config(), "seed": self.seed,
                "metric": self.metric, **extra,
                **({"context": self.context} if self.context else {})}


class CafeExhaustive(_CafeBase):
    """Every function of ``space`` (default S_1), in rank order; ``stop`` limits the count."""

    name = "cafe-exhaustive"

    def __init__(self, space=None, start=0, stop=None, seed=0, metric="validation_accuracy",
                 context=None):
        super().__init__(space, seed, metric, context)
        self.start = int(start)
        self.stop = min(int(stop), self.space.size()) if stop is not None else self.space.size()
        self.next_index = self.start
        self.told = 0

    def ask(self):
        if self.next_index >= self.stop:
            return None
        expr = self.space.unrank(self.next_index)
        candidate = Candidate(str(expr), generation=0, meta={"rank": self.next_index})
        self.next_index += 1
        return candidate

    def tell(self, candidate, record):
        self.told += 1

    def done(self):
        return self.told >= self.stop - self.start

    def state_dict(self):
        return {"next_index": self.next_index, "told": self.told}

    def load_state_dict(self, state):
        self.next_index, self.told = int(state["next_index"]), int(state["told"])

    def config(self):
        return self._config(start=self.start, stop=self.stop)


class CafeRandom(_CafeBase):
    """``budget`` uniform samples of ``space`` (default S_2)."""

    name = "cafe-random"

    def __init__(self, space=None, budget=500, seed=0, metric="validation_accuracy",
                 context=None):
        super().__init__(space if space is not None else CafeSpace(2), seed, metric, context)
        self.budget = int(budget)
        self.asked = self.told = 0

    def ask(self):
        if self.asked >= self.budget:
            return None
        self.asked += 1
        return Candidate(str(self.space.sample(self.rng)), generation=0)

    def tell(self, candidate, record):
        self.told += 1

    def done(self):
        return self.told >= self.budget

    def state_dict(self):
        return {"asked": self.asked, "told": self.told, "rng": rng_state(self.rng)}

    def load_state_dict(self, state):
        self.asked, self.told = int(state["asked"]), int(state["told"])
        self.rng = rng_from_state(state["rng"])

    def config(self):
        return self._config(budget=self.budget)


def softmax_fitness(values) -> np.ndarray:
    """Eq. 3.2: ``p_i = exp(L_i) / sum_j exp(L_j)``; failed members (``-inf``) get 0 and an
    all-failed population is uniform."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(values.size, 1.0 / values.size)
    shifted = np.where(finite, values - values[finite].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()


class CafeEvolution(_CafeBase):
    """Generational evolution of §3.1.4 (see the module docstring).

    Args:
        space: a :class:`CafeSpace` (default S_2).
        population: N.
        newcomers: m random functions per generation (exploration).
        elite: e best members kept unchanged into the next generation.
        generations: generations in total (the first is random).
        metric: ``validation_accuracy`` or ``validation_loss`` (fitness = -loss, eq. 3.2).
    """

    name = "cafe-evolution"

    def __init__(self, space=None, population=50, newcomers=10, elite=5, generations=10,
                 seed=0, metric="validation_accuracy", context=None):
        super().__init__(space if space is not None else CafeSpace(2), seed, metric, context)
        if not 0 <= newcomers + elite <= population - 1:
            raise ValueError(f"need newcomers + elite < population; got m={newcomers}, "
                             f"e={elite}, N={population}")
        self.population_size, self.newcomers = int(population), int(newcomers)
        self.elite, self.generations = int(elite), int(generations)
        self.generation = 0
        self.queue = [str(self.space.sample(self.rng)) for _ in range(self.population_size)]
        self.outstanding = 0
        self.members: list = []      # [text, fitness] of the generation being evaluated
        self.parents: dict = {}      # child text -> [parent texts, mutation]

    def ask(self):
        if not self.queue:
            return None
        text = self.queue.pop(0)
        self.outstanding += 1
        parent, mutation = (self.parents.get(text) or [[None], None])
        return Candidate(text, parent=parent[0], mutation=mutation,
                         generation=self.generation,
                         meta={"parents": parent} if mutation else {})

    def tell(self, candidate, record):
        self.outstanding -= 1
        fitness = record.fitness(self.metric)
        self.members.append([candidate.text, None if math.isinf(fitness) else float(fitness)])
        if not self.queue and self.outstanding == 0:
            self._next_generation()

    def _next_generation(self):
        self.generation += 1
        if self.generation >= self.generations:
            return
        members = self.members
        fitness = np.array([-np.inf if f is None else f for _, f in members])
        order = np.argsort(-fitness, kind="stable")
        elites = [members[i] for i in order[: self.elite] if np.isfinite(fitness[i])]
        p = softmax_fitness(fitness)
        n_children = self.population_size - self.newcomers - len(elites)
        picks = self.rng.choice(len(members), size=2 * n_children, replace=True, p=p)
        children, parents = [], {}
        for a, b in picks.reshape(-1, 2):
            mother, father = parse(members[a][0]), parse(members[b][0])
            child = self.space.mutate(self.space.crossover(mother, father, self.rng), self.rng)
            text = str(child)
            children.append(text)
            parents[text] = [[members[a][0], members[b][0]], "crossover+mutation"]
        newcomers = [str(self.space.sample(self.rng)) for _ in range(self.newcomers)]
        self.parents = parents
        self.queue = children + newcomers
        self.members = [list(m) for m in elites]  # elites carry their fitness over

    def done(self):
        return self.generation >= self.generations and self.outstanding == 0

    def state_dict(self):
        return {"generation": self.generation, "queue": list(self.queue),
                "outstanding": self.outstanding, "members": self.members,
                "parents": self.parents, "rng": rng_state(self.rng)}

    def load_state_dict(self, state):
        self.generation = int(state["generation"])
        self.queue = list(state["queue"])
        self.outstanding = int(state["outstanding"])
        self.members = [list(m) for m in state["members"]]
        self.parents = dict(state["parents"])
        self.rng = rng_from_state(state["rng"])

    def config(self):
        return self._config(population=self.population_size, newcomers=self.newcomers,
                            elite=self.elite, generations=self.generations)


__all__ = ["CafeExhaustive", "CafeRandom", "CafeEvolution", "softmax_fitness"]
