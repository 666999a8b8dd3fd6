"""Backprop baseline for the default task: scikit-learn's MLPClassifier with the same architecture
(64 → hidden → 10, tanh) on the same stratified split as `eggroll-np train` (20 % held out, split seed 0).

    .venv/bin/python bench/digits_baseline.py            # five initialization seeds, hidden 64

Prints each seed's test accuracy and wall time, then the mean: the figure `eggroll-np train` is compared to
in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from eggroll_np.tasks.digits import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    accuracies = []
    for seed in range(args.seeds):
        model = MLPClassifier(hidden_layer_sizes=(args.hidden,), activation="tanh", max_iter=1000, random_state=seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        accuracies.append(float(np.mean(model.predict(x_test) == y_test)))
        print(f"seed {seed}: test accuracy {accuracies[-1]:.4f} ({seconds:.1f} s)")
    print(
        f"MLPClassifier (64 -> {args.hidden} -> 10, tanh, adam): mean test accuracy {np.mean(accuracies):.4f}, "
        f"range {min(accuracies):.4f}-{max(accuracies):.4f}"
    )
    return accuracies


if __name__ == "__main__":
    main()
