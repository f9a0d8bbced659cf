"""Child process of the user-search SIGKILL test: run the search of tests/test_user_search
on STORE and SIGKILL itself right after the K-th result is committed.

    python tests/user_search_child.py STORE --die-after K
"""

import argparse
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import keras_actfn as ka  # noqa: E402
from keras_actfn.search.engine.store import Store  # noqa: E402
from user_models import make_data, make_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--die-after", type=int, required=True)
    args = parser.parse_args()
    complete = Store.complete
    done = [0]

    def dying_complete(self, *a, **k):
        result = complete(self, *a, **k)
        done[0] += 1
        if done[0] == args.die_after:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Store.complete = dying_complete
    x, y = make_data(480)
    search = ka.ActivationSearch(make_model(), method="pangaea", budget=4, store=args.store,
                                 progress=False, final_seeds=0, population=2, sample=2)
    search.search(x[:384], y[:384], validation_data=(x[384:], y[384:]), epochs=1,
                  batch_size=64)
    print("finished")


if __name__ == "__main__":
    main()
