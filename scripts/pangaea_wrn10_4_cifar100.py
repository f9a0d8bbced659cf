"""PANGAEA (ch. 4) for WRN-10-4 on CIFAR-100 (A.2.1: 100-epoch search, 200-epoch final).

    python scripts/pangaea_wrn10_4_cifar100.py                 # the paper's settings (needs the tfds dataset)
    python scripts/pangaea_wrn10_4_cifar100.py --smoke         # one minute on mock data (what CI runs)
    python scripts/pangaea_wrn10_4_cifar100.py --workers 4     # or --executor ray --ray-address HOST:PORT

The journal goes to runs/*.db; re-running the same command resumes it. Afterwards:
`keras-actfn report <store>` prints the top functions and writes the plots.
"""

import sys

from keras_actfn.search.runner import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main(
        description=__doc__.splitlines()[0], algorithm="pangaea", recipe="pangaea_wrn_10_4_search",
        final_recipe="pangaea_wrn_10_4_final", task=None, budget=1000))
