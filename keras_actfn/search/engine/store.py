"""The durable journal of a search: every candidate, every result, the algorithm's state.

A :class:`Store` is one SQLite file in WAL mode (``":memory:"`` works for tests). It holds

* ``runs``: one row per search run, keyed by a name (``"search"`` by default), with the
  JSON config that defines the search. :meth:`Store.open_run` creates the run or resumes it,
  and refuses (:class:`StoreConfigError`) when the stored config differs.
* ``evaluations``: one row per candidate the algorithm asked: text, parent, mutation,
  generation, meta, ``equivalence_key`` (equal for numerically equivalent functions:
  :func:`~keras_actfn.search.engine.base.equivalence_key`), training seed, worker, status
  (``pending`` -> ``running`` -> ``ok`` | ``failed``), the record as JSON, the evaluation it
  reused (if any), its position in completion order, and asked/started/finished times.
* ``state``: the algorithm's ``state_dict`` after each ask and each tell, numbered; only the
  latest ``keep_states`` are kept.

Each change is one transaction: :meth:`Store.add_pending` writes the candidate with the
algorithm state after the ask, :meth:`Store.complete` writes the record with the state after
the tell. A process killed at any point leaves the store at a state boundary, which is what
:func:`~keras_actfn.search.engine.driver.run_search` resumes from.

Several processes may open one store (a report reading while a search writes, several
readers); writes take SQLite's write lock with ``BEGIN IMMEDIATE`` under a busy timeout and
are retried when the database stays locked. One process drives a run at a time:
:meth:`Store.driver_lock` holds an OS lock on ``<store>.lock`` for the driver's lifetime
(released by the OS even when the process is killed; :mod:`.locking`).

``Store(path, readonly=True)`` only reads (``keras-actfn report``): it opens the file with
SQLite's ``mode=ro`` (``immutable=1`` when even that cannot open it: a WAL store in a folder
the reader cannot write, with no journal left beside it), never creates, upgrades or locks
anything, and works on a store the process cannot write. Whatever keeps a store from being
opened or written -- a read-only file or folder, a path through a file, a damaged file --
is a :class:`StoreError` naming the file and the cause, found before anything is created
where it can be (:func:`check_store_path`).

Stores written by earlier versions open and resume: a writable store is upgraded in place
when opened (one transaction, under SQLite's write lock), a read-only one is read as it is
(layout 2 and earlier named the ``equivalence_key`` column ``fingerprint``). A run config
whose algorithm names itself under ``"name"`` (the AQuaSurF surrogate and benchmark replay
before they used ``"algorithm"`` like every method) is read as ``"algorithm"``.

Everything read back is data: JSON parsed into records and candidates, never code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path

from ...train.record import EvaluationRecord
from .base import Candidate, json_normalize
from .configs import config_differences, describe_differences
from .locking import exclusive_lock

__all__ = ["Store", "Evaluation", "StoreError", "StoreConfigError", "StoreLockedError",
           "SCHEMA_VERSION", "check_store_path"]

#: the layout version written to ``PRAGMA user_version``
SCHEMA_VERSION = 3  # 3: fingerprint -> equivalence_key; 2: the features table (1, 2 upgraded)

PENDING, RUNNING, OK, FAILED = "pending", "running", "ok", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs(id),
    candidate TEXT NOT NULL,
    parent TEXT,
    mutation TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    equivalence_key TEXT,
    seed INTEGER,
    worker TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'ok', 'failed')),
    record TEXT,
    reused_from INTEGER REFERENCES evaluations(id),
    completion INTEGER,
    asked REAL NOT NULL,
    started REAL,
    finished REAL,
    CHECK ((status IN ('ok', 'failed')) = (record IS NOT NULL)),
    CHECK ((status IN ('ok', 'failed')) = (completion IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS evaluations_by_status ON evaluations(run, status);
CREATE INDEX IF NOT EXISTS evaluations_by_equivalence_key
    ON evaluations(run, equivalence_key, seed);
CREATE UNIQUE INDEX IF NOT EXISTS evaluations_by_completion ON evaluations(run, completion);
CREATE TABLE IF NOT EXISTS state (
    run INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE TABLE IF NOT EXISTS features (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""

#: the ``equivalence_key`` column's name in layouts 1 and 2 (a read-only store keeps it)
_OLD_KEY_COLUMN = "fingerprint"

_COLUMNS = ("id, run, candidate, parent, mutation, generation, meta, {key}, seed, worker, "
            "status, record, reused_from, completion, asked, started, finished")


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreadable file, unknown evaluation...)."""


