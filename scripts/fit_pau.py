"""Fit the initial PAU coefficients (Leaky ReLU, slope 0.01) and print them as constants.

Usage::

    PYTHONPATH=. python scripts/fit_pau.py [--numerator-degree 5] [--denominator-degree 4]

The fit itself is :func:`keras_actfn.layers.baselines.fit_pau_coefficients`: a linearized
least-squares start refined by Levenberg-Marquardt least squares on 6001 equally spaced
points of [-3, 3]. The printed block is what ``PAU_INIT_NUMERATOR`` /
``PAU_INIT_DENOMINATOR`` in baselines.py hold (12 significant digits); the script also
reports how far the stored constants are from the fresh fit.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_actfn.layers import baselines  # noqa: E402


def _format(name, values):
    items = [f"{v:.11e}" for v in values]
    lines = [", ".join(items[i:i + 3]) + "," for i in range(0, len(items), 3)]
    return f"{name} = (\n" + "".join(f"    {line}\n" for line in lines) + ")"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numerator-degree", type=int, default=5)
    parser.add_argument("--denominator-degree", type=int, default=4)
    args = parser.parse_args(argv)

    numerator, denominator, error = baselines.fit_pau_coefficients(
        args.numerator_degree, args.denominator_degree)
    low, high = baselines.PAU_FIT_INTERVAL
    print(f"# least squares vs leaky_relu(slope={baselines.PAU_LEAKY_SLOPE}) on "
          f"{baselines.PAU_FIT_POINTS} points of [{low:g}, {high:g}]")
    print(f"# max |error| = {error:.6g}")
    print(_format("PAU_INIT_NUMERATOR", numerator))
    print(_format("PAU_INIT_DENOMINATOR", denominator))

    if (args.numerator_degree, args.denominator_degree) == (5, 4):
        stored_error = baselines.pau_fit_error(baselines.PAU_INIT_NUMERATOR,
                                               baselines.PAU_INIT_DENOMINATOR)
        drift = max(abs(a - b) for a, b in zip(numerator + denominator,
                                               baselines.PAU_INIT_NUMERATOR
                                               + baselines.PAU_INIT_DENOMINATOR))
        print(f"# stored constants: max |error| = {stored_error:.6g}, "
              f"max |coefficient difference| from this fit = {drift:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
