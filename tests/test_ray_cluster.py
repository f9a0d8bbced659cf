"""The Ray executor on a real local Ray cluster (2 CPUs, one declared GPU), not a fake module.

Every scenario runs in ONE process tree inside a network namespace that holds only ``lo``
(``unshare --net``, as root: CI is), so Ray can talk over loopback only; the tests also
check that every socket of that namespace -- Ray's processes' included -- is on 127.0.0.1.
tests/ray_scenarios.py starts the cluster once, runs the scenarios (two of them at the same
time, on the two halves of the cluster) and writes what happened to a JSON file; the tests
below check it against independent references: the same search run uninterrupted in one
process, the evaluator's own log of where and when it ran, and what Ray assigned
(``ray.get_runtime_context()``).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import ray_scenarios as scenarios  # noqa: E402
from shared_results import run_once  # noqa: E402

LOOPBACK = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is missing (util-linux)"
    try:
        probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"unshare --net failed to run: {err}"
    if probe.returncode != 0:
        return f"unshare --net failed: {(probe.stderr or probe.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    # one cluster run for both xdist workers (the module's tests may be split between them)
    return run_once(tmp_path_factory, "ray-facts", _run_scenarios)[1]


def _run_scenarios(folder):
    problem = _namespace_problem()
    if problem is not None:
        pytest.fail(f"the real-Ray tests run Ray in a network namespace holding only lo "
                    f"(unshare --net, as root) so that it never talks beyond 127.0.0.1, and "
                    f"that is not possible here: {problem}", pytrace=False)
    out = folder / "facts.json"
    run = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$1" "$2"',
         sys.executable, str(HERE / "ray_scenarios.py"), str(out)],
        capture_output=True, text=True, timeout=480, cwd=str(HERE.parent))
    if not out.exists():
        pytest.fail(f"tests/ray_scenarios.py wrote no facts (exit {run.returncode}):\n"
                    f"{run.stderr[-4000:]}", pytrace=False)
    data = json.loads(out.read_text())
    print(f"real-Ray scenarios: {data.get('total_seconds', 0):.1f} s (head up after "
          f"{data.get('ray_started_seconds', 0):.1f} s)")
    return data


def _no_error(facts, name):
    error = facts.get(f"{name}_error")
    assert error is None, f"{name} raised:\n{error}"


def _ip(address):
    """The address of a socket end; an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, how
    Ray's dual-stack sockets show) as its IPv4 address."""
    ip = ipaddress.ip_address(address[0])
    return getattr(ip, "ipv4_mapped", None) or ip


def test_ray_talks_over_loopback_only(facts):
    _no_error(facts, "retry_scenario")
    assert facts["nodes"] == ["127.0.0.1"]
    assert facts["address"].startswith("127.0.0.1:")
    sockets = facts["sockets"]
    names = {s["name"] for s in sockets}
    # the list really covers Ray's processes: its GCS, its raylet and a worker actor
    assert {"gcs_server", "raylet"} <= names, names
    assert any(name and "EvaluationWorker" in name for name in names), names
    for sock in sockets:
        assert _ip(sock["laddr"]) in LOOPBACK, sock
        if sock["raddr"]:
            assert _ip(sock["raddr"]) in LOOPBACK, sock


def _comparable(record):
    return (record["fn"], record["status"], record["reason"], record["validation_accuracy"],
            record["validation_loss"])


def test_search_on_ray_resumes_exactly_after_driver_sigkill(facts):
    _no_error(facts, "kill_scenario")
    budget = scenarios.KILL_BUDGET
    assert scenarios.KILL_AT <= facts["kill_finished_at_kill"] < budget
    assert "finished 10" in facts["kill_resume_stdout"], facts["kill_resume_stderr"]
    resumed, reference = facts["kill_resumed"], facts["kill_reference"]
    # the same candidates with the same results in the same order as the uninterrupted
    # in-process run (--workers 1 makes the order deterministic)
    assert [text for text, _ in resumed] == [text for text, _ in reference]
    assert [_comparable(r) for _, r in resumed] == [_comparable(r) for _, r in reference]
    assert len(resumed) == budget
    # nothing lost, at most the one evaluation in flight at the kill run twice
    first = [e["text"] for e in facts["kill_log_first"] if e["event"] == "end"]
    second = [e["text"] for e in facts["kill_log_second"] if e["event"] == "start"]
    assert len(first) >= scenarios.KILL_AT
    assert len(set(first) & set(second)) == 0
    started_first = [e["text"] for e in facts["kill_log_first"] if e["event"] == "start"]
    assert len(set(started_first) & set(second)) <= 1
    # (a candidate equivalent to one finished is reused, not evaluated: sets)
    assert set(first) | set(second) == {text for text, _ in resumed}


