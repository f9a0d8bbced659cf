"""Issue 17, items 3, 4, 5, 7, 8: locks on GRAFS checkpoint folders, every numeric flag
validated, read-only stores, errors that name their file and cause, nothing created by a
rejected command. Each test feeds the input the probe used and checks the exit status (2),
a single line naming the file and the cause, no traceback, and what is left on disk."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import pytest

from keras_actfn.cli import common, main
from keras_actfn.cli.search import SEARCH_METHODS
from keras_actfn.search.engine.driver import run_search
from keras_actfn.search.grafs.search import (CheckpointError, CheckpointLockedError,
                                             check_checkpoint, checkpoint_lock)
from keras_actfn.search.pangaea import Pangaea
from keras_actfn.search.engine.store import Store, StoreError
from search_fakes import FakeEvaluator

GRAFS = ["search", "grafs", "--epochs", "2", "--seeds", "1", "--final-seeds", "0",
         "--subset", "128", "-q"]


def one_line_error(capsys, *needles):
    """The command's stderr: exactly one line, holding every needle, no traceback."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def usage_error(capsys, *needles):
    """argparse's usage error: usage lines, then one error line holding every needle."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage:") and "Traceback" not in "\n".join(err)
    for needle in needles:
        assert needle in err[-1], (needle, err[-1])


# ------------------------------------------------------------------- item 4: numeric flags
def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _all_flags():
    """(command path, action) for every option of every (sub-)command."""
    stack = [((), common.build_parser())]
    while stack:
        path, parser = stack.pop()
        children = list(_subparsers(parser))
        stack.extend((path + (name,), sub) for name, sub in children)
        for action in parser._actions:
            if action.option_strings:
                yield path, action


NAMED_TYPES = {common.positive_int, common.non_negative_int, common.seed_int, common.finite_float,
               common.positive_float, common.non_negative_float, common.fraction, common.open_fraction,
               common.unit_interval}


def test_every_numeric_flag_of_every_command_has_a_checking_type():
    numeric = 0
    for path, action in _all_flags():
        assert action.type not in (int, float), (path, action.option_strings)
        if action.type is not None and getattr(action.type, "__name__", "").startswith(
                ("a ", "an ", "must")):
            numeric += 1
            assert action.type in NAMED_TYPES or action.type.__qualname__.startswith(
                "_int_type"), (path, action.option_strings)
    assert numeric > 60  # every method of search has its own copy of the common flags


@pytest.mark.parametrize("kind, good, bad", [
    (common.positive_int, {"1": 1, "12": 12}, ["0", "-3", "1.5", "two", ""]),
    (common.non_negative_int, {"0": 0, "7": 7}, ["-1", "x"]),
    (common.seed_int, {"0": 0, "4294967295": 2**32 - 1}, ["-1", "4294967296"]),
    (common.finite_float, {"-2.5": -2.5, "0": 0.0}, ["nan", "inf", "-inf", "one"]),
    (common.positive_float, {"1e-9": 1e-9}, ["0", "-1", "nan"]),
    (common.non_negative_float, {"0": 0.0}, ["-0.1", "inf"]),
    (common.fraction, {"1": 1.0, "0.01": 0.01}, ["0", "1.5", "nan"]),
    (common.open_fraction, {"0.1": 0.1}, ["0", "1", "-0.5"]),
    (common.unit_interval, {"0": 0.0, "1": 1.0}, ["1.01", "-0.01"]),
])
def test_numeric_types_accept_their_range_only(kind, good, bad):
    import argparse

    for text, value in good.items():
        assert kind(text) == value and type(kind(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            kind(text)


@pytest.mark.parametrize("method", list(SEARCH_METHODS))
def test_search_epochs_0_is_refused_by_every_method(method, tmp_path, capsys):
    """The probe's input: `search ... --epochs 0` ran the full recipe."""
    store = tmp_path / "s.db"
    assert main(["search", method, "--epochs", "0", "--store", str(store)]) == 2
    usage_error(capsys, "--epochs", "must be a positive integer, got 0")
    assert not store.exists()


