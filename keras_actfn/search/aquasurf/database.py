"""AQuaSurF for a user's own training script: a database of candidate functions that
training scripts ask for the next function and report results to (dissertation §6.3-6.7,
A.4.1), the workflow of the original AQuaSurF package's ``ActivationFunctionDatabase``.

The workflow::

    db = FunctionDatabase("afd.db", build_model=build_model, samples=x, labels=y,
                          loss="categorical_crossentropy")
    db.populate(schema="binary(unary(x),unary(x))")     # spellings, grouped by outputs
    db.compute_fim()              # in one process per GPU, all at once: nothing twice
    fn = db.suggest()             # in each training script; marked running for everyone
    ...train build_model(fn)...
    db.report(fn, val_acc=0.71, train_acc=0.8, runtime=512.0)
    db.summary()

**Storage.** One SQLite file, opened through :class:`~keras_actfn.search.engine.store.Store`
(WAL mode, write transactions with ``BEGIN IMMEDIATE`` retried while another process holds
the lock: :meth:`Store.write <keras_actfn.search.engine.store.Store.write>` and
:meth:`~keras_actfn.search.engine.store.Store.read`), with four tables of its own beside
the store's: ``afd_functions`` (every spelling,
as text, pointing at its class), ``afd_classes`` (one row per output-equivalence class: the
representative spelling, its FIM features, its status and results), ``afd_embeddings``
(the last surrogate embeddings, shared by parallel training scripts) and ``afd_meta``.
Status and results live on the class, so whatever is written for one spelling holds for
every equivalent spelling (``add(tanh(x),selu(x))`` and ``add(selu(x),tanh(x))``).
Outputs are computed when functions are added (they define the classes) but only their
digest is kept: the 1,000 values of 425,896 classes would take 3.4 GB, and the few
thousand functions that are embedded get them recomputed, bit for bit.

**Claims.** Work is claimed in a write transaction (a conditional ``UPDATE``), so two
processes never get the same class. A claim names its worker (``host/pid/token``) and
carries a lease, renewed by a heartbeat thread while the worker lives; a claim whose lease
ran out, or whose worker is a dead process on this host (killed, even with SIGKILL), is
released: FIM work returns to the queue, a running evaluation to ``not evaluated``.

**Features and the surrogate.** FIM features are K-FAC eigenvalues of the user's model on
the one batch (:func:`~keras_actfn.search.aquasurf.fim.fisher_eigenvalues`), kept as the
per-layer CDF of their log histograms (§6.5). A class whose FIM is invalid (non-finite
factors, outputs or loss) or whose outputs are non-finite is never suggested by the
regression: the filter of §6.3.1. :meth:`FunctionDatabase.suggest` first hands out the
baseline functions not yet evaluated (in order), then embeds every class with valid
features (UMAP of the eq. 6.16 FIM vectors and of the outputs, their union, §6.5), fits the
regressor on the classes evaluated so far and claims the best-predicted free class.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import sys
import threading
import time
import uuid
import weakref

import numpy as np

from ..engine.store import Store, StoreError
from .space import OPERATOR_SETS, AquasurfSpace, row_digests
from .surrogate import AQUASURF_START_FUNCTIONS, REGRESSORS, make_regressor

__all__ = ["FunctionDatabase", "FunctionDatabaseError", "NOT_EVALUATED", "RUNNING", "DONE",
           "FAILED", "RESULT_COLUMNS", "UPDATABLE_COLUMNS"]

NOT_EVALUATED, RUNNING, DONE, FAILED = "not evaluated", "running", "done", "failed"
STATUSES = (NOT_EVALUATED, RUNNING, DONE, FAILED)
#: the result columns of the original database, in its order
RESULT_COLUMNS = ("train_acc", "train_loss", "val_acc", "val_loss", "test_acc", "test_loss",
                  "runtime")
#: what :meth:`FunctionDatabase.update_for_all_equivalent_fns` may set
UPDATABLE_COLUMNS = ("status",) + RESULT_COLUMNS

_TODO, _CLAIMED, _READY = "todo", "claimed", "done"
_BASELINE_PRIORITY, _LISTED_PRIORITY = 2, 1

_TABLES = f"""
CREATE TABLE IF NOT EXISTS afd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS afd_classes (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    text TEXT NOT NULL,
    finite INTEGER NOT NULL,
    shuffle INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    fim_state TEXT NOT NULL DEFAULT 'todo' CHECK (fim_state IN ('todo', 'claimed', 'done')),
    fim_worker TEXT,
    fim_lease REAL,
    fim TEXT,
    fim_valid INTEGER,
    fim_seconds REAL,
    status TEXT NOT NULL DEFAULT 'not evaluated'
        CHECK (status IN ('not evaluated', 'running', 'done', 'failed')),
    worker TEXT,
    lease REAL,
    started REAL,
    finished REAL,
    {", ".join(f"{c} REAL" for c in RESULT_COLUMNS)},
    info TEXT
);
CREATE INDEX IF NOT EXISTS afd_fim_queue ON afd_classes (fim_state, priority DESC, shuffle);
CREATE INDEX IF NOT EXISTS afd_by_status ON afd_classes (status);
CREATE TABLE IF NOT EXISTS afd_functions (
    text TEXT PRIMARY KEY,
    class INTEGER NOT NULL REFERENCES afd_classes(id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS afd_functions_by_class ON afd_functions (class);
CREATE TABLE IF NOT EXISTS afd_embeddings (
    digest TEXT PRIMARY KEY,
    classes TEXT NOT NULL,
    coords BLOB NOT NULL,
    created REAL NOT NULL
);
"""
_KEEP_EMBEDDINGS = 4


class FunctionDatabaseError(StoreError):
    """The database cannot do what was asked (a function it does not hold, nothing to
    suggest, missing model or batch...). The message says what to do."""


def _compact(text: str) -> str:
    """A spelling as the database keys it: without whitespace (as the original does)."""
    return "".join(str(text).split())


def _pid_dead(pid: int) -> bool:
    """True when no live process ``pid`` exists here (gone, or a zombie awaiting its
    parent, which will never renew anything again)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class _Heartbeat:
    """Renews this worker's leases every ``period`` seconds on a connection of its own,
    until stopped or the process ends (a daemon thread)."""

    def __init__(self, path, worker, lease, period):
        self.path, self.worker, self.lease, self.period = path, worker, lease, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="afd-heartbeat", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            store = Store(self.path, timeout=5.0, retries=3)
        except StoreError:  # pragma: no cover - the file vanished under us
            return
        try:
            while not self._stop.wait(self.period):
                until = time.time() + self.lease

                def body(cur):
                    cur.execute("UPDATE afd_classes SET fim_lease = ? WHERE fim_state = "
                                "'claimed' AND fim_worker = ?", (until, self.worker))
                    cur.execute("UPDATE afd_classes SET lease = ? WHERE status = 'running' "
                                "AND worker = ?", (until, self.worker))

                with contextlib.suppress(StoreError):
                    store.write(body)
        finally:
            store.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)


class FunctionDatabase:
    """Candidate activation functions, their features, status and results in one SQLite
    file shared by every process of a search (see the module docstring).

    Args:
        path: the database file (created if missing). One database per model and task:
            the FIM features belong to ``build_model`` and the batch.
        build_model: ``build_model(fn_text) -> keras.Model`` with that activation function
            (e.g. ``CustomActivation(fn_text)`` layers). Or override :meth:`build_model`
            in a subclass, as the original package asks.
        samples, labels: the one batch the FIM features are computed on, and its labels
            (integer classes or one-hot). With labels the features use the empirical Fisher
            at those labels, as the original does; without, labels drawn from the model
            (the true Fisher, eq. 6.3).
        loss: the training loss: ``None``, ``"categorical_crossentropy"``,
            ``"sparse_categorical_crossentropy"`` or the Keras loss object; its
            ``from_logits`` says whether the model outputs logits. K-FAC here uses the
            categorical log-likelihood, so other losses are refused with a clear error.
        baseline_fns: functions suggested first, in order, until each is evaluated (default:
            the eight baselines of §6.7.1); added to the database when missing.
        operators: the operator set schemas enumerate over: ``"table_a3"`` (Table A.3: 27
            unary, 7 binary, 4 n-ary) or ``"original"`` (the original code's 31 unary
            operators: Table A.3's and ELiSH, Leaky ReLU, Mish, GELU), or a dict with
            ``unary``/``binary``/``nary`` name lists.
        regressor: ``"knr"`` (weighted 3-nearest neighbours, the paper's), ``"rfr"``,
            ``"svr"`` or ``"random"``; set :attr:`regression_model` to any object with
            ``fit``/``predict`` to use your own.
        features: what the surrogate embeds: ``"both"`` (the paper), ``"fim"`` or
            ``"outputs"`` (no FIM needed, no FIM filter).
        metric: the result column the regression maximizes (``*_loss`` columns are
            minimized).
        seed: seeds the batch's label sampling, model initialization before each FIM, the
            embedding and random choices.
        lease: seconds a claim outlives its last heartbeat (heartbeats every
            ``min(30, lease / 4)`` seconds).
        features_fn: ``features_fn(fn_text) -> {"cdf", "layers", "valid", "reason"}``
            replacing the K-FAC computation (features of your own).
        progress: a stream for progress lines, ``True`` (stderr) or ``False``.
    """

    def __init__(self, path, build_model=None, samples=None, labels=None, loss=None, *,
                 baseline_fns=AQUASURF_START_FUNCTIONS, operators="table_a3", regressor="knr",
                 features="both", metric="val_acc", seed: int = 0, lease: float = 300.0,
                 features_fn=None, progress=True, timeout: float = 60.0):
        if features not in ("both", "fim", "outputs"):
            raise ValueError(f"features must be 'both', 'fim' or 'outputs', got {features!r}")
        if regressor not in REGRESSORS:
            raise ValueError(f"unknown regressor {regressor!r}; expected one of {REGRESSORS}")
        if metric not in RESULT_COLUMNS:
            raise ValueError(f"metric must be one of {RESULT_COLUMNS}, got {metric!r}")
        if not float(lease) > 0:
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self.operators = self._operator_set(operators)
        self.path = str(path)
        self.store = Store(self.path, timeout=timeout, retries=40)
        self.store.write(lambda cur: [cur.execute(s) for s in _TABLES.split(";")
                                      if s.strip()])
        self._memory = self.store.in_memory
        self._user_build_model = build_model
        self.samples, self.labels, self.loss = samples, labels, loss
        self.weights_per_layer = None  # the original's; computed from the model here
        self.baseline_fns = [str(f) for f in (baseline_fns or ())]
        self.regressor, self.features, self.metric = regressor, features, metric
        self.regression_model = None
        self.seed = int(seed)
        self.lease = math.inf if self._memory else float(lease)
        self._features_fn = features_fn
        self.progress = progress
        self.worker = f"{os.uname().nodename}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._rng = np.random.default_rng(self.seed)
        self._heartbeat = None
        self._embedding_memo = None
        if self.baseline_fns:
            self.populate(functions=self.baseline_fns, priority=_BASELINE_PRIORITY)

    @staticmethod
    def _operator_set(operators):
        if isinstance(operators, str):
            if operators not in OPERATOR_SETS:
                raise ValueError(f"unknown operator set {operators!r}; expected one of "
                                 f"{sorted(OPERATOR_SETS)} or a dict of unary/binary/nary "
                                 f"operator names")
            return dict(OPERATOR_SETS[operators])
        if isinstance(operators, dict) and set(operators) <= {"unary", "binary", "nary"}:
            return {**OPERATOR_SETS["table_a3"], **{k: tuple(v) for k, v in operators.items()}}
        raise ValueError("operators must be 'table_a3', 'original' or a dict with keys "
                         "unary/binary/nary")

    # ------------------------------------------------------------------ plumbing
    def close(self):
        """Stop the heartbeat (this process's claims then lapse) and close the file."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"FunctionDatabase({self.path!r})"

    def _write(self, body):
        return self.store.write(body)

    def _read(self, sql, args=()):
        return self.store.read(sql, args)

    def _say(self, message):
        if not self.progress:
            return
        stream = sys.stderr if self.progress is True else self.progress
        stream.write(message + "\n")
        stream.flush()

    def _ensure_heartbeat(self):
        if self._heartbeat is None and not self._memory:
            self._heartbeat = _Heartbeat(self.path, self.worker, self.lease,
                                         min(30.0, self.lease / 4))
            # a database dropped without close() stops renewing too (its claims lapse)
            weakref.finalize(self, self._heartbeat._stop.set)

    def _stale(self, worker, lease, now) -> bool:
        """A claim nobody will finish: its lease ran out, or its worker is a dead process
        on this host."""
        if lease is not None and lease < now:
            return True
        if not worker or worker == self.worker:
            return False
        host, _, rest = worker.partition("/")
        pid = rest.partition("/")[0]
        return host == os.uname().nodename and pid.isdigit() and _pid_dead(int(pid))

    def _release_stale(self, cur) -> int:
        """Inside a write transaction: put stale FIM claims back in the queue and stale
        running evaluations back to ``not evaluated``. Returns how many."""
        now = time.time()
        released = 0
        for row_id, worker, lease in cur.execute(
                "SELECT id, fim_worker, fim_lease FROM afd_classes WHERE fim_state = "
                "'claimed'").fetchall():
            if self._stale(worker, lease, now):
                cur.execute("UPDATE afd_classes SET fim_state = 'todo', fim_worker = NULL, "
                            "fim_lease = NULL WHERE id = ? AND fim_state = 'claimed'",
                            (row_id,))
                released += 1
        for row_id, worker, lease in cur.execute(
                "SELECT id, worker, lease FROM afd_classes WHERE status = 'running'"
                ).fetchall():
            if self._stale(worker, lease, now):
                cur.execute("UPDATE afd_classes SET status = 'not evaluated', worker = NULL, "
                            "lease = NULL, started = NULL WHERE id = ? AND status = "
                            "'running'", (row_id,))
                released += 1
        return released

    def release_stale(self) -> int:
        """Release the claims of dead or silent workers now (claiming does it anyway)."""
        return self._write(self._release_stale)

    # ------------------------------------------------------------------ populating
    def populate(self, schema=None, functions=None, *, fn_names_list=None,
                 priority: int = 0, chunk: int = 8192) -> int:
        """Add functions: every member of ``schema`` (a schema string such as
        ``'binary(unary(x),unary(x))'``, ``'unary(unary(x))'``,
        ``'n-ary(unary(x),unary(x),unary(x))'`` -- any depth -- or a list of them, over
        :attr:`operators`), and/or the texts in ``functions`` (``fn_names_list``, the
        original's name). Spellings already present are skipped; each new one joins the
        class of its outputs. Explicit functions get their FIM features before the
        schema's. Returns how many spellings were added."""
        if fn_names_list is not None:
            if functions is not None:
                raise ValueError("give functions or fn_names_list, not both")
            functions = fn_names_list
        if schema is None and functions is None:
            raise ValueError("populate needs a schema (e.g. 'binary(unary(x),unary(x))') or "
                             "a list of functions")
        added = 0
        if functions is not None:
            if isinstance(functions, str):
                functions = [functions]
            texts, digests, finite = self._function_rows(functions)
            added += self._insert(texts, digests, finite,
                                  max(int(priority), _LISTED_PRIORITY))
        if schema is not None:
            space = AquasurfSpace(schema, self.operators["unary"], self.operators["binary"],
                                  self.operators["nary"])
            start_time, done = time.perf_counter(), 0
            for start, out in space.batches(max_rows=chunk):
                texts = [_compact(space.text(start + i, canonical=False))
                         for i in range(len(out))]
                with np.errstate(all="ignore"):
                    finite = np.isfinite(out).all(axis=1)
                added += self._insert(texts, row_digests(out), finite, int(priority))
                done += len(out)
                if len(space) > 100_000 and done % (chunk * 16) < len(out):
                    self._say(f"populate: {done:,}/{len(space):,} functions "
                              f"({time.perf_counter() - start_time:.0f} s)")
        return added

    @staticmethod
    def _function_rows(functions):
        from ...expr import parse  # noqa: PLC0415
        from ...expr.numeric import fingerprint  # noqa: PLC0415

        texts, outputs = [], []
        for fn in functions:
            text = _compact(fn)
            try:
                expr = parse(text)
            except Exception as err:  # noqa: BLE001 - name the function and the problem
                raise ValueError(f"cannot add {fn!r} to the database: {err}") from None
            with np.errstate(all="ignore"):
                outputs.append(fingerprint(expr))
            texts.append(text)
        out = np.asarray(outputs, dtype=np.float64).reshape(len(texts), -1)
        return texts, row_digests(out), np.isfinite(out).all(axis=1)

    def _insert(self, texts, digests, finite, priority) -> int:
        classes = [(d, t, int(f), int.from_bytes(d[:7], "big"), priority)
                   for t, d, f in zip(texts, digests, finite)]
        spellings = [(t, d) for t, d in zip(texts, digests)]

        def body(cur):
            cur.executemany("INSERT INTO afd_classes (key, text, finite, shuffle, priority) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                            "priority = MAX(priority, excluded.priority)", classes)
            cur.executemany("INSERT OR IGNORE INTO afd_functions (text, class) SELECT ?, id "
                            "FROM afd_classes WHERE key = ?", spellings)
            return cur.rowcount  # the spellings added (an ignored one changes no row)

        return self._write(body) if texts else 0

    # ------------------------------------------------------------------ lookups
    def _class_id(self, fn, required=True):
        text = _compact(fn)
        rows = self._read("SELECT class FROM afd_functions WHERE text = ?", (text,))
        if rows:
            return rows[0][0]
        try:
            _, (digest,), _ = self._function_rows([text])
        except ValueError:
            digest = None
        rows = [] if digest is None else self._read(
            "SELECT id FROM afd_classes WHERE key = ?", (digest,))
        if rows:
            return rows[0][0]
        if required:
            raise FunctionDatabaseError(
                f"{fn!r} is not in the database {self.path!r} (nor any function with the "
                f"same outputs); add it with populate(functions=[{text!r}])")
        return None

    def __contains__(self, fn) -> bool:
        return self._class_id(fn, required=False) is not None

    def equivalents(self, fn) -> list:
        """Every spelling in the database with the outputs of ``fn`` (``fn``'s class)."""
        class_id = self._class_id(fn)
        return [r[0] for r in self._read("SELECT text FROM afd_functions WHERE class = ? "
                                         "ORDER BY text", (class_id,))]

    def result(self, fn) -> dict:
        """What the database holds for ``fn``'s class: ``text`` (its representative),
        ``status``, the result columns, ``info``, ``fim_valid``, ``fim_reason``, ``worker``,
        ``started``, ``finished``."""
        class_id = self._class_id(fn)
        cols = ("text", "status", *RESULT_COLUMNS, "info", "fim_valid", "fim", "worker",
                "started", "finished")
        row = self._read(f"SELECT {', '.join(cols)} FROM afd_classes WHERE id = ?",
                         (class_id,))[0]
        out = dict(zip(cols, row))
        out["info"] = json.loads(out["info"]) if out["info"] else {}
        raw = out.pop("fim")
        fim = json.loads(raw) if raw else None
        out["fim_valid"] = None if out["fim_valid"] is None else bool(out["fim_valid"])
        out["fim_reason"] = fim.get("reason", "") if fim else None
        return out

    def fim_features(self, fn):
        """The stored FIM entry of ``fn``'s class (``{"cdf", "layers", "valid", "reason"}``)
        or None when not computed yet."""
        row = self._read("SELECT fim FROM afd_classes WHERE id = ? AND fim_state = 'done'",
                         (self._class_id(fn),))
        return json.loads(row[0][0]) if row and row[0][0] else None

    # ------------------------------------------------------------------ FIM features
    def build_model(self, fn_text):
        """The user's model with activation ``fn_text`` (override in a subclass, or pass
        ``build_model=`` to the constructor)."""
        if self._user_build_model is None:
            raise FunctionDatabaseError(
                "FunctionDatabase needs a model to compute FIM features on: pass "
                "build_model=fn (fn(fn_text) returns a Keras model) or override build_model "
                "in a subclass")
        return self._user_build_model(fn_text)

    def _fisher_settings(self):
        loss = self.loss
        output = "auto"
        if loss is not None:
            if isinstance(loss, str):
                name, logits = loss, False
            elif hasattr(loss, "get_config"):
                name = type(loss).__name__
                logits = bool(loss.get_config().get("from_logits", False))
            else:   # a plain loss function such as keras.losses.categorical_crossentropy
                name, logits = getattr(loss, "__name__", type(loss).__name__), False
            key = name.replace("_", "").lower()
            if key not in ("categoricalcrossentropy", "sparsecategoricalcrossentropy"):
                raise FunctionDatabaseError(
                    f"loss {name!r}: the FIM features use the categorical log-likelihood "
                    f"(K-FAC, §6.2), so the model must output class probabilities or logits; "
                    f"pass loss='categorical_crossentropy' (or its sparse form, or the Keras "
                    f"loss object with from_logits as in training) or loss=None")
            output = "logits" if logits else "probs"
        if self.samples is None:
            raise FunctionDatabaseError(
                "FunctionDatabase needs the batch the FIM features are computed on: pass "
                "samples= (and labels=) or set db.samples / db.labels")
        return ("data" if self.labels is not None else "model"), output

    def fisher_features(self, fn_text) -> dict:
        """FIM features of ``fn_text``: K-FAC eigenvalues of ``build_model(fn_text)`` on
        :attr:`samples` (seeded), as ``{"cdf", "layers", "valid", "reason"}``."""
        from ...backend import keras  # noqa: PLC0415
        from .benchmark import fim_entry  # noqa: PLC0415
        from .fim import fisher_eigenvalues  # noqa: PLC0415

        labels, output = self._fisher_settings()
        keras.utils.set_random_seed(self.seed)
        model = self.build_model(fn_text)
        with np.errstate(all="ignore"):
            result = fisher_eigenvalues(model, self.samples, self.labels, labels=labels,
                                        seed=self.seed, output=output, keep_factors=False)
        return fim_entry(result)

    def _features(self, text) -> dict:
        try:
            if self._features_fn is not None:
                entry = self._features_fn(text)
            else:
                entry = self.fisher_features(text)
        except FunctionDatabaseError:
            raise
        except Exception as err:  # noqa: BLE001 - an unbuildable function: filtered out
            entry = {"cdf": None, "layers": [], "valid": False,
                     "reason": f"{type(err).__name__}: {err}"}
        if not isinstance(entry, dict) or "valid" not in entry:
            raise TypeError(f"FIM features must be a dict with 'cdf', 'layers', 'valid', "
                            f"'reason'; got {type(entry).__name__}")
        entry = {"cdf": entry.get("cdf"), "layers": entry.get("layers") or [],
                 "valid": bool(entry["valid"]) and entry.get("cdf") is not None,
                 "reason": str(entry.get("reason") or "")}
        if entry["cdf"] is not None and not np.isfinite(np.asarray(entry["cdf"],
                                                                   float)).all():
            entry.update(cdf=None, valid=False, reason=entry["reason"] or "non-finite CDF")
        return entry

    def _claim_fim(self, only=None):
        """Claim the next class needing FIM features (baselines, then listed functions,
        then the rest in a random order); ``only``: restrict to these class ids."""
        until = time.time() + self.lease
        where = "fim_state = 'todo'"
        args = []
        if only is not None:
            where += f" AND id IN ({', '.join('?' * len(only))})"
            args = list(only)

        def body(cur):
            self._release_stale(cur)
            row = cur.execute(f"SELECT id, text FROM afd_classes WHERE {where} ORDER BY "
                              f"priority DESC, shuffle LIMIT 1", args).fetchone()
            if row is None:
                return None
            cur.execute("UPDATE afd_classes SET fim_state = 'claimed', fim_worker = ?, "
                        "fim_lease = ? WHERE id = ? AND fim_state = 'todo'",
                        (self.worker, until, row[0]))
            return row

        return self._write(body)

    def _finish_fim(self, class_id, entry, seconds) -> bool:
        text = json.dumps(entry, sort_keys=True, allow_nan=False)

        def body(cur):
            cur.execute("UPDATE afd_classes SET fim_state = 'done', fim = ?, fim_valid = ?, "
                        "fim_seconds = ?, fim_lease = NULL WHERE id = ? AND fim_state = "
                        "'claimed' AND fim_worker = ?",
                        (text, int(entry["valid"]), float(seconds), class_id, self.worker))
            return cur.rowcount == 1

        return self._write(body)

    def _unclaim_fim(self, class_id):
        self._write(lambda cur: cur.execute(
            "UPDATE afd_classes SET fim_state = 'todo', fim_worker = NULL, fim_lease = NULL "
            "WHERE id = ? AND fim_state = 'claimed' AND fim_worker = ?",
            (class_id, self.worker)))

    def compute_fim(self, functions=None, limit: int | None = None,
                    from_scratch: bool = False) -> int:
        """Compute FIM features for classes that have none yet, until none is left (or
        ``limit`` were computed here). Run it in several processes at once (one per GPU):
        each claims one class at a time, so none is computed twice; stop any time and
        run again to resume. ``functions``: only these (added first when missing).
        ``from_scratch``: forget every stored FIM feature first. Returns how many this
        call computed."""
        if self._features_fn is None:
            self._fisher_settings()   # a missing batch or an unusable loss: say so now
        if from_scratch:
            self._write(lambda cur: cur.execute(
                "UPDATE afd_classes SET fim_state = 'todo', fim = NULL, fim_valid = NULL, "
                "fim_worker = NULL, fim_lease = NULL WHERE fim_state = 'done'"))
        only = None
        if functions is not None:
            functions = [functions] if isinstance(functions, str) else list(functions)
            missing = [f for f in functions if f not in self]
            if missing:
                self.populate(functions=missing)
            only = sorted({self._class_id(f) for f in functions})
        remaining = self._read("SELECT COUNT(*) FROM afd_classes WHERE fim_state != 'done'"
                               + ("" if only is None else
                                  f" AND id IN ({', '.join('?' * len(only))})"),
                               only or ())[0][0]
        done, start = 0, time.perf_counter()
        while limit is None or done < int(limit):
            row = self._claim_fim(only)
            if row is None:
                break
            self._ensure_heartbeat()
            class_id, text = row
            t0 = time.perf_counter()
            try:
                entry = self._features(text)
            except BaseException:
                self._unclaim_fim(class_id)
                raise
            seconds = time.perf_counter() - t0
            if self._finish_fim(class_id, entry, seconds):
                done += 1
            state = "" if entry["valid"] else f" invalid: {entry['reason'][:80]}"
            self._say(f"FIM features {done}/{remaining}: {text} ({seconds:.1f} s){state}")
            if done % 20 == 0:
                gc.collect()
        if done:
            self._say(f"FIM features: {done} computed here in "
                      f"{time.perf_counter() - start:.0f} s")
        return done

    # ------------------------------------------------------------------ surrogate
    def _candidates(self):
        """``(ids, texts, fim entries)`` of the classes the surrogate may embed: finite
        outputs and, unless features="outputs", valid FIM features (§6.3.1)."""
        if self.features == "outputs":
            rows = self._read("SELECT id, text, NULL FROM afd_classes WHERE finite = 1 "
                              "ORDER BY id")
        else:
            rows = self._read("SELECT id, text, fim FROM afd_classes WHERE finite = 1 AND "
                              "fim_state = 'done' AND fim_valid = 1 ORDER BY id")
        ids = [r[0] for r in rows]
        texts = [r[1] for r in rows]
        entries = [json.loads(r[2]) if r[2] else None for r in rows]
        return ids, texts, entries

    def embedding(self):
        """``(class ids, coords)``: the §6.5 surrogate embedding of every class the
        surrogate may use, shared through the database (parallel training scripts fit
        it once per set of classes)."""
        ids, texts, entries = self._candidates()
        if len(ids) < 4:
            raise FunctionDatabaseError(
                f"only {len(ids)} functions have usable features; the surrogate needs at "
                f"least 4: run compute_fim() (calculate_fisher_eigs) for more functions")
        digest = hashlib.sha1(json.dumps({"features": self.features, "seed": self.seed,
                                          "ids": ids}).encode()).hexdigest()
        if self._embedding_memo is not None and self._embedding_memo[0] == digest:
            return ids, self._embedding_memo[1]
        rows = self._read("SELECT coords FROM afd_embeddings WHERE digest = ?", (digest,))
        if rows:
            coords = np.frombuffer(rows[0][0], dtype="<f8").reshape(len(ids), -1).copy()
        else:
            coords = self._fit_embedding(texts, entries)
            blob = np.ascontiguousarray(coords, dtype="<f8").tobytes()

            def body(cur):
                cur.execute("INSERT OR REPLACE INTO afd_embeddings (digest, classes, coords, "
                            "created) VALUES (?, ?, ?, ?)",
                            (digest, json.dumps(ids), blob, time.time()))
                cur.execute("DELETE FROM afd_embeddings WHERE digest NOT IN (SELECT digest "
                            "FROM afd_embeddings ORDER BY created DESC LIMIT ?)",
                            (_KEEP_EMBEDDINGS,))

            self._write(body)
        self._embedding_memo = (digest, coords)
        return ids, coords

    def _fit_embedding(self, texts, entries):
        from ...expr.numeric import fingerprint  # noqa: PLC0415
        from .features import embed, fim_feature_matrix, finite_outputs  # noqa: PLC0415

        kwargs = {}
        if self.features in ("both", "outputs"):
            with np.errstate(all="ignore"):
                kwargs["outputs"] = finite_outputs(np.stack([fingerprint(t) for t in texts]))
        if self.features in ("both", "fim"):
            try:
                kwargs["fim_features"] = fim_feature_matrix(entries, " in this database")
            except ValueError as err:
                raise FunctionDatabaseError(
                    f"{err}; use one database per model and task, or "
                    f"compute_fim(from_scratch=True)") from None
        start = time.perf_counter()
        coords = embed(seed=self.seed, **kwargs)
        self._say(f"embedded {len(texts)} functions ({self.features}) in "
                  f"{time.perf_counter() - start:.1f} s")
        return np.asarray(coords, dtype=np.float64)

    def _target(self, value):
        """The regression target of a reported value (losses negated; None: no value)."""
        if value is None or not math.isfinite(value):
            return None
        return -float(value) if self.metric.endswith("_loss") else float(value)

    def _told(self, ids):
        """``(positions in ids, regression targets)`` of the evaluated classes among ids
        (None where a failed run has no value)."""
        index = {c: i for i, c in enumerate(ids)}
        rows = self._read(f"SELECT id, status, {self.metric} FROM afd_classes WHERE status "
                          f"IN ('done', 'failed')")
        return [(index[r[0]], self._target(r[2])) for r in rows if r[0] in index]

    def _free(self, ids):
        busy = {r[0] for r in self._read("SELECT id FROM afd_classes WHERE status != "
                                         "'not evaluated'")}
        return np.array([i for i, c in enumerate(ids) if c not in busy], dtype=np.int64)

    def _ranking(self):
        """Class ids to try, best first: the regression's predictions (ties: the earlier
        class), or a random order while there is nothing to regress on (no embedding is
        fitted then)."""
        ids = self._candidates()[0]
        told = self._told(ids)
        if self.regressor != "random" and any(v is not None for _, v in told):
            ids, coords = self.embedding()
            told = self._told(ids)
        else:
            coords = None
        free = self._free(ids)
        if free.size == 0:
            return []
        known = [v for _, v in told if v is not None]
        if coords is None or not known:
            return [ids[i] for i in self._rng.permutation(free)]
        train = np.array([i for i, _ in told], dtype=np.int64)
        values = np.array([min(known) if v is None else v for _, v in told], np.float64)
        model = self.regression_model
        if model is None:
            model = make_regressor(self.regressor, random_state=self.seed)
            if self.regressor == "knr" and len(train) < 3:
                model.set_params(n_neighbors=len(train))
        model.fit(coords[train], values)
        predictions = np.asarray(model.predict(coords[free]), dtype=np.float64)
        order = np.lexsort((free, -predictions))
        return [ids[free[i]] for i in order]

    # ------------------------------------------------------------------ suggesting
    def _claim_running(self, cur, class_id, until, now) -> bool:
        cur.execute("UPDATE afd_classes SET status = 'running', worker = ?, lease = ?, "
                    "started = ? WHERE id = ? AND status = 'not evaluated'",
                    (self.worker, until, now, class_id))
        return cur.rowcount == 1

    def _claim_first(self, class_ids):
        now = time.time()
        until = now + self.lease

        def body(cur):
            self._release_stale(cur)
            for class_id in class_ids:
                if self._claim_running(cur, class_id, until, now):
                    return cur.execute("SELECT text FROM afd_classes WHERE id = ?",
                                       (class_id,)).fetchone()[0]
            return None

        text = self._write(body)
        if text is not None:
            self._ensure_heartbeat()
        return text

    def suggest(self) -> str:
        """The next function to train, marked ``running`` (with every equivalent spelling)
        for this process, so parallel training scripts never take the same one: a baseline
        not yet evaluated (in order), else the free class with the best predicted
        :attr:`metric` (UMAP + regressor over the results so far, §6.6), else -- nothing
        evaluated yet -- a random one with valid features. Report its result with
        :meth:`report`; if this process dies first, the claim lapses and the function is
        offered again."""
        if self.baseline_fns:
            ids = [self._class_id(f) for f in self.baseline_fns]
            text = self._claim_first(list(dict.fromkeys(ids)))
            if text is not None:
                return text
        for _ in range(20):
            self.release_stale()
            ranking = self._ranking()
            if not ranking:
                break
            text = self._claim_first(ranking)
            if text is not None:
                return text
        counts = self.counts()
        raise FunctionDatabaseError(
            f"nothing to suggest: {counts['running_unique']} functions are running, "
            f"{counts['evaluated_unique']} evaluated and no other has usable features; "
            f"run compute_fim() for more functions or populate() more")

    def report(self, fn, status: str = DONE, *, info: dict | None = None, **results) -> None:
        """Record the result of training ``fn`` for it and every equivalent function:
        ``status`` ``"done"`` (or ``"failed"``) and any of ``train_acc``, ``train_loss``,
        ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss``, ``runtime``; ``info``:
        JSON-safe extras (configs, summaries)."""
        unknown = sorted(set(results) - set(RESULT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown result(s) {unknown}; expected {list(RESULT_COLUMNS)}")
        if status not in (DONE, FAILED):
            raise ValueError(f"status must be 'done' or 'failed', got {status!r}")
        values = {k: None if v is None else float(v) for k, v in results.items()}
        class_id = self._class_id(fn)
        sets = ["status = ?", "finished = ?", "lease = NULL"]
        args = [status, time.time()]
        for key, value in values.items():
            if value is not None:
                sets.append(f"{key} = ?")
                args.append(value)
        if info is not None:
            sets.append("info = ?")
            args.append(json.dumps(info, sort_keys=True, default=str))
        self._write(lambda cur: cur.execute(
            f"UPDATE afd_classes SET {', '.join(sets)} WHERE id = ?", (*args, class_id)))

    def release(self, fn) -> None:
        """Give ``fn`` back (``running`` -> ``not evaluated``), e.g. after a crash you
        caught."""
        class_id = self._class_id(fn)
        self._write(lambda cur: cur.execute(
            "UPDATE afd_classes SET status = 'not evaluated', worker = NULL, lease = NULL, "
            "started = NULL WHERE id = ? AND status = 'running'", (class_id,)))

    # ------------------------------------------------------------------ counts
    def counts(self) -> dict:
        """``functions`` (spellings), ``unique`` (classes), ``with_eigenvalues`` (classes
        with FIM features), ``valid_eigenvalues``, ``evaluated`` / ``running`` (spellings,
        as the original counts them) and their ``*_unique`` class counts, ``failed``."""
        functions = self._read("SELECT COUNT(*) FROM afd_functions")[0][0]
        classes = dict(self._read("SELECT status, COUNT(*) FROM afd_classes GROUP BY status"))
        spellings = dict(self._read(
            "SELECT c.status, COUNT(*) FROM afd_functions f JOIN afd_classes c ON "
            "f.class = c.id GROUP BY c.status"))
        fim = self._read("SELECT COUNT(*), COALESCE(SUM(fim_valid), 0) FROM afd_classes "
                         "WHERE fim_state = 'done'")[0]
        return {"functions": functions, "unique": sum(classes.values()),
                "with_eigenvalues": fim[0], "valid_eigenvalues": fim[1],
                "evaluated": spellings.get(DONE, 0), "evaluated_unique": classes.get(DONE, 0),
                "failed": classes.get(FAILED, 0), "running": spellings.get(RUNNING, 0),
                "running_unique": classes.get(RUNNING, 0)}

    def best(self, k: int = 1) -> list:
        """The ``k`` best evaluated classes by :attr:`metric`: ``[(text, value), ...]``."""
        order = "ASC" if self.metric.endswith("_loss") else "DESC"
        return [tuple(r) for r in self._read(
            f"SELECT text, {self.metric} FROM afd_classes WHERE {self.metric} IS NOT NULL "
            f"ORDER BY {self.metric} {order}, id LIMIT ?", (int(k),))]

    def summary(self, file=None) -> dict:
        """Print what the original's ``summary()`` prints (functions, unique functions,
        unique functions with eigenvalues, evaluated, running, best so far) and return the
        counts (:meth:`counts` with ``best``)."""
        counts = self.counts()
        best = self.best(1)
        counts["best"] = best[0] if best else None
        name = {"val_acc": "validation accuracy"}.get(self.metric, self.metric)
        lines = [
            f"Number of activation functions: {counts['functions']}",
            f"Number of unique activation functions: {counts['unique']}",
            f"Number of unique functions with eigenvalues calculated: "
            f"{counts['with_eigenvalues']} ({counts['valid_eigenvalues']} valid)",
            f"Number of evaluated activation functions: {counts['evaluated']} "
            f"({counts['evaluated_unique']} unique)",
            f"Number of running activation functions: {counts['running']} "
            f"({counts['running_unique']} unique)",
            ("Best so far: none evaluated yet" if not best else
             f"Best so far: {best[0][0]} with {name} {best[0][1]:.4f}"),
        ]
        print("\n".join(lines), file=file)
        return counts

    # ------------------------------------------------------------------ the original's names
    def populate_database(self, schema=None, fn_names_list=None) -> int:
        """The original's name for :meth:`populate`."""
        return self.populate(schema=schema, fn_names_list=fn_names_list)

    def calculate_fisher_eigs(self, from_scratch: bool = False, fn_names_list=None) -> int:
        """The original's name for :meth:`compute_fim`."""
        return self.compute_fim(functions=fn_names_list, from_scratch=from_scratch)

    def suggest_fn(self) -> str:
        """The original's name for :meth:`suggest` (which also marks the function
        running; the original's follow-up ``update_for_all_equivalent_fns(fn, 'status',
        'running')`` is then harmless)."""
        return self.suggest()

    def update_for_all_equivalent_fns(self, fn, result_name: str, result_value) -> None:
        """Set one column for ``fn`` and all its equivalents, as the original does:
        ``status`` (``'running'``, ``'done'``, ``'failed'``, ``'not evaluated'``) or a
        result column."""
        if result_name not in UPDATABLE_COLUMNS:
            raise ValueError(f"unknown column {result_name!r}; expected one of "
                             f"{list(UPDATABLE_COLUMNS)}")
        if result_name != "status":
            class_id = self._class_id(fn)
            value = None if result_value is None else float(result_value)
            self._write(lambda cur: cur.execute(
                f"UPDATE afd_classes SET {result_name} = ? WHERE id = ?", (value, class_id)))
            return
        if result_value not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {result_value!r}")
        if result_value in (DONE, FAILED):
            self.report(fn, result_value)
        elif result_value == NOT_EVALUATED:
            class_id = self._class_id(fn)
            self._write(lambda cur: cur.execute(
                "UPDATE afd_classes SET status = 'not evaluated', worker = NULL, lease = "
                "NULL, started = NULL, finished = NULL WHERE id = ?", (class_id,)))
        else:
            self.mark_running(fn)

    def update_status_all_equivalent_fns(self, fn, status: str) -> None:
        """The original's name for setting only the status."""
        self.update_for_all_equivalent_fns(fn, "status", status)

    def mark_running(self, fn) -> bool:
        """Mark ``fn`` (and its equivalents) running for this process; False when another
        live process runs it or it is finished."""
        class_id = self._class_id(fn)
        now = time.time()

        def body(cur):
            self._release_stale(cur)
            if self._claim_running(cur, class_id, now + self.lease, now):
                return True
            row = cur.execute("SELECT worker FROM afd_classes WHERE id = ? AND status = "
                              "'running'", (class_id,)).fetchone()
            return row is not None and row[0] == self.worker

        ok = self._write(body)
        if ok:
            self._ensure_heartbeat()
        return ok

    def soft_clean(self) -> None:
        """Forget unfinished runs: every class without a :attr:`metric` value goes back to
        ``not evaluated`` (the original's ``soft_clean``)."""
        self._write(lambda cur: cur.execute(
            f"UPDATE afd_classes SET status = 'not evaluated', worker = NULL, lease = NULL, "
            f"started = NULL, finished = NULL, info = NULL, "
            f"{', '.join(f'{c} = NULL' for c in RESULT_COLUMNS)} WHERE {self.metric} IS NULL"))

    def clean(self) -> None:
        """Forget every status and result, keep functions and features (the original's
        ``clean``)."""
        self._write(lambda cur: cur.execute(
            f"UPDATE afd_classes SET status = 'not evaluated', worker = NULL, lease = NULL, "
            f"started = NULL, finished = NULL, info = NULL, "
            f"{', '.join(f'{c} = NULL' for c in RESULT_COLUMNS)}"))
