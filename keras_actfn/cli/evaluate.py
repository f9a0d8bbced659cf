"""``keras-actfn evaluate``: train a model with one activation function, once per seed."""

from __future__ import annotations

import math
import os
import sys

from .common import (EXIT_FAILURE, EXIT_OK, PROG, UsageError, command, positive_int,
                     seed_int)


def _evaluate_arguments(p):
    p.add_argument("fn", help='activation-function text ("x*sigmoid(x)") or a Keras '
                              'activation name ("relu")')
    p.add_argument("--recipe", default="quick",
                   help="training recipe (default: quick, MNIST-1D in seconds); see "
                        "docs/evaluation.md for the papers' recipes")
    p.add_argument("--task", default=None, help="task name (default: the recipe's)")
    p.add_argument("--model", default=None, help="model name (default: the recipe's)")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="train N times, with seeds SEED .. SEED+N-1 (default: 1)")
    p.add_argument("--seed", type=seed_int, default=0, help="the first seed (default: 0)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="train N epochs; the learning-rate schedule is stretched to fit")
    p.add_argument("--subset", type=positive_int, default=None, metavar="N",
                   help="train on a class-balanced subset of N training examples")
    p.add_argument("--test", action="store_true", help="also measure test accuracy")
    p.add_argument("--no-autoinit", action="store_true",
                   help="keep the model's own initialization instead of AutoInit")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH as JSON")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no Keras progress output, only the summary lines")


def _mean_std(values):
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return mean, std


@command("evaluate", "train a model with an activation function and report its fitness",
         arguments=_evaluate_arguments)
def evaluate(args) -> int:
    """Train the recipe's model on its task with the activation function (AutoInit
    initialization, the recipe's optimizer and learning-rate schedule) once per seed, and
    print one summary line per seed and the mean +- standard deviation over the seeds.
    A candidate fails when its loss becomes NaN/inf, its activation overflows, or its
    validation accuracy stays at chance or below the recipe's threshold V; the exit status
    is then 1 (0 when every seed is ok, 2 for bad usage or bad function text)."""
    import json

    from ..data import DatasetUnavailableError
    from ..train.evaluate import evaluate_activation, prepare, resolve_activation

    spec, text = resolve_activation(args.fn)  # ParseError: exit 2 via main()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("subset", args.subset))
                 if v is not None}
    try:
        plan = prepare(task=args.task, model=args.model, recipe=args.recipe, **overrides)
    except DatasetUnavailableError as err:
        print(f"{PROG} evaluate: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    recipe = plan.recipe
    print(f"function:    {text}")
    print(f"recipe:      {recipe.label} ({plan.model_name} on {plan.task.name}, "
          f"{recipe.epochs} epochs, batch {recipe.batch_size}; "
          f"lr {recipe.schedule.describe()})")
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    records = []
    for seed in range(args.seed, args.seed + args.seeds):
        record = evaluate_activation(spec, task=plan.task, model=plan.model, recipe=recipe,
                                     seed=seed, autoinit=not args.no_autoinit,
                                     test=args.test, verbose=verbose)
        records.append(record)
        print(f"seed {seed}: {record.summary()}", flush=True)

    ok = [r for r in records if r.ok]
    summary = {"seeds": len(records), "ok": len(ok), "failed": len(records) - len(ok)}
    metrics = ["validation_accuracy", "validation_loss", "train_accuracy", "runtime_s"]
    if args.test:
        metrics.insert(3, "test_accuracy")
    short = {"validation_accuracy": "val_acc", "validation_loss": "val_loss",
             "train_accuracy": "train_acc", "test_accuracy": "test_acc", "runtime_s": "time"}
    parts = []
    for metric in metrics:
        values = [getattr(r, metric) for r in ok if getattr(r, metric) is not None]
        mean, std = _mean_std(values)
        summary[metric] = {"mean": mean, "std": std}
        if mean is not None:
            unit = " s" if metric == "runtime_s" else ""
            digits = 1 if metric == "runtime_s" else 4
            parts.append(f"{short[metric]} {mean:.{digits}f} +- {std:.{digits}f}{unit}")
    failed = [r for r in records if r.failed]
    tail = f"; failed: {', '.join(sorted({r.reason for r in failed}))}" if failed else ""
    if parts:
        print(f"mean +- std over {len(ok)} ok of {len(records)} seeds: {'  '.join(parts)}"
              f"{tail}")
    else:
        print(f"all {len(records)} seeds failed{tail}")
    if args.json:
        payload = {"fn": text, "recipe": recipe.to_dict(), "task": plan.task.name,
                   "model": plan.model_name, "records": [r.to_dict() for r in records],
                   "summary": summary}
        try:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2, allow_nan=False)
        except OSError as err:
            print(f"{PROG} evaluate: cannot write {args.json}: {err}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"json:        {os.path.abspath(args.json)}")
    return EXIT_OK if not failed else EXIT_FAILURE
