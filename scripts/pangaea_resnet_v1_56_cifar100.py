"""PANGAEA (ch. 4) for ResNet-v1-56 on CIFAR-100 (A.2.1, with the one-epoch warm-up).

    python scripts/pangaea_resnet_v1_56_cifar100.py                 # the paper's settings (needs the tfds dataset)
    python scripts/pangaea_resnet_v1_56_cifar100.py --smoke         # one minute on mock data (what CI runs)
    python scripts/pangaea_resnet_v1_56_cifar100.py --workers 4     # or --executor ray --ray-address HOST:PORT

The journal goes to runs/*.db; re-running the same command resumes it. Afterwards:
`keras-actfn report <store>` prints the top functions and writes the plots.
"""

import sys

from keras_actfn.search.runner import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main(
        description=__doc__.splitlines()[0], algorithm="pangaea", recipe="pangaea_resnet_v1_56_search",
        final_recipe="pangaea_resnet_v1_56_final", task=None, budget=1000))