def _intervals(log):
    starts, out = {}, []
    for event in log:
        key = (event["text"], event["pid"])
        if event["event"] == "start":
            starts[key] = event["t"]
        else:
            out.append((starts.pop(key), event["t"]))
    out += [(t, float("inf")) for t in starts.values()]  # killed while running
    return sorted(out)


@pytest.mark.parametrize("which", ["kill_log_first", "kill_log_second"])
def test_workers_1_keeps_one_task_in_flight(facts, which):
    intervals = _intervals(facts[which])
    assert len(intervals) >= 4
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert end <= start  # each evaluation ended before the next began
    # and one long-lived worker ran them all
    assert len({e["pid"] for e in facts[which]}) == 1


def _results(facts):
    _no_error(facts, "retry_scenario")
    return {text: record for text, record in facts["retry_results"]}


def test_worker_killed_mid_evaluation_is_retried_once_then_recorded(facts):
    results = _results(facts)
    starts = collections.Counter(e["text"] for e in facts["retry_log"] if e["event"] == "start")
    always = results[scenarios.ALWAYS]
    assert always["status"] == "failed" and always["reason"] == "worker_crashed"
    assert always["info"]["attempts"] == 2 and "max_retries=1" in always["message"]
    assert starts[scenarios.ALWAYS] == 2  # the first run and exactly one retry
    once = results[scenarios.ONCE]  # killed the first time only: the retry succeeds
    assert once["status"] == "ok" and once["info"]["attempts"] == 2
    assert starts[scenarios.ONCE] == 2
    pids = {e["pid"] for e in facts["retry_log"] if e["text"] == scenarios.ALWAYS}
    assert len(pids) == 2  # the retry ran on a new worker
    # the search went on: every other candidate finished ok, each evaluated once
    counts = facts["retry_counts"]
    assert counts["finished"] == len(scenarios.ORDINARY) + 2 and counts["failed"] == 1
    assert all(results[text]["status"] == "ok" and starts[text] == 1
               for text in scenarios.ORDINARY)
    assert facts["retry_replaced"] == 3  # three deaths, three new workers
    assert sorted(facts["retry_marks"]) == ["sinh_x", "square_x"]


def test_resources_per_task_are_what_was_asked(facts):
    results = _results(facts)
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert len(ok) == len(scenarios.ORDINARY) + 1
    for record in ok:
        info = record["info"]
        assert info["resources"] == {"CPU": 0.5, "GPU": 0.5}  # what the executor asked
        assert info["cuda"] == "0"  # Ray's GPU, visible to the evaluation
        # TensorFlow's thread pools at the task's CPUs (0.5 rounds up to 1), memory growth
        assert info["intra"] == 1 and info["inter"] == 1 and info["env_intra"] == "1"
        assert info["growth"] == "true"


def test_tensorflow_imported_once_per_actor(facts):
    results = _results(facts)
    by_pid = collections.defaultdict(list)
    for _, record in facts["retry_results"]:
        if record["status"] == "ok":
            by_pid[record["info"]["pid"]].append(record["info"])
    # every evaluation ran in a process that already had TensorFlow (the actor imported it
    # when it started), and each process counted its own evaluations 1, 2, 3...: one
    # process, hence one TensorFlow import, per actor
    assert all(info["tf_loaded"] for infos in by_pid.values() for info in infos)
    for infos in by_pid.values():
        assert sorted(i["calls_in_process"] for i in infos) == list(range(1, len(infos) + 1))
    assert max(len(infos) for infos in by_pid.values()) >= 4
    assert sum(len(infos) for infos in by_pid.values()) == len(scenarios.ORDINARY) + 1
    assert len(results) == len(scenarios.ORDINARY) + 2


def test_data_dir_is_checked_on_the_first_worker(facts):
    _no_error(facts, "retry_scenario")
    message = facts["data_dir_error"]
    assert message is not None and "not-there" in message and "does not exist" in message
    assert "127.0.0.1" in message and "every node" in message
    assert "\n" not in message
