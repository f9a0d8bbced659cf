"""Quick start on the embedded MNIST-1D task (no download, a minute or two on a laptop CPU).

Builds the MNIST-1D CNN with ReLU, makes a copy whose ReLUs are replaced by a function that
PANGAEA discovered (dissertation Table 4.2), trains both from the same initial weights with
the same seed, and prints the two test accuracies.

    python scripts/quickstart.py [--fn "max(swish(x), alpha*log(sigmoid(relu(x))))"] [--epochs 30]
"""

import argparse
import time

import numpy as np

import keras_actfn as ka
from keras_actfn.backend import keras, tf
from keras_actfn.data import load_mnist1d
from keras_actfn.models import mnist1d_cnn


def train(model, data, epochs, seed, batch_size=128):
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=batch_size,
                        validation_data=(data["x_val"], data["y_val"]), verbose=0)
    _, test_acc = model.evaluate(data["x_test"], data["y_test"], verbose=0)
    return test_acc, max(history.history["val_accuracy"]), time.perf_counter() - start


def main(argv=None):
    default_fn = ka.DISCOVERED_FUNCTIONS["general_max_swish_log_sigmoid"][0]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fn", default=default_fn, help="activation function text")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"{ka.keras_description()}; MNIST-1D generated locally")
    data = load_mnist1d()
    keras.utils.set_random_seed(args.seed)
    relu_model = mnist1d_cnn("relu")
    found_model = ka.replace_activations(relu_model, args.fn)  # same initial weights
    results = {}
    for name, model in (("ReLU", relu_model), (str(ka.parse(args.fn)), found_model)):
        results[name] = train(model, data, args.epochs, args.seed)
    width = max(len(n) for n in results)
    print(f"\n{'activation':<{width}}  test acc  best val acc  train time")
    for name, (test_acc, val_acc, seconds) in results.items():
        print(f"{name:<{width}}  {test_acc:8.4f}  {val_acc:12.4f}  {seconds:8.1f} s")


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    np.set_printoptions(precision=4)
    main()
