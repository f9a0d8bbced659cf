"""The candidate pool of an AQuaSurF search: which functions the surrogate may pick and
where they lie in the surrogate space (dissertation §6.3.1, §6.5, A.4.1).

A :class:`CandidatePool` holds every unique function of a space in one seeded order (the
search's start functions first). Each function needs its features before it can be
embedded: the 1,000 outputs (cheap, computed for all at once) and, when the surrogate uses
them, the FIM eigenvalue features (one forward/backward pass of the search's network each,
:class:`FimFeatures`). FIM features are cached in the search store (``Store.put_features``)
under a *kind* naming how they were computed, so a resumed or repeated search never
computes one twice. A function whose FIM is invalid (non-finite eigenvalues, outputs or
loss: an unstable function) is never offered to the regression search -- the filter of
§6.3.1.

The pool offers the *ready prefix*: walking the order, every function until the first one
whose features are still missing, minus the filtered ones. The prefix only grows, so a
search's indices into it stay valid while it grows and across resumes.

Two ways to get features:

* :meth:`CandidatePool.compute` -- up front, with ``workers`` processes (what a search on a
  small space does: the whole A.3 space of 2,750 functions on the MNIST-1D CNN takes ~7 min
  on one CPU core).
* **parallel mode** (A.4.1): :meth:`CandidatePool.start_background` keeps one extra process
  computing features for the rest of the order while the search evaluates. The paper ran
  eight workers: FIM features for random functions until 5,000 had them, then seven
  evaluating and one computing. The search polls the pool (:meth:`poll`) at each ``ask``;
  when the ready prefix has grown by ``regrow`` (a fraction) since the last embedding, the
  pool re-embeds it and the search continues on the new coordinates (told results are kept
  by index; the regressor is refit at every ask anyway).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

__all__ = ["FimFeatures", "UserFimFeatures", "CandidatePool", "fim_kind"]


def fim_kind(model: str, task: str, batch: int = 128, seed: int = 0,
             labels: str = "model") -> str:
    """The store key naming FIM features computed with these settings."""
    return "fim/" + json.dumps({"model": model, "task": task, "batch": int(batch),
                                "seed": int(seed), "labels": labels}, sort_keys=True)


class FimFeatures:
    """Picklable ``features(texts) -> [entry, ...]``: the FIM features of each function on
    ``model`` / ``task`` at AutoInit (:func:`~keras_actfn.search.aquasurf.fim.activation_fim_features`)
    as :func:`~keras_actfn.search.aquasurf.benchmark.fim_entry` dicts. A function that
    cannot even be built gets an invalid entry saying why."""

    def __init__(self, model: str = "mnist1d_cnn", task: str = "mnist1d", batch: int = 128,
                 seed: int = 0, labels: str = "model"):
        self.model, self.task = model, task
        self.batch, self.seed, self.labels = int(batch), int(seed), labels
        self._task = None

    @property
    def kind(self) -> str:
        return fim_kind(self.model, self.task, self.batch, self.seed, self.labels)

    def __getstate__(self):
        return {**self.__dict__, "_task": None}

    def __call__(self, texts) -> list:
        from ...data import load_task  # noqa: PLC0415
        from .benchmark import fim_entry  # noqa: PLC0415
        from .fim import activation_fim_features  # noqa: PLC0415

        if self._task is None:
            self._task = load_task(self.task) if isinstance(self.task, str) else self.task
        out = []
        for text in texts:
            try:
                with np.errstate(all="ignore"):
                    result = activation_fim_features(text, self.model, self._task,
                                                     batch=self.batch, seed=self.seed,
                                                     labels=self.labels)
                out.append(fim_entry(result))
            except Exception as err:  # noqa: BLE001 -- unbuildable: no FIM, filtered out
                out.append({"cdf": None, "layers": [], "valid": False,
                            "reason": f"{type(err).__name__}: {err}"})
        return out


class UserFimFeatures:
    """:class:`FimFeatures` for a user's own model: each function's FIM features on the
    model of a :class:`~keras_actfn.train.user_model.UserEvaluator` (the candidate at its
    activation sites, AutoInit as in training) and the first ``batch`` training examples
    of its data. Covers every Dense/Conv/DepthwiseConv layer the user's model has.
    Picklable when the evaluator is (a portable one for worker processes)."""

    def __init__(self, evaluator, batch: int = 128, seed: int = 0, labels: str = "model"):
        self.evaluator = evaluator
        self.batch, self.seed, self.labels = int(batch), int(seed), labels
        self._batch_data = None

    @property
    def kind(self) -> str:
        config = self.evaluator.config()
        described = json.dumps({"model": config["model"]["config_sha256"],
                                "data": config["data"]["train"], "targets": config["targets"],
                                "autoinit": config["autoinit"],
                                "param_shape": config["param_shape"]}, sort_keys=True)
        return fim_kind("user:" + hashlib.sha256(described.encode()).hexdigest()[:16],
                        self.evaluator.data.name, self.batch, self.seed, self.labels)

    def __getstate__(self):
        return {**self.__dict__, "_batch_data": None}

    def __call__(self, texts) -> list:
        from .benchmark import fim_entry  # noqa: PLC0415
        from .fim import fisher_eigenvalues  # noqa: PLC0415

        if self._batch_data is None:
            self._batch_data = self.evaluator.data.first_batch(self.batch)
        xb, yb = self._batch_data
        out = []
        for text in texts:
            try:
                with np.errstate(all="ignore"):
                    net, status = self.evaluator.build(text, seed=self.seed)
                    result = fisher_eigenvalues(net, xb, yb, labels=self.labels,
                                                seed=self.seed)
                if status.startswith("failed"):
                    result.valid = False
                    result.reason = "; ".join(r for r in (f"AutoInit {status}", result.reason)
                                              if r)
                out.append(fim_entry(result))
            except Exception as err:  # noqa: BLE001 -- unbuildable: no FIM, filtered out
                out.append({"cdf": None, "layers": [], "valid": False,
                            "reason": f"{type(err).__name__}: {err}"})
        return out


def _spawn_pool(workers: int):
    import concurrent.futures  # noqa: PLC0415
    import multiprocessing  # noqa: PLC0415

    return concurrent.futures.ProcessPoolExecutor(
        max_workers=int(workers), mp_context=multiprocessing.get_context("spawn"))


class _RayBackground:
    """The background worker of parallel mode on Ray: chunk tasks one at a time (the paper's
    one computing worker beside the evaluating ones), each started when the one before it
    is collected."""

    def __init__(self, executor, function):
        self.executor, self.function = executor, function

    def submit(self, chunk):
        return self.executor.submit_chunk(self.function, chunk)

    def shutdown(self, wait=True, cancel_futures=True):
        pass


class _Deferred:
    """A background chunk on Ray, submitted when it reaches the head of the queue."""

    def __init__(self, background, chunk):
        self.background, self.chunk = background, chunk
        self.future = None

    def done(self) -> bool:
        if self.future is None:
            self.future = self.background.submit(self.chunk)
        return self.future.done()

    def result(self):
        if self.future is None:
            self.future = self.background.submit(self.chunk)
        return self.future.result()

    def cancel(self):
        if self.future is not None:
            self.future.cancel()


class CandidatePool:
    """Unique functions, their features, and the embedding the search regresses on.

    Args:
        texts: the unique functions (e.g. ``[u.text for u in unique_functions(space)]``).
        outputs: ``(n, 1000)`` output features of ``texts`` (finite; see
            :func:`~keras_actfn.search.aquasurf.features.finite_outputs`).
        features: ``"both"`` (the paper), ``"fim"`` or ``"outputs"``.
        fim: a :class:`FimFeatures` (needed unless ``features="outputs"``).
        store: a :class:`~keras_actfn.search.engine.store.Store` caching FIM features (optional:
            without one they live in memory only).
        first: indices placed first in the order (the start functions), in this order.
        seed: seeds the order of the rest and the embedding.
        limit: at most this many functions in the order (the paper's 5,000 of 425,896);
            None: all.
        regrow: re-embed when the ready prefix has grown by this fraction.
        chunk: functions per background task.
        progress: a stream for progress lines, True (default: the current ``sys.stderr``)
            or None/False (quiet).
    """

    def __init__(self, texts, outputs, features: str = "both", fim: FimFeatures | None = None,
                 store=None, first=(), seed: int = 0, limit: int | None = None,
                 regrow: float = 0.25, chunk: int = 16, progress=True):
        if features not in ("both", "fim", "outputs"):
            raise ValueError(f"features must be 'both', 'fim' or 'outputs', got {features!r}")
        if features != "outputs" and fim is None:
            raise ValueError(f"features={features!r} needs a FimFeatures to compute them")
        self.texts = [str(t) for t in texts]
        self.outputs = np.asarray(outputs, dtype=np.float64)
        if self.outputs.shape[0] != len(self.texts):
            raise ValueError(f"{self.outputs.shape[0]} output rows for {len(self.texts)} "
                             f"functions")
        self.features, self.fim, self.store = features, fim, store
        self.seed, self.regrow, self.chunk = int(seed), float(regrow), int(chunk)
        self.stream = progress
        first = [int(i) for i in dict.fromkeys(first)]
        rest = np.setdiff1d(np.arange(len(self.texts)), first)
        rest = np.random.default_rng(self.seed).permutation(rest)
        order = first + [int(i) for i in rest]
        self.order = order if limit is None else order[:max(int(limit), len(first))]
        self.entries: dict = {}
        if self.uses_fim and store is not None:
            self.entries.update(store.features(fim.kind))
        self._background = None
        self._futures: list = []
        self._embedded_size = 0

    # ----------------------------------------------------------------------- features
    @property
    def uses_fim(self) -> bool:
        return self.features != "outputs"

    def _add(self, texts, entries):
        new = {t: e for t, e in zip(texts, entries) if t not in self.entries}
        self.entries.update(new)
        if self.store is not None and new:
            self.store.put_features(self.fim.kind, new.items())

    def _say(self, message):
        if self.stream is None or self.stream is False:
            return
        stream = sys.stderr if self.stream is True else self.stream
        stream.write(message + "\n")
        stream.flush()

    def missing(self, count: int | None = None) -> list:
        """Functions among the first ``count`` of the order (all: None) still lacking FIM
        features, in order."""
        if not self.uses_fim:
            return []
        order = self.order if count is None else self.order[:max(int(count), 0)]
        return [self.texts[i] for i in order if self.texts[i] not in self.entries]

    def compute(self, count: int | None = None, workers=1) -> int:
        """Compute FIM features until the first ``count`` functions of the order (all when
        None) have them, with ``workers`` processes (1: in this process) or, given a
        :class:`~keras_actfn.search.engine.ray_executor.RayExecutor`, as Ray tasks on its cluster
        (its resources per task -- a GPU when the cluster has them -- its width and its
        retry policy). Returns how many were computed."""
        todo = self.missing(count)
        if not todo:
            return 0
        start, done = time.perf_counter(), 0
        chunks = [todo[i:i + self.chunk] for i in range(0, len(todo), self.chunk)]

        def arrived(chunk, entries):
            nonlocal done
            self._add(chunk, entries)
            done += len(chunk)
            self._say(f"FIM features {done}/{len(todo)} ({time.perf_counter() - start:.0f} s)")

        if hasattr(workers, "map_chunks"):  # a Ray executor
            workers.map_chunks(self.fim, chunks, on_result=arrived)
            return done
        if int(workers) <= 1:
            for chunk in chunks:
                arrived(chunk, self.fim(chunk))
            return done
        with _spawn_pool(workers) as pool:
            futures = {pool.submit(self.fim, chunk): chunk for chunk in chunks}
            import concurrent.futures  # noqa: PLC0415
            for future in concurrent.futures.as_completed(futures):
                arrived(futures[future], future.result())
        return done

    def start_background(self, executor=None) -> None:
        """Parallel mode: one extra worker computes the remaining FIM features, chunk by
        chunk in order, while the search runs; :meth:`poll` collects them. The worker is a
        local process, or with ``executor`` (a
        :class:`~keras_actfn.search.engine.ray_executor.RayExecutor`) one Ray task at a time on
        its cluster."""
        todo = self.missing()
        if not todo or self._background is not None:
            return
        chunks = [todo[i:i + self.chunk] for i in range(0, len(todo), self.chunk)]
        if executor is not None:
            self._background = _RayBackground(executor, self.fim)
            self._futures = [(chunk, _Deferred(self._background, chunk)) for chunk in chunks]
            return
        self._background = _spawn_pool(1)
        self._futures = [(chunk, self._background.submit(self.fim, chunk))
                         for chunk in chunks]

    def collect(self) -> int:
        """Store the background results that are finished (in order). Returns how many."""
        got = 0
        while self._futures and self._futures[0][1].done():
            chunk, future = self._futures.pop(0)
            self._add(chunk, future.result())
            got += len(chunk)
        return got

    def close(self) -> None:
        """Stop the background process (finished chunks are collected first)."""
        if self._background is not None:
            self.collect()
            for _, future in self._futures:
                future.cancel()
            self._background.shutdown(wait=True, cancel_futures=True)
            self._background, self._futures = None, []

    # ---------------------------------------------------------------------- embedding
    def _usable(self, index: int) -> bool | None:
        """True/False: embeddable or filtered out; None: features still missing."""
        if not np.isfinite(self.outputs[index]).all():
            return False
        if not self.uses_fim:
            return True
        entry = self.entries.get(self.texts[index])
        if entry is None:
            return None
        return bool(entry.get("valid")) and entry.get("cdf") is not None

    def ready(self) -> list:
        """Indices (into ``texts``) of the ready prefix: the usable functions of the order
        up to the first one whose features are missing."""
        out = []
        for index in self.order:
            usable = self._usable(index)
            if usable is None:
                break
            if usable:
                out.append(index)
        return out

    def filtered(self) -> list:
        """Texts of the functions the FIM filter removed so far (§6.3.1)."""
        return [self.texts[i] for i in self.order if self._usable(i) is False]

    def embed(self):
        """``(texts, coords)`` of the ready prefix, embedded with the §6.5 settings."""
        from .features import embed, fim_feature_matrix  # noqa: PLC0415

        ready = self.ready()
        if len(ready) < 4:
            raise ValueError(f"only {len(ready)} functions have usable features; the "
                             f"surrogate needs at least 4")
        kwargs = {}
        if self.features in ("both", "outputs"):
            kwargs["outputs"] = self.outputs[ready]
        if self.uses_fim:
            entries = [self.entries[self.texts[i]] for i in ready]
            kwargs["fim_features"] = fim_feature_matrix(entries, " in one pool")
        start = time.perf_counter()
        coords = embed(seed=self.seed, **kwargs)
        self._say(f"embedded {len(ready)} functions ({self.features}) in "
                  f"{time.perf_counter() - start:.0f} s")
        self._embedded_size = len(ready)
        return [self.texts[i] for i in ready], coords

    def poll(self):
        """For the search, at each ask: ``(texts, coords)`` when enough new features arrived
        to re-embed (the ready prefix grew by ``regrow`` since the last embedding, or the
        background finished with anything new), else None."""
        if self._background is None:
            return None
        self.collect()
        size = len(self.ready())
        finished = not self._futures
        grown = size - self._embedded_size
        if grown > 0 and (grown >= self.regrow * max(self._embedded_size, 1) or finished):
            return self.embed()
        return None

    def describe(self) -> dict:
        """JSON-safe settings for a search config (what fixes the pool, not its progress)."""
        return {"features": self.features, "pool_seed": self.seed,
                "pool_size": len(self.order),
                "fim": None if self.fim is None else json.loads(self.fim.kind[4:])}
