"""Child process of the SIGKILL test: run (or resume) a toy search on a store.

    python tests/search_child.py STORE --budget N --seed S [--delay SECONDS]
                                 [--die-at POINT:K]

Prints ``started`` once the imports are done and the search is about to run, and
``finished <n>`` at the end. ``--die-at POINT:K`` makes the process SIGKILL itself the K-th
time it reaches POINT, one of the windows where a crash is most dangerous:

* ``before-pending``: the algorithm has asked, nothing is written yet;
* ``before-submit``: the candidate is pending, not yet running;
* ``in-complete``: inside the result's transaction, after the record is written and
  before the state and the commit;
* ``before-complete``: the algorithm was told, the result is not written;
* ``after-complete``: the result and state are committed, nothing after.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from keras_actfn.search.engine.driver import run_search  # noqa: E402
from keras_actfn.search.engine.store import Store  # noqa: E402
from search_fakes import FakeEvaluator, RandomListSearch  # noqa: E402

POINTS = ("before-pending", "before-submit", "in-complete", "before-complete",
          "after-complete")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--budget", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--die-at", default=None)
    args = parser.parse_args()

    point, count = None, 0
    if args.die_at:
        point, k = args.die_at.split(":")
        if point not in POINTS:
            parser.error(f"--die-at point must be one of {POINTS}")
        count = int(k)
    hits = {name: 0 for name in POINTS}

    def reach(name):
        if name == point:
            hits[name] += 1
            if hits[name] == count:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    class DyingStore(Store):
        def add_pending(self, *a, **k):
            reach("before-pending")
            return super().add_pending(*a, **k)

        def mark_running(self, *a, **k):
            reach("before-submit")
            return super().mark_running(*a, **k)

        def _insert_state(self, cur, run, state):
            if self._completing:
                reach("in-complete")
            return super()._insert_state(cur, run, state)

        def complete(self, *a, **k):
            reach("before-complete")
            self._completing = True
            try:
                result = super().complete(*a, **k)
            finally:
                self._completing = False
            reach("after-complete")
            return result

    store = DyingStore(args.store)
    store._completing = False
    print("started", flush=True)
    summary = run_search(RandomListSearch(seed=args.seed), FakeEvaluator(delay=args.delay),
                         store, budget=args.budget, seed=args.seed)
    store.close()
    print("tensorflow imported:", "tensorflow" in sys.modules, flush=True)
    print("finished", summary.counts["finished"], flush=True)


if __name__ == "__main__":
    main()