@pytest.mark.parametrize("argv, flag", [
    (["evaluate", "relu", "--seed", "-1"], "--seed"),
    (["show", "x", "--range", "nan", "1", "--no-plot"], "--range"),
    (["show", "x", "--samples", "-1", "--no-plot"], "--samples"),
    (["autoinit", "m.keras", "-o", "o.keras", "--signal-variance", "0"], "--signal-variance"),
    (["autoinit", "m.keras", "-o", "o.keras", "--input-var", "-1"], "--input-var"),
    (["autoinit", "m.keras", "-o", "o.keras", "--plot-samples", "1"], "--plot-samples"),
    (["report", "s.db", "--top", "0"], "--top"),
    (["search", "pangaea", "--threshold", "2"], "--threshold"),
    (["search", "pangaea", "--validation-split", "1"], "--validation-split"),
    (["search", "grafs", "--warm-start", "-1"], "--warm-start"),
    (["search", "grafs", "--shrink-start", "0"], "--shrink-start"),
    (["bench", "build", "--workers", "0", "--out", "b.json"], "--workers"),
    (["bench", "replay", "b.json", "--top", "0", "--out", "d"], "--top"),
    (["bench", "plot", "b.json", "--budget", "0", "--out", "d"], "--budget"),
])
def test_out_of_range_flags_are_usage_errors(argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    usage_error(capsys, flag, "must be")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------- item 8: nothing left when refused
@pytest.mark.parametrize("extra, needle", [
    (["cafe", "--population", "4", "--elite", "10"], "--newcomers + --elite"),
    (["aquasurf", "--space", "nope"], "unknown schema"),
    (["grafs", "--warm-start", "50", "--epochs", "2"], "warm_start_epochs <= epochs"),
])
def test_refused_searches_create_no_store_and_no_folder(extra, needle, tmp_path, capsys):
    store = tmp_path / "runs" / "s.db"
    assert main(["search", *extra, "--store", str(store), "--final-seeds", "0", "-q"]) == 2
    one_line_error(capsys, needle)
    assert os.listdir(tmp_path) == []


def test_a_store_created_for_a_refused_search_is_removed(tmp_path, monkeypatch, capsys):
    """The safety net for checks no flag makes: an algorithm refusing its options after
    the store was opened leaves no file; a store that held a run before is kept."""
    from keras_actfn.search import runner

    def refuse(*args, **kwargs):
        raise ValueError("population too small for this space")

    monkeypatch.setattr(runner, "make_algorithm", refuse)
    store = tmp_path / "s.db"
    argv = ["search", "pangaea", "--budget", "2", "--epochs", "1", "--store", str(store), "-q"]
    assert main(argv) == 2
    one_line_error(capsys, "population too small")
    assert os.listdir(tmp_path) == []
    with Store(store) as journal:
        journal.open_run({"earlier": "search"})
    assert main(argv) == 2
    capsys.readouterr()
    assert store.exists()
    with Store(store, readonly=True) as journal:
        assert [run["config"] for run in journal.runs()] == [{"earlier": "search"}]


# --------------------------------------------------------------- item 7: the store's errors
def test_store_path_under_an_existing_file(tmp_path, capsys):
    blocker = tmp_path / "notdir"
    blocker.write_text("a file")
    store = blocker / "s.db"
    assert main(["search", "pangaea", "--budget", "1", "--store", str(store), "-q"]) == 2
    one_line_error(capsys, str(blocker), "is a file, not a folder")
    assert blocker.read_text() == "a file" and os.listdir(tmp_path) == ["notdir"]
    with pytest.raises(StoreError, match="is a file, not a folder"):
        Store(store)


def _small_store(path):
    with Store(path) as store:
        run_search(Pangaea(population=3, sample=2, budget=6, seed=0), FakeEvaluator(), store,
                   budget=6)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "run.db"
    _small_store(path)
    return path


def test_a_damaged_store_is_one_line_for_report_and_search(small_store, tmp_path, capsys):
    """A store whose second page (the runs table) is overwritten opens (the header is
    intact) and fails on the first read of that page: a StoreError too, not sqlite3's
    traceback."""
    data = bytearray(small_store.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = bytes(range(256)) * 16
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(data))
    assert main(["report", str(damaged), "--out", str(tmp_path / "rep")]) == 2
    one_line_error(capsys, str(damaged), "malformed")
    with pytest.raises(StoreError, match="malformed"):
        with Store(damaged) as store:
            store.select_run("search")  # reads the runs index only
            store.run_config()  # reads the runs table: page 2


def test_store_lock_conflict_is_one_line(tmp_path, capsys):
    store = tmp_path / "s.db"
    with Store(store) as holder, holder.driver_lock():
        assert main(["search", "pangaea", "--budget", "1", "--epochs", "1",
                     "--final-seeds", "0", "--store", str(store), "-q"]) == 2
    one_line_error(capsys, "another search process", f"pid {os.getpid()}", str(store))


# -------------------------------------------------------------- item 5: read-only stores
def test_a_read_only_store_reads_and_refuses_writes(small_store, tmp_path):
    """Store(readonly=True) opens with SQLite's mode=ro, which holds for root too: the
    file's bytes do not change and every write is a StoreError naming the store."""
    copy = tmp_path / "copy.db"
    shutil.copy(small_store, copy)
    before = copy.read_bytes()
    with Store(copy, readonly=True) as store:
        store.select_run("search")
        assert store.counts()["finished"] == 6 and len(store.results()) == 6
        for write in (lambda: store.set_run_status("x"), lambda: store.save_state({}),
                      lambda: store.open_run({"a": 1}, name="other")):
            with pytest.raises(StoreError, match="opened read-only"):
                write()
        with pytest.raises(StoreError, match="opened read-only"):
            with store.driver_lock():
                pass
    assert copy.read_bytes() == before
    assert not os.path.exists(f"{copy}.lock")
    with pytest.raises(StoreError, match="no search store"):
        Store(tmp_path / "missing.db", readonly=True)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="empty SQLite file"):
        Store(empty, readonly=True)