class StoreConfigError(StoreError):
    """The store holds a run of the same name with a different configuration."""

    def __init__(self, message, differences):
        super().__init__(message)
        #: ``{dotted key: (stored value, requested value)}``, :data:`.configs.ABSENT` for a
        #: key present on one side only (:func:`.configs.config_differences`)
        self.differences = differences


class StoreLockedError(StoreError):
    """Another process is driving a search on this store."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One row of the journal: a candidate and, once finished, its record.

    ``equivalence_key`` is :func:`~keras_actfn.search.engine.base.equivalence_key` of the
    text when the search reuses results (else ``None``).
    ``order`` is the position in completion order (1, 2, ...; ``None`` while unfinished);
    ``reused_from`` is the id of the evaluation whose result this one copied (numerically
    equivalent function), else ``None``. Times are UNIX seconds.
    """

    id: int
    run: int
    candidate: Candidate
    equivalence_key: str | None
    seed: int | None
    worker: str | None
    status: str
    record: EvaluationRecord | None
    reused_from: int | None
    order: int | None
    asked: float
    started: float | None
    finished: float | None

    @property
    def text(self) -> str:
        return self.candidate.text

    @property
    def is_finished(self) -> bool:
        return self.status in (OK, FAILED)


def _current_config(config):
    """A run config in the current form: an algorithm config that names the algorithm under
    ``"name"`` and has no ``"algorithm"`` key (written before every method used
    ``"algorithm"``) names it under ``"algorithm"``. Anything else is returned as it is."""
    algorithm = config.get("algorithm") if isinstance(config, dict) else None
    if not isinstance(algorithm, dict) or "name" not in algorithm or "algorithm" in algorithm:
        return config
    renamed = {("algorithm" if key == "name" else key): value
               for key, value in algorithm.items()}
    return {**config, "algorithm": renamed}


def _has_column(conn, table: str, column: str) -> bool:
    """Whether ``table`` exists with ``column`` (``conn``: a connection or a cursor)."""
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _is_memory(path: str) -> bool:
    return path == ":memory:" or path.startswith("file::memory:")


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_store_path(path, readonly: bool = False) -> None:
    """Raise :class:`StoreError` when ``path`` cannot be a search store -- opened read-only
    (``readonly``), or opened for writing (created with its folders if missing) -- naming
    the file and the reason. Creates nothing: callers check before making anything.

    Permission checks use ``os.access``, so for root (who may write anything but a
    read-only filesystem) only what root cannot do is reported."""
    path = str(path)
    if _is_memory(path):
        return
    target = Path(path).expanduser().absolute()
    if readonly:
        if not target.exists():
            raise StoreError(f"no search store at {path!r}")
        if target.is_dir():
            raise StoreError(f"the search store {path!r} is a folder, not a store file")
        if not os.access(target, os.R_OK):
            raise StoreError(f"cannot read the search store {path!r}: permission denied")
        return
    if target.exists():
        if target.is_dir():
            raise StoreError(f"the search store {path!r} is a folder, not a store file; "
                             f"give a file path such as {os.path.join(path, 'search.db')!r}")
        if not os.access(target, os.R_OK | os.W_OK):
            raise StoreError(f"the search store {path!r} is read-only (no write permission), "
                             f"so a search cannot resume on it; make it writable or copy it "
                             f"(keras-actfn report reads it as it is)")
        journal = [Path(f"{target}{end}") for end in ("-wal", "-shm")]
        if not os.access(target.parent, os.W_OK | os.X_OK) and not all(
                p.exists() and os.access(p, os.R_OK | os.W_OK) for p in journal):
            raise StoreError(f"the folder {str(target.parent)!r} of the search store {path!r} "
                             f"is not writable: SQLite keeps the store's journal (-wal, -shm) "
                             f"beside it; make the folder writable or copy the store")
        return
    base = _first_existing(target.parent)
    if not base.is_dir():
        raise StoreError(f"cannot create the search store {path!r}: {str(base)!r} is a file, "
                         f"not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the search store {path!r}: the folder "
                         f"{str(base)!r} is not writable")


