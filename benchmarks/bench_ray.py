"""What does running a search on Ray cost over the local process pool, and what does worker
reuse save?

On a local Ray cluster of this machine's CPUs (2 on the reference machine), the same
search -- the same candidates (a fixed list), the MNIST-1D ``quick`` recipe (``--epochs``
to shorten it), training seed 0 -- runs to the end with each executor at the same width
(``--workers``, default 2):

* ``pool``: :class:`~keras_actfn.search.engine.executors.LocalPoolExecutor` (spawned processes,
  each importing TensorFlow once);
* ``ray``: :class:`~keras_actfn.search.engine.executors.RayExecutor` with long-lived worker actors
  (``cpus_per_task`` = CPUs / workers);
* ``ray-fresh``: the same with ``reuse_workers=False``: every evaluation a Ray task in a
  fresh worker process (``max_calls=1``), which imports TensorFlow and loads the data
  again each time.

Reported per executor: wall seconds per candidate from the executor's start to the last
result (worker start-up included: what a search sees), and the ratios ray / pool (goal
<= 1.15) and ray-fresh / ray (what reuse saves). Rounds alternate the order of the
executors, so a slow spell of a shared machine hits them alike; the ratios are medians
over rounds.

Network: Ray must talk over loopback only. The script runs itself inside a network
namespace holding only ``lo`` (``unshare --net``, as root) and starts Ray on 127.0.0.1; it
refuses to run Ray otherwise.

    python benchmarks/bench_ray.py                       # ~5 minutes on 2 CPU cores
    python benchmarks/bench_ray.py --epochs 2 --rounds 1 # quicker, noisier

The exit status is 0 whatever the numbers: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FUNCTIONS = ("relu(x)", "tanh(x)", "x * sigmoid(x)", "elu(x)", "softsign(x)", "selu(x)",
             "abs(x) * tanh(x)", "softplus(x) - 1", "erf(x)", "arctan(x)", "x * erf(x)",
             "max(x, 0.1 * x)")
MARKER = "KERAS_ACTFN_BENCH_NETNS"


def _in_namespace(argv):
    """Re-run this script inside a loopback-only network namespace (once)."""
    if os.environ.get(MARKER) == "1":
        return None
    if shutil.which("unshare") is None:
        sys.exit("bench_ray.py: unshare is missing; Ray runs only in a loopback-only "
                 "network namespace here (unshare --net, as root)")
    env = dict(os.environ, **{MARKER: "1"})
    command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, os.path.abspath(__file__), *argv]
    return subprocess.call(command, env=env)


def _search(executor, functions, epochs):
    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.engine import make_evaluator
    from keras_actfn.search.engine.store import Store

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from ray_scenarios import _list_search

    evaluator = make_evaluator(task="mnist1d", recipe="quick",
                               **({"epochs": epochs} if epochs else {}))
    start = time.perf_counter()
    with Store(":memory:") as store:
        run_search(_list_search(list(functions)), evaluator, store,
                   executor=executor, poll_interval=0.05, reuse=False)
        records = [e.record for e in store.results()]
    wall = time.perf_counter() - start
    executor.close()
    failed = [r for r in records if r.failed]
    inside = statistics.median(r.runtime_s for r in records)
    return wall / len(records), len(records), failed, inside


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per candidate (default: the quick recipe's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs of the local Ray cluster (default: this machine's)")
    parser.add_argument("--pool-threads", type=int, default=None,
                        help="TensorFlow threads of each pool worker (default: what a Ray "
                             "task gets, its CPUs rounded up; 0: TensorFlow's default, all "
                             "cores)")
    args = parser.parse_args(argv)
    code = _in_namespace(sys.argv[1:] if argv is None else argv)
    if code is not None:
        return 0
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")])
    from keras_actfn.search.engine.ray_executor import task_threads

    # the same TensorFlow threads on both sides (the pool's spawned workers inherit these;
    # a Ray worker sets its own from its CPUs): the comparison is of the executors
    threads = task_threads(args.cpus / args.workers) if args.pool_threads is None \
        else args.pool_threads
    if threads:
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)
    import ray

    from keras_actfn.search.engine.executors import LocalPoolExecutor, RayExecutor

    ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    functions = (FUNCTIONS * 4)[:args.candidates]
    cpus = args.cpus / args.workers
    makers = {
        "pool": lambda: LocalPoolExecutor(workers=args.workers, gpus=None),
        "ray": lambda: RayExecutor(cpus_per_task=cpus, gpus_per_task=0,
                                   max_in_flight=args.workers),
        "ray-fresh": lambda: RayExecutor(cpus_per_task=cpus, gpus_per_task=0,
                                         max_in_flight=args.workers, reuse_workers=False),
    }
    print(f"{args.candidates} candidates (MNIST-1D quick"
          f"{f', {args.epochs} epochs' if args.epochs else ''}), {args.workers} workers, "
          f"Ray cluster of {args.cpus} CPUs ({cpus:g} per task), pool workers with "
          f"{threads or 'default'} TensorFlow threads, {args.rounds} round(s)")
    times = {name: [] for name in makers}
    for rnd in range(args.rounds):
        order = list(makers) if rnd % 2 == 0 else list(reversed(makers))
        for name in order:
            per, count, failed, inside = _search(makers[name](), functions, args.epochs)
            times[name].append(per)
            note = f", {len(failed)} failed: {failed[0].message[:80]}" if failed else ""
            print(f"  round {rnd + 1} {name:<10} {per:6.2f} s per candidate "
                  f"({count} candidates; median {inside:.2f} s inside the evaluation{note})",
                  flush=True)
    ray.shutdown()
    ratios = {
        "ray / pool": statistics.median(r / p for r, p in zip(times["ray"], times["pool"])),
        "ray-fresh / ray": statistics.median(f / r for f, r in zip(times["ray-fresh"],
                                                                   times["ray"])),
    }
    print()
    print(f"{'executor':<10}  {'s per candidate (median)':>24}")
    for name, values in times.items():
        print(f"{name:<10}  {statistics.median(values):>24.2f}")
    print()
    print(f"ray / pool       {ratios['ray / pool']:.2f}  (goal <= 1.15)")
    print(f"ray-fresh / ray  {ratios['ray-fresh / ray']:.2f}  (what worker reuse saves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