_AS_READER = textwrap.dedent("""
    import json, sys
    from keras_actfn.cli import main
    folder = sys.argv[1]
    runs = {
        "report": ["report", folder + "/ro/run.db", "--out", folder + "/out"],
        "report_beside": ["report", folder + "/ro/run.db"],
        "resume": ["search", "pangaea", "--budget", "6", "--store", folder + "/rw/run.db"],
        "new_in_ro_folder": ["search", "pangaea", "--budget", "6",
                             "--store", folder + "/ro/new.db"],
    }
    results = {}
    for name, argv in runs.items():
        import contextlib, io
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
        results[name] = [code, err.getvalue(), out.getvalue()]
    print("RESULTS" + json.dumps(results))
""")


def test_read_only_store_messages_with_permissions_simulated(small_store, tmp_path,
                                                             monkeypatch, capsys):
    """The fast counterpart of the test below: the same commands in-process, with
    ``os.access`` saying what it says to an unprivileged user (a simulation: as root the
    real permission bits do not stop a write). The reads are real: report opens the store
    with SQLite's mode=ro."""
    for sub in ("ro", "rw", "out"):
        (tmp_path / sub).mkdir()
    for sub in ("ro", "rw"):
        shutil.copy(small_store, tmp_path / sub / "run.db")
    unwritable = {str(tmp_path / "ro"), str(tmp_path / "ro" / "run.db"),
                  str(tmp_path / "rw" / "run.db")}
    real_access = os.access

    def access(path, mode, **kwargs):
        if mode & os.W_OK and os.path.abspath(os.fspath(path)) in unwritable:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    before = (tmp_path / "ro" / "run.db").read_bytes()
    assert main(["report", str(tmp_path / "ro" / "run.db"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "6 finished evaluations" in out and "progress.png" in out
    assert (tmp_path / "ro" / "run.db").read_bytes() == before
    assert main(["report", str(tmp_path / "ro" / "run.db")]) == 2
    one_line_error(capsys, "the report folder", "not writable", "--out")
    search = ["search", "pangaea", "--budget", "6", "--store"]
    assert main(search + [str(tmp_path / "rw" / "run.db")]) == 2
    one_line_error(capsys, "is read-only", "rw/run.db", "keras-actfn report reads it")
    assert main(search + [str(tmp_path / "ro" / "new.db")]) == 2
    one_line_error(capsys, "cannot create the search store", "ro/new.db", "is not writable")
    assert not (tmp_path / "ro" / "new.db").exists()


@pytest.mark.slow
def test_read_only_store_file_and_folder_as_an_unprivileged_user(small_store):
    """Real permissions: the commands run in a child process as `nobody` (setpriv) when
    the tests run as root (root writes through chmod), else as this user after chmod. `ro/` is a
    read-only folder holding a WAL store without its -shm file (SQLite's mode=ro cannot
    open that; the immutable fallback does); `rw/run.db` is a read-only file in a writable
    folder (the probe's resume)."""
    folder = tempfile.mkdtemp(prefix="ka_readonly_", dir="/tmp")
    try:
        for sub in ("ro", "rw", "out"):
            os.mkdir(os.path.join(folder, sub))
        for sub in ("ro", "rw"):
            shutil.copy(small_store, os.path.join(folder, sub, "run.db"))
        as_root = os.geteuid() == 0
        if as_root:
            for sub in ("rw", "out"):
                shutil.chown(os.path.join(folder, sub), 65534, 65534)
            shutil.chown(os.path.join(folder, "rw", "run.db"), 65534, 65534)
        os.chmod(os.path.join(folder, "rw", "run.db"), 0o444)
        os.chmod(os.path.join(folder, "ro", "run.db"), 0o444)
        os.chmod(os.path.join(folder, "ro"), 0o555)
        os.chmod(folder, 0o755)
        env = {**os.environ, "HOME": folder + "/out", "MPLCONFIGDIR": folder + "/out",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # as root: util-linux's setpriv drops to nobody (no capabilities left)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] \
            if as_root else []
        child = subprocess.run(drop + [sys.executable, "-c", _AS_READER, folder], env=env,
                               capture_output=True, text=True, timeout=300, cwd=folder)
        line = [s for s in child.stdout.splitlines() if s.startswith("RESULTS")]
        assert line, child.stdout[-2000:] + child.stderr[-3000:]
        results = json.loads(line[0][len("RESULTS"):])

        code, err, out = results["report"]
        assert code == 0, err
        assert "6 finished evaluations" in out and "progress.png" in out
        assert sorted(os.listdir(os.path.join(folder, "ro"))) == ["run.db"]  # nothing added

        for name, needles in {
            "report_beside": ["the report folder", "not writable", "--out"],
            "resume": ["is read-only", "rw/run.db", "keras-actfn report reads it"],
            "new_in_ro_folder": ["cannot create the search store", "ro/new.db",
                                 "is not writable"],
        }.items():
            code, err, _ = results[name]
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, (name, err)
            assert all(n in lines[0] for n in needles), (name, lines[0])
        assert not os.path.exists(os.path.join(folder, "ro", "new.db"))
    finally:
        for root, dirs, _ in os.walk(folder):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------- items 3 and 7: GRAFS checkpoints
def test_grafs_checkpoint_folder_in_use_is_refused_before_anything(tmp_path, capsys):
    """The probe ran two `search grafs --checkpoint D` at once: the second must stop at
    once, naming the folder and the holder, without a store."""
    folder = tmp_path / "ck"
    store = tmp_path / "second.db"
    with checkpoint_lock(folder):  # another open file description: flock conflicts
        assert main(GRAFS + ["--checkpoint", str(folder), "--store", str(store)]) == 2
        one_line_error(capsys, "another process", f"pid {os.getpid()}", str(folder))
        with pytest.raises(CheckpointLockedError, match="another process"):
            with checkpoint_lock(folder):
                pass
    assert not store.exists()
    with checkpoint_lock(folder):  # released
        pass


def test_grafs_search_locks_its_seed_folder(tmp_path):
    from keras_actfn.search.grafs.search import grafs_search

    def never_built():
        raise AssertionError("the model is built only after the lock is taken")

    seed_folder = tmp_path / "ck" / "seed0"
    with checkpoint_lock(seed_folder):
        with pytest.raises(CheckpointLockedError, match=str(seed_folder)):
            grafs_search(never_built, task=None, epochs=2, checkpoint=seed_folder)


def _fake_state(folder, checkpoint="epoch-2"):
    state = {"epoch": 2, "checkpoint": checkpoint, "traces": 1,
             "active": [[4], [4], [0], [22], [1], [2]], "computed": [[4], [0], [1], [2]],
             "history": [{"epoch": 1, "phase": "warm", "train_loss": 2.3}],
             "config": {"epochs": 2, "seed": 0}}
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(state)
    (folder / "state.json").write_text(text)
    return text


def test_truncated_grafs_state_json_names_the_file(tmp_path, capsys):
    seed = tmp_path / "ck" / "seed0"
    text = _fake_state(seed)
    (seed / "state.json").write_text(text[:text.index('"warm"') + 3])  # cut mid-write
    store = tmp_path / "g.db"
    assert main(GRAFS + ["--checkpoint", str(tmp_path / "ck"), "--store", str(store)]) == 2
    one_line_error(capsys, str(seed / "state.json"), "Unterminated string",
                   "delete the folder")
    assert not store.exists()


def test_missing_grafs_checkpoint_index_names_the_file(tmp_path, capsys):
    seed = tmp_path / "ck" / "seed0"
    _fake_state(seed)
    (seed / "epoch-2.data-00000-of-00001").write_bytes(b"\0" * 16)
    store = tmp_path / "g.db"
    assert main(GRAFS + ["--checkpoint", str(tmp_path / "ck"), "--store", str(store)]) == 2
    one_line_error(capsys, str(seed), "epoch-2.index", "is missing")
    assert not store.exists()
    (seed / "epoch-2.index").write_bytes(b"")
    assert check_checkpoint(seed)["epoch"] == 2  # complete again: the state reads back
    (seed / "epoch-2.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError,
                       match=r"epoch-2\.data-\*, named by state.json, is missing"):
        check_checkpoint(seed)
    (seed / "state.json").write_text('{"epoch": "two"}')
    with pytest.raises(CheckpointError, match="lacks valid epoch, checkpoint, traces"):
        check_checkpoint(seed)


# ------------------------------------------------------------ item 7: autoinit's real cause
def test_autoinit_bad_keras_file_shows_our_parse_error(tmp_path, capsys):
    """A .keras file whose CustomActivation text does not parse: Keras says only "could not
    be deserialized properly"; the line must carry our ParseError."""
    from keras_actfn.backend import keras
    from keras_actfn.layers import CustomActivation

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                              CustomActivation("x*sigmoid(x)"), keras.layers.Dense(2)])
    good, bad = tmp_path / "good.keras", tmp_path / "bad.keras"
    model.save(good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                assert b'"x * sigmoid(x)"' in data
                data = data.replace(b'"x * sigmoid(x)"', b'"x +* sigmoid(x)"')
            zout.writestr(item, data)
    out = tmp_path / "out.keras"
    assert main(["autoinit", str(bad), "-o", str(out)]) == 2
    one_line_error(capsys, str(bad), "CustomActivation", "bad activation function "
                   "'x +* sigmoid(x)'", "found '*' at position 3")
    assert not out.exists()