def _open_error(path, err) -> StoreError:
    """The :class:`StoreError` for an SQLite error met while opening ``path``."""
    text = str(err)
    if type(err) is sqlite3.DatabaseError or "malformed" in text or "not a database" in text:
        return StoreError(f"cannot open the search store {path!r}: {text} (the file is "
                          f"damaged or is not an SQLite file; expected a store written by "
                          f"keras_actfn, or a new path)")
    return StoreError(f"cannot open the search store {path!r}: {text}")


class Store:
    """A search journal in one SQLite file.

    Args:
        path: the database file (created with its folder if missing), or ``":memory:"``.
        timeout: seconds a write waits for another process's write lock (SQLite busy
            timeout); a write still locked out after that is retried with back-off up to
            ``retries`` times before ``StoreError``.
        keep_states: how many of the latest algorithm states to keep per run (resuming needs
            only the latest; a few more help debugging). ``None`` keeps all.

        readonly: only read (``keras-actfn report``): the file must exist; it is opened
            with SQLite's ``mode=ro`` and nothing is created, upgraded or locked, so a store
            this process cannot write reads fine. Writing methods raise :class:`StoreError`.

    Use :meth:`open_run` (or :meth:`select_run` to read an existing run) before the
    evaluation methods, which all act on the current run.
    """

    def __init__(self, path, timeout: float = 30.0, retries: int = 20,
                 keep_states: int | None = 10, readonly: bool = False):
        self.path = str(path)
        self.timeout = float(timeout)
        self.retries = int(retries)
        if keep_states is not None and int(keep_states) < 1:
            raise ValueError(f"keep_states must be >= 1 or None, got {keep_states}")
        self.keep_states = None if keep_states is None else int(keep_states)
        self.readonly = bool(readonly)
        self.run_id: int | None = None
        self.run_name: str | None = None
        self._memory = _is_memory(self.path)
        #: the column holding the equivalence key (its layout-2 name in an old read-only store)
        self._key_column = "equivalence_key"
        if self._memory and self.readonly:
            raise ValueError("an in-memory store cannot be opened read-only")
        check_store_path(self.path, readonly=self.readonly)
        if not self._memory and not self.readonly:
            folder = Path(self.path).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the folder {str(folder)!r} of the search "
                                 f"store {self.path!r}: {err.strerror or err}") from None
        self._conn = None
        try:
            if self.readonly:
                self._conn = self._connect_readonly()
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            else:
                self._conn = sqlite3.connect(self.path, timeout=self.timeout,
                                             isolation_level=None)
                self._conn.execute("PRAGMA foreign_keys = ON")
                mode = self._retry(lambda: self._conn.execute(
                    "PRAGMA journal_mode = WAL").fetchone()[0])
                # FULL: a committed result survives a power cut too, not only a killed process
                self._conn.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except BaseException as err:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            if isinstance(err, sqlite3.DatabaseError):
                raise _open_error(self.path, err) from None
            raise
        self.journal_mode = str(mode).lower()

    def _connect_readonly(self):
        """A read-only connection: ``mode=ro``; ``immutable=1`` when SQLite cannot open the
        file that way (a WAL store in an unwritable folder without its -shm file, which
        also means no unmerged journal: the file alone is the whole store)."""
        uri = "file:" + urllib.parse.quote(str(Path(self.path).expanduser().absolute()))
        last = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + query, uri=True, timeout=self.timeout,
                                   isolation_level=None)
            try:
                conn.execute("PRAGMA user_version").fetchone()
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError as err:
                conn.close()
                if "malformed" in str(err) or "not a database" in str(err):
                    raise
                last = err
        raise last

    # ----------------------------------------------------------------------- plumbing
    def _retry(self, action):
        """``action()``, retried with back-off while another process holds a lock."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                return action()
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _init_schema(self):
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {self.path!r} has layout version {version}; this "
                             f"keras_actfn reads up to {SCHEMA_VERSION} (upgrade keras_actfn)")
        if version == 0:
            tables = {row[0] for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            foreign = tables - {"runs", "evaluations", "state", "features"}
            if foreign:
                raise StoreError(f"{self.path!r} is an SQLite database but not a keras_actfn "
                                 f"search store (it has tables {sorted(foreign)})")
            if self.readonly:
                raise StoreError(f"{self.path!r} is an empty SQLite file, not a keras_actfn "
                                 f"search store")
        if self.readonly:  # an older layout reads as it is (upgrading would write)
            if _has_column(self._conn, "evaluations", _OLD_KEY_COLUMN):
                self._key_column = _OLD_KEY_COLUMN
            return

        def create(cur):
            # layouts 1 and 2 -> 3; checked inside the write transaction, where no other
            # process can be upgrading the same file at the same time
            if _has_column(cur, "evaluations", _OLD_KEY_COLUMN):
                cur.execute("DROP INDEX IF EXISTS evaluations_by_fingerprint")
                cur.execute(f"ALTER TABLE evaluations RENAME COLUMN {_OLD_KEY_COLUMN} TO "
                            f"equivalence_key")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(create)

    def _write(self, body):
        """Run ``body(cursor)`` in one write transaction (all or nothing); retried while the
        database is locked by another process."""
        if self.readonly:
            raise StoreError(f"the search store {self.path!r} was opened read-only")
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                if _is_busy(err) and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise self._write_error(err) from None
            try:
                result = body(self._conn.cursor())
                self._conn.execute("COMMIT")
                return result
            except sqlite3.OperationalError as err:
                self._rollback()
                if _is_busy(err) and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if _is_busy(err):
                    raise StoreError(f"the search store {self.path!r} stayed locked by "
                                     f"another process: {err}") from err
                raise self._write_error(err) from None
            except sqlite3.DatabaseError as err:
                self._rollback()
                if type(err) is sqlite3.DatabaseError:  # a damaged file, not our SQL
                    raise self._write_error(err) from None
                raise
            except BaseException:
                self._rollback()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_error(self, err) -> StoreError:
        text = str(err)
        if "readonly" in text.replace("-", "").replace(" ", ""):
            return StoreError(f"cannot write to the search store {self.path!r}: it is "
                              f"read-only ({text}); make the file and its folder writable, "
                              f"or copy the store (keras-actfn report reads it as it is)")
        if type(err) is sqlite3.DatabaseError or "malformed" in text:
            return StoreError(f"cannot write to the search store {self.path!r}: {text} (the "
                              f"file is damaged; start a new store)")
        return StoreError(f"cannot write to the search store {self.path!r}: {text}")

    def _rollback(self):
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _read(self, sql, args=()):
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as err:
            raise StoreError(f"cannot read the search store {self.path!r}: {err}") from None
        except sqlite3.DatabaseError as err:
            if type(err) is not sqlite3.DatabaseError:
                raise
            raise StoreError(f"cannot read the search store {self.path!r}: {err} (the file "
                             f"is damaged)") from None

    def _need_run(self) -> int:
        if self.run_id is None:
            raise StoreError("no run selected: call store.open_run(config) (or "
                             "store.select_run(name) to read an existing run) first")
        return self.run_id

    # ----------------------------------------------------------------------- extensions
    # Code that keeps tables of its own in a store's file (AQuaSurF's FunctionDatabase)
    # reads and writes them through these, under the store's locking and error handling.
    def write(self, body):
        """Run ``body(cursor)`` in one write transaction and return what it returns: all or
        nothing, under SQLite's write lock (``BEGIN IMMEDIATE``). While another process
        holds the lock the whole transaction is retried, so ``body`` may run more than once
        and must touch the database only through ``cursor``. After an ``executemany``,
        ``cursor.rowcount`` is the number of rows it changed. Raises :class:`StoreError`
        when the store cannot be written (read-only, damaged, locked too long)."""
        return self._write(body)

    def read(self, sql: str, args=()) -> list:
        """The rows of one query (``sql`` with ``?`` placeholders, ``args`` their values);
        :class:`StoreError` when the file cannot be read."""
        return self._read(sql, args)

    @property
    def in_memory(self) -> bool:
        """Whether the store is an in-memory database (``":memory:"``): no file, no other
        process, no lock."""
        return self._memory

    def close(self):
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        run = "" if self.run_name is None else f", run={self.run_name!r}"
        return f"Store({self.path!r}{run})"

    # ----------------------------------------------------------------------- runs
    def open_run(self, config: dict, name: str = "search") -> int:
        """Create the run ``name`` with ``config``, or resume it if it exists with the same
        config; make it the current run and return its id.

        Raises:
            StoreConfigError: the run exists with a different config. The message names the
                differing keys; resume with the original settings, or start a new store.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        config = _current_config(json_normalize(config, "the search config"))
        text = json.dumps(config, sort_keys=True)

        def body(cur):
            row = cur.execute("SELECT id, config FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                cur.execute("INSERT INTO runs (name, config, created, status) VALUES "
                            "(?, ?, ?, 'open')", (name, text, time.time()))
                return cur.lastrowid, None
            return row[0], _current_config(json.loads(row[1]))

        run_id, stored = self._write(body)
        if stored is not None and stored != config:
            raise self._config_error(name, stored, config)
        self.run_id, self.run_name = run_id, name
        return run_id

    def _config_error(self, name, stored, requested) -> StoreConfigError:
        differences = config_differences(stored, requested)
        lines = describe_differences(differences, limit=20)
        message = (f"the store {self.path!r} holds a search run {name!r} with a different "
                   f"configuration, so it cannot be resumed with this one. Differing keys:\n"
                   + "\n".join(f"  {line}" for line in lines) +
                   "\nTo resume that search, repeat its original settings. To start a new "
                   "search, use a new store path (or delete this file).")
        return StoreConfigError(message, differences)

    def select_run(self, name: str = "search") -> int:
        """Make the existing run ``name`` current without checking its config (to read it)."""
        rows = self._read("SELECT id FROM runs WHERE name = ?", (name,))
        if not rows:
            names = [row[0] for row in self._read("SELECT name FROM runs ORDER BY id")]
            raise StoreError(f"the store {self.path!r} has no run {name!r} (runs: {names})")
        self.run_id, self.run_name = rows[0][0], name
        return self.run_id

    def runs(self) -> list[dict]:
        """Every run: ``{"id", "name", "config", "created", "status"}``."""
        return [{"id": i, "name": n, "config": _current_config(json.loads(c)), "created": t,
                 "status": s}
                for i, n, c, t, s in self._read(
                    "SELECT id, name, config, created, status FROM runs ORDER BY id")]

    def run_config(self) -> dict:
        """The current run's config."""
        run = self._need_run()
        return _current_config(json.loads(self._read("SELECT config FROM runs WHERE id = ?",
                                                     (run,))[0][0]))

    def set_run_status(self, status: str) -> None:
        """Mark the current run (``"open"``, ``"finished"``...); informational only."""
        run = self._need_run()
        self._write(lambda cur: cur.execute("UPDATE runs SET status = ? WHERE id = ?",
                                            (str(status), run)))

    def run_status(self) -> str:
        run = self._need_run()
        return self._read("SELECT status FROM runs WHERE id = ?", (run,))[0][0]

    @contextlib.contextmanager
    def driver_lock(self):
        """Hold the right to drive this store: an exclusive OS lock on ``<path>.lock``.

        Raises :class:`StoreLockedError` if another live process holds it. The OS drops the
        lock when the holder exits or is killed, so a crashed search never blocks its
        resumption (:func:`~keras_actfn.search.engine.locking.exclusive_lock`). In-memory stores and
        systems without ``fcntl`` take no lock.
        """
        if self.readonly:
            raise StoreError(f"the search store {self.path!r} was opened read-only; a search "
                             f"cannot run on it")
        if self._memory:
            yield
            return

        def taken(holder):
            return StoreLockedError(
                f"another search process ({holder}) is running on the store {self.path!r}; "
                f"wait for it to finish or stop it before resuming here")

        def unusable(err):
            return StoreError(f"cannot create the lock file {self.path + '.lock'!r} of the "
                              f"search store: {err.strerror or err}")

        with exclusive_lock(self.path + ".lock", taken, unusable):
            yield

    # ----------------------------------------------------------------------- states
    def _insert_state(self, cur, run, state):
        """Append ``state`` (already JSON text) and drop states older than ``keep_states``."""
        seq = cur.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM state WHERE run = ?",
                          (run,)).fetchone()[0]
        cur.execute("INSERT INTO state (run, seq, state, created) VALUES (?, ?, ?, ?)",
                    (run, seq, state, time.time()))
        if self.keep_states is not None:
            cur.execute("DELETE FROM state WHERE run = ? AND seq <= ?",
                        (run, seq - self.keep_states))
        return seq

    @staticmethod
    def _state_text(state):
        if state is None:
            return None
        if not isinstance(state, dict):
            raise TypeError(f"an algorithm state must be a dict, got {type(state).__name__}")
        return json.dumps(json_normalize(state, "the algorithm state", allow_nan=True),
                          sort_keys=True)

    def save_state(self, state: dict) -> int:
        """Append an algorithm state on its own; returns its sequence number."""
        run, text = self._need_run(), self._state_text(state)
        return self._write(lambda cur: self._insert_state(cur, run, text))

    def latest_state(self) -> dict | None:
        """The most recent algorithm state of the current run (``None`` if none yet)."""
        rows = self._read("SELECT state FROM state WHERE run = ? ORDER BY seq DESC LIMIT 1",
                          (self._need_run(),))
        return json.loads(rows[0][0]) if rows else None

    def state_count(self) -> int:
        """How many states the current run has written (the latest sequence number)."""
        rows = self._read("SELECT COALESCE(MAX(seq), 0) FROM state WHERE run = ?",
                          (self._need_run(),))
        return rows[0][0]

    # ----------------------------------------------------------------------- evaluations
    def add_pending(self, candidate: Candidate, equivalence_key: str | None, *,
                    seed: int | None = None, state: dict | None = None) -> int:
        """Record an asked candidate (status ``pending``) with its ``equivalence_key``
        (``None``: never reused) and, in the same transaction, the algorithm state after the
        ask. Returns the evaluation id."""
        if not isinstance(candidate, Candidate):
            raise TypeError(f"expected a Candidate, got {type(candidate).__name__}")
        run, state_text = self._need_run(), self._state_text(state)
        meta = json.dumps(candidate.meta, sort_keys=True)
        seed = None if seed is None else int(seed)

        def body(cur):
            cur.execute("INSERT INTO evaluations (run, candidate, parent, mutation, generation, "
                        "meta, equivalence_key, seed, status, asked) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                        (run, candidate.text, candidate.parent, candidate.mutation,
                         candidate.generation, meta, equivalence_key, seed, time.time()))
            eval_id = cur.lastrowid
            if state_text is not None:
                self._insert_state(cur, run, state_text)
            return eval_id

        return self._write(body)

    def mark_running(self, eval_id: int, worker: str) -> None:
        """``pending`` -> ``running`` on ``worker`` (also refreshes a resubmitted one)."""
        run = self._need_run()

        def body(cur):
            cur.execute("UPDATE evaluations SET status = 'running', worker = ?, started = ? "
                        "WHERE id = ? AND run = ? AND status IN ('pending', 'running')",
                        (str(worker), time.time(), int(eval_id), run))
            if cur.rowcount != 1:
                raise StoreError(self._not_open_message(cur, eval_id))

        self._write(body)

    def _not_open_message(self, cur, eval_id):
        row = cur.execute("SELECT status FROM evaluations WHERE id = ? AND run = ?",
                          (int(eval_id), self.run_id)).fetchone()
        if row is None:
            return f"evaluation {eval_id} does not exist in run {self.run_name!r}"
        return f"evaluation {eval_id} is already finished ({row[0]}); it is never written twice"

    def complete(self, eval_id: int, record: EvaluationRecord, state: dict | None, *,
                 worker: str | None = None, reused_from: int | None = None) -> int:
        """Finish an evaluation with its record and, in the same transaction, the algorithm
        state after ``tell``. Returns the evaluation's position in completion order.

        All or nothing: if anything fails, neither the record nor the state is written and
        the evaluation stays unfinished. Completing a finished evaluation raises
        :class:`StoreError`.
        """
        if not isinstance(record, EvaluationRecord):
            raise TypeError(f"expected an EvaluationRecord, got {type(record).__name__}")
        run, state_text = self._need_run(), self._state_text(state)
        record_text = json.dumps(record.to_dict(), sort_keys=True, allow_nan=False)
        status = OK if record.ok else FAILED

        def body(cur):
            self._write_result(cur, run, int(eval_id), status, record_text, worker, reused_from)
            if state_text is not None:
                self._insert_state(cur, run, state_text)
            return cur.execute("SELECT completion FROM evaluations WHERE id = ?",
                               (int(eval_id),)).fetchone()[0]

        return self._write(body)

    def _write_result(self, cur, run, eval_id, status, record_text, worker, reused_from):
        order = cur.execute("SELECT COALESCE(MAX(completion), 0) + 1 FROM evaluations "
                            "WHERE run = ?", (run,)).fetchone()[0]
        cur.execute("UPDATE evaluations SET status = ?, record = ?, completion = ?, "
                    "finished = ?, worker = COALESCE(?, worker), reused_from = ? "
                    "WHERE id = ? AND run = ? AND status IN ('pending', 'running')",
                    (status, record_text, order, time.time(), worker, reused_from, eval_id,
                     run))
        if cur.rowcount != 1:
            raise StoreError(self._not_open_message(cur, eval_id))

    def _evaluation(self, row) -> Evaluation:
        (eval_id, run, text, parent, mutation, generation, meta, key, seed, worker,
         status, record, reused_from, order, asked, started, finished) = row
        candidate = Candidate(text=text, parent=parent, mutation=mutation,
                              generation=generation, meta=json.loads(meta))
        record = None if record is None else EvaluationRecord.from_dict(json.loads(record))
        return Evaluation(id=eval_id, run=run, candidate=candidate, equivalence_key=key,
                          seed=seed, worker=worker, status=status, record=record,
                          reused_from=reused_from, order=order, asked=asked, started=started,
                          finished=finished)

    def _select(self, where, args=(), order="id", limit=None):
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        columns = _COLUMNS.format(key=self._key_column)
        rows = self._read(f"SELECT {columns} FROM evaluations WHERE run = ? AND {where} "
                          f"ORDER BY {order}{tail}", (self._need_run(), *args))
        return [self._evaluation(row) for row in rows]

    def evaluation(self, eval_id: int) -> Evaluation:
        found = self._select("id = ?", (int(eval_id),))
        if not found:
            raise StoreError(f"evaluation {eval_id} does not exist in run {self.run_name!r}")
        return found[0]

    def evaluations(self) -> list[Evaluation]:
        """Every evaluation of the current run, in the order asked."""
        return self._select("1")

    def pending(self) -> list[Evaluation]:
        """Asked but not finished (``pending`` or ``running``), in the order asked."""
        return self._select("status IN ('pending', 'running')")

    def results(self) -> list[Evaluation]:
        """Finished evaluations (``ok`` and ``failed``) in completion order."""
        return self._select("status IN ('ok', 'failed')", order="completion")

    def lookup(self, equivalence_key: str | None, seed: int | None = None) -> Evaluation | None:
        """A finished evaluation of the current run with this equivalence key (and training
        seed, when given): the first one finished that was evaluated rather than reused.
        ``None`` if there is none, or the key is ``None``."""
        if equivalence_key is None:
            return None
        where = f"{self._key_column} = ? AND status IN ('ok', 'failed')"
        args = [equivalence_key]
        if seed is not None:
            where += " AND seed = ?"
            args.append(int(seed))
        found = self._select(where, args, order="reused_from IS NOT NULL, completion",
                             limit=1)
        return found[0] if found else None

    def best(self, k: int = 1, metric: str = "validation_accuracy",
             distinct: bool = True) -> list[Evaluation]:
        """The ``k`` finished, successful evaluations with the highest
        ``record.fitness(metric)``, best first; ties go to the earlier finished.
        ``distinct`` leaves out reused copies, so a function and its numerical twins appear
        once. Records without a finite value for the metric are left out."""
        where = "status = 'ok'" + (" AND reused_from IS NULL" if distinct else "")
        scored = [(ev.record.fitness(metric), ev) for ev in self._select(where,
                                                                           order="completion")]
        scored = [(f, ev) for f, ev in scored if math.isfinite(f)]
        scored.sort(key=lambda item: -item[0])  # stable: completion order breaks ties
        return [ev for _, ev in scored[:max(int(k), 0)]]

    def counts(self) -> dict:
        """``{"asked", "pending", "running", "ok", "failed", "finished", "reused",
        "evaluated"}`` for the current run (``evaluated``: finished and not reused)."""
        run = self._need_run()
        counts = dict.fromkeys((PENDING, RUNNING, OK, FAILED), 0)
        for status, number in self._read("SELECT status, COUNT(*) FROM evaluations WHERE "
                                         "run = ? GROUP BY status", (run,)):
            counts[status] = number
        reused = self._read("SELECT COUNT(*) FROM evaluations WHERE run = ? AND reused_from "
                            "IS NOT NULL", (run,))[0][0]
        finished = counts[OK] + counts[FAILED]
        return {"asked": sum(counts.values()), "pending": counts[PENDING],
                "running": counts[RUNNING], "ok": counts[OK], "failed": counts[FAILED],
                "finished": finished, "reused": reused, "evaluated": finished - reused}



    # ----------------------------------------------------------------------- features
    def put_features(self, kind: str, items) -> int:
        """Cache per-function features (e.g. AQuaSurF's FIM features) under ``kind``, a
        string naming how they were computed; ``items``: ``(key, JSON-safe value)`` pairs.
        A key already cached for ``kind`` keeps its first value. Not tied to a run: every
        search on this store with the same ``kind`` shares them. Returns the rows added."""
        rows = [(str(kind), str(key), json.dumps(json_normalize(value), sort_keys=True,
                                                 allow_nan=False)) for key, value in items]

        def body(cur):
            before = cur.execute("SELECT COUNT(*) FROM features WHERE kind = ?",
                                 (str(kind),)).fetchone()[0]
            cur.executemany("INSERT OR IGNORE INTO features (kind, key, value) VALUES "
                            "(?, ?, ?)", rows)
            return cur.execute("SELECT COUNT(*) FROM features WHERE kind = ?",
                               (str(kind),)).fetchone()[0] - before

        return self._write(body) if rows else 0

    def features(self, kind: str) -> dict:
        """``{key: value}`` cached under ``kind``, in the order they were added."""
        return {key: json.loads(value) for key, value in self._read(
            "SELECT key, value FROM features WHERE kind = ? ORDER BY rowid", (str(kind),))}
