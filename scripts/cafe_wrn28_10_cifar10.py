"""CAFE (ch. 3): evolution in S_2 for WRN-28-10 on CIFAR-10 (A.1: 50-epoch search, 200-epoch final).

    python scripts/cafe_wrn28_10_cifar10.py                 # the paper's settings (needs the tfds dataset)
    python scripts/cafe_wrn28_10_cifar10.py --smoke         # one minute on mock data (what CI runs)
    python scripts/cafe_wrn28_10_cifar10.py --workers 4     # or --executor ray --ray-address HOST:PORT

The journal goes to runs/*.db; re-running the same command resumes it. Afterwards:
`keras-actfn report <store>` prints the top functions and writes the plots.
"""

import sys

from keras_actfn.search.runner import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main(
        description=__doc__.splitlines()[0], algorithm="cafe", recipe="cafe_search",
        final_recipe="cafe_final", task=None, budget=455))
