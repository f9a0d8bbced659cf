"""The device check: the project's GPU paths, run once, in one table (issue 20).

Five sections, all in one process, on the default device (a GPU when one is visible):

(a) **FIM features** (``keras_actfn.search.aquasurf.fim.fisher_eigenvalues``) of the MNIST-1D
    CNN, All-CNN-C and ResNet-56 (``keras_actfn.models.build_model``): the same call under
    ``tf.device('/CPU:0')`` and on the default device, on the same model and batch
    (``labels="data"``, fixed labels, so both see the same gradients; TensorFloat-32 turned
    off for the section, as it would round the GPU's float32 convolutions to 10 mantissa
    bits). Every layer's factors Omega and Gamma must agree within ``FACTOR_RTOL`` of the
    factor's largest entry and its eigenvalues within ``EIG_RTOL`` of the largest one
    (float32 sums over the batch in another order); the time of each call is reported.
(b) **CustomActivation microbenchmark**: forward + backward of the activation alone
    (``tape.gradient(y, [x] + weights, output_gradients=dy)`` in a ``tf.function``) on a
    ``(batch, 32, 32, 96)`` tensor: ``x*sigmoid(x)`` vs Keras ``silu``, per-channel
    ``alpha*swish(beta*x)`` vs ``relu`` and a 7-node PANGAEA function vs ``relu``, each
    fused (one XLA cluster each way) and unfused; variants in rounds, alternating order,
    ratios are medians of per-round ratios (as in ``bench_activation_speed.py``). Each goal
    row also shows its floor (``FLOORS``): the ratio of the cheapest part of its function
    alone (``x*sigmoid(x)``, ``log_sigmoid(x)``), fused or unfused, whichever is faster.
(c) one **evaluate_activation** (the ``quick`` recipe's training loop, AutoInit included)
    of All-CNN-C on CIFAR-shaped synthetic data (32x32x3, 10 classes, learnable): images/s
    of its ``fit`` phase.
(d) **AutoInit** (``AutoInit().initialize_model``) on ResNet-164: build and AutoInit time.
(e) a 2-epoch **GRAFS search** (``grafs_search``) of the MNIST-1D CNN: wall time.

    python benchmarks/device_check.py                      # <= 6 minutes on one GPU
    python benchmarks/device_check.py --json benchmarks/results/device_check.json
    python benchmarks/device_check.py --cpu --tiny         # the same code paths, toy sizes

``--cpu`` hides any GPU (the "device" runs then also run on the CPU: the comparisons must
agree exactly up to round-off); ``--tiny`` shrinks every size (the test suite runs the
script that way so it never rots). The exit status is 0 whatever the numbers, 1 only when a
section raised (its error is in the table and the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

FACTOR_RTOL = 1e-4   # |Omega_cpu - Omega_dev| <= FACTOR_RTOL * max|Omega_cpu|, same for Gamma
EIG_RTOL = 1e-4      # |lambda_cpu - lambda_dev| <= EIG_RTOL * max lambda_cpu, Omega and Gamma

#: a 7-node PANGAEA function (7 operator nodes, two per-channel parameters)
PANGAEA_7 = "alpha*arctan(x)*log_sigmoid(beta*x) + erf(x)"

#: (label, spec, param_shape, fused, baseline label, goal)
MICRO_VARIANTS = (
    ("silu (Keras)", "silu", None, None, None, None),
    ("relu (Keras)", "relu", None, None, None, None),
    ("x*sigmoid(x) fused", "x*sigmoid(x)", "per-layer", True, "silu (Keras)", 1.05),
    ("x*sigmoid(x) unfused", "x*sigmoid(x)", "per-layer", False, "silu (Keras)", 1.05),
    ("alpha*swish(beta*x) per-channel fused", "alpha*swish(beta*x)", "per-channel", True,
     "relu (Keras)", 1.3),
    ("alpha*swish(beta*x) per-channel unfused", "alpha*swish(beta*x)", "per-channel", False,
     "relu (Keras)", 1.3),
    ("PANGAEA 7-node per-channel fused", PANGAEA_7, "per-channel", True, "relu (Keras)", 2.0),
    ("PANGAEA 7-node per-channel unfused", PANGAEA_7, "per-channel", False, "relu (Keras)",
     2.0),
    # floors (no goal): the cheapest part of a goal's function, alone. alpha*swish(beta*x)
    # cannot cost less than x*sigmoid(x) (the same pass without slots or their gradients),
    # the 7-node function less than its log_sigmoid; a floor above a goal means the goal is
    # out of reach on this device for any implementation built from these kernels
    ("floor x*sigmoid(x) fused", "x*sigmoid(x)", "per-layer", True, "relu (Keras)", None),
    ("floor x*sigmoid(x) unfused", "x*sigmoid(x)", "per-layer", False, "relu (Keras)", None),
    ("floor log_sigmoid(x) fused", "log_sigmoid(x)", "per-layer", True, "relu (Keras)", None),
    ("floor log_sigmoid(x) unfused", "log_sigmoid(x)", "per-layer", False, "relu (Keras)",
     None),
)
#: the floor rows of each goal row (the lower of a floor's fused and unfused ratio counts)
FLOORS = {"alpha*swish(beta*x) per-channel": "floor x*sigmoid(x)",
          "PANGAEA 7-node per-channel": "floor log_sigmoid(x)"}

#: sizes per mode
SIZES = {
    "full": dict(
        fim_models=(("mnist1d_cnn", {}), ("all_cnn_c", {}), ("resnet_v1_56", {})),
        fim_batch=128, fim_warmup=True,
        micro_batch=32, micro_hw=32, micro_channels=96, micro_steps=20, micro_rounds=10,
        micro_warmup=3,
        eval_train=10000, eval_val=1000, eval_hw=32, eval_batch=128, eval_epochs=1,
        autoinit_model="resnet_v1_164", autoinit_hw=32,
        grafs_epochs=2, grafs_train=None, grafs_steps=None, grafs_batch=64,
    ),
    "tiny": dict(
        # All-CNN-C has no width setting: its 3x3x192 layers' Omega is 1729 x 1729 at any
        # image size, seconds of eigendecomposition; ResNet-20 runs the same 2-D paths
        fim_models=(("mnist1d_cnn", {"channels": 4}),
                    ("resnet_v1_20", {"input_shape": (8, 8, 3)})),
        fim_batch=4, fim_warmup=False,
        micro_batch=1, micro_hw=4, micro_channels=8, micro_steps=2, micro_rounds=2,
        micro_warmup=1,
        eval_train=64, eval_val=32, eval_hw=8, eval_batch=32, eval_epochs=1,
        autoinit_model="resnet_v1_20", autoinit_hw=8,
        grafs_epochs=2, grafs_train=96, grafs_steps=2, grafs_batch=16,
    ),
}


# ------------------------------------------------------------------------------- helpers
def _tf():
    from keras_actfn.backend import tf
    return tf


def _device_scope(name):
    return _tf().device(name) if name else contextlib.nullcontext()


def default_device(cpu: bool) -> str:
    """What the default device is: ``"GPU:0"`` when a GPU is visible (and not ``--cpu``)."""
    tf = _tf()
    return "CPU:0" if cpu or not tf.config.list_logical_devices("GPU") else "GPU:0"


def hide_gpus():
    """Make the GPUs invisible (only possible before TensorFlow touched them; afterwards the
    caller's device scope keeps the work on the CPU anyway)."""
    tf = _tf()
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass


@contextlib.contextmanager
def no_tf32():
    tf = _tf()
    was = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(was)


def _row(section, item, value, unit, ratio=None, goal=None, result="", detail=""):
    return {"section": section, "item": item, "value": value, "unit": unit, "ratio": ratio,
            "goal": goal, "result": result, "detail": detail}


# ---------------------------------------------------------------------------- (a) FIM
def _max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def compare_fisher(cpu, dev):
    """Per layer: the largest factor and eigenvalue differences, relative to the largest
    entry / eigenvalue of the CPU result; ``agree`` when all are within tolerance."""
    layers = []
    agree = len(cpu.layers) == len(dev.layers) and cpu.valid == dev.valid
    for lc, ld in zip(cpu.layers, dev.layers):
        row = {"layer": lc.name, "kind": lc.kind, "same_name": lc.name == ld.name,
               "omega": _max_rel(lc.omega, ld.omega), "gamma": _max_rel(lc.gamma, ld.gamma),
               "eig_omega": _max_rel(np.exp(lc.log_eig_omega), np.exp(ld.log_eig_omega)),
               "eig_gamma": _max_rel(np.exp(lc.log_eig_gamma), np.exp(ld.log_eig_gamma)),
               "histogram_l1": int(np.abs(lc.histogram - ld.histogram).sum())}
        row["agree"] = bool(row["same_name"] and row["omega"] <= FACTOR_RTOL
                            and row["gamma"] <= FACTOR_RTOL and row["eig_omega"] <= EIG_RTOL
                            and row["eig_gamma"] <= EIG_RTOL)
        agree = agree and row["agree"]
        layers.append(row)
    return bool(agree), layers


def section_fim(size, device, log):
    tf = _tf()
    from keras_actfn.backend import keras
    from keras_actfn.models import build_model
    from keras_actfn.search.aquasurf import fim

    rows, details = [], []
    rng = np.random.default_rng(0)
    for name, kwargs in size["fim_models"]:
        keras.utils.set_random_seed(0)
        model = build_model(name, activation="relu", **kwargs)
        shape = tuple(int(d) for d in model.input_shape[1:])
        x = rng.standard_normal((size["fim_batch"],) + shape).astype("float32")
        y = rng.integers(0, int(model.output_shape[-1]), size["fim_batch"])
        results, times = {}, {}
        with no_tf32():
            for where, scope in (("cpu", "/CPU:0"), ("device", device)):
                with _device_scope(scope):
                    if size["fim_warmup"]:
                        fim.fisher_eigenvalues(model, x, y, labels="data")
                    start = time.perf_counter()
                    results[where] = fim.fisher_eigenvalues(model, x, y, labels="data")
                    times[where] = time.perf_counter() - start
        agree, layers = compare_fisher(results["cpu"], results["device"])
        worst = max(max(l["omega"], l["gamma"]) for l in layers) if layers else 0.0
        worst_eig = max(max(l["eig_omega"], l["eig_gamma"]) for l in layers) if layers else 0.0
        details.append({"model": name, "model_kwargs": {k: list(v) if isinstance(v, tuple)
                                                         else v for k, v in kwargs.items()},
                        "batch": size["fim_batch"], "layers": layers, "agree": agree,
                        "cpu_s": times["cpu"], "device_s": times["device"],
                        "num_params": results["cpu"].num_params,
                        "valid": [results["cpu"].valid, results["device"].valid]})
        rows.append(_row("fim", f"{name} CPU path", times["cpu"], "s"))
        rows.append(_row("fim", f"{name} device", times["device"], "s",
                         ratio=times["cpu"] / times["device"] if times["device"] else None,
                         result="AGREE" if agree else "DIFFER",
                         detail=f"{len(layers)} layers, factors {worst:.1e}, eig "
                                f"{worst_eig:.1e}"))
        log(f"  fim {name}: cpu {times['cpu']:.2f} s, device {times['device']:.2f} s, "
            f"{'agree' if agree else 'DIFFER'} (factors {worst:.1e}, eigenvalues {worst_eig:.1e})")
    return rows, details


# ---------------------------------------------------------------- (b) microbenchmark
def _micro_layer(spec, param_shape, fused):
    from keras_actfn.backend import keras
    from keras_actfn.layers import CustomActivation

    if param_shape is None:
        return keras.layers.Activation(spec)
    return CustomActivation(spec, param_shape=param_shape, fused=fused)


def _micro_step(layer):
    tf = _tf()

    @tf.function(autograph=False)
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return tape.gradient(y, [x] + list(layer.trainable_weights), output_gradients=dy)

    return step


def _block(step, x, dy, steps):
    start = time.perf_counter()
    out = None
    for _ in range(steps):
        out = step(x, dy)
    out[0].numpy()  # the work is done before the clock stops
    return (time.perf_counter() - start) / steps


def section_micro(size, device, log):
    tf = _tf()
    shape = (size["micro_batch"], size["micro_hw"], size["micro_hw"], size["micro_channels"])
    rng = np.random.default_rng(1)
    rows, details = [], []
    with _device_scope(device):
        x = tf.constant(rng.standard_normal(shape).astype("float32"))
        dy = tf.constant(rng.standard_normal(shape).astype("float32"))
        layers, steps, outputs = {}, {}, {}
        for label, spec, param_shape, fused, _, _ in MICRO_VARIANTS:
            layer = _micro_layer(spec, param_shape, fused)
            layer.build(x.shape)
            layers[label], steps[label] = layer, _micro_step(layer)
            t0 = time.perf_counter()
            outputs[label] = [v.numpy() for v in steps[label](x, dy)]
            _block(steps[label], x, dy, size["micro_warmup"])
            log(f"  micro: warmed up {label} ({time.perf_counter() - t0:.2f} s)")
        # fused vs unfused: the same numbers (values through the gradient, and slots')
        agreement = {}
        for label, spec, param_shape, fused, _, _ in MICRO_VARIANTS:
            if fused:
                other = label[: -len(" fused")] + " unfused"
                diffs = [_max_rel(a, b) for a, b in zip(outputs[other], outputs[label])]
                agreement[label] = max(diffs)
        times = {label: [] for label in steps}
        order = list(steps)
        for r in range(size["micro_rounds"]):
            for label in (order if r % 2 == 0 else order[::-1]):
                times[label].append(_block(steps[label], x, dy, size["micro_steps"]))
    ratios = {label: statistics.median(a / b for a, b in zip(times[label], times[base]))
              for label, _, _, _, base, _ in MICRO_VARIANTS if base}
    for label, spec, param_shape, fused, base, goal in MICRO_VARIANTS:
        ms = 1000 * statistics.median(times[label])
        ratio = ratios.get(label)
        floor = None
        for stem, floor_stem in FLOORS.items():
            if label.startswith(stem + " "):
                floor = min(ratios[floor_stem + " fused"], ratios[floor_stem + " unfused"])
        layer = layers[label]
        used = (getattr(layer, "fused_in_use", None) if param_shape else None)
        detail = ""
        if label in agreement:
            detail = f"grad vs unfused {agreement[label]:.1e}"
        if fused and used is False:
            detail = (detail + "; " if detail else "") + "fell back to unfused"
        if floor is not None:
            detail = (detail + "; " if detail else "") + f"floor {floor:.2f}x"
        result = ("baseline" if base is None else "floor" if goal is None else
                  "PASS" if ratio <= goal else "MISS")
        rows.append(_row("activation", label, ms, "ms", ratio=ratio, goal=goal,
                         result=result, detail=detail))
        details.append({"variant": label, "function": spec, "param_shape": param_shape,
                        "fused": fused, "fused_in_use": used, "ms": ms, "ratio": ratio,
                        "baseline": base, "goal": goal, "floor_ratio": floor,
                        "times_s": times[label],
                        "max_rel_diff_vs_unfused": agreement.get(label)})
    return rows, {"shape": list(shape), "steps": size["micro_steps"],
                  "rounds": size["micro_rounds"], "variants": details}


# ---------------------------------------------------------------- (c) evaluate_activation
def synthetic_cifar(n_train, n_val, hw, seed=0):
    """CIFAR-shaped data a network can learn: each class adds its own random pattern."""
    from keras_actfn.data.tasks import Task

    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((10, hw, hw, 3)).astype("float32")

    def split(n):
        y = rng.integers(0, 10, n).astype("int32")
        x = rng.standard_normal((n, hw, hw, 3)).astype("float32") + patterns[y]
        return x, y

    return Task(name="synthetic_cifar", num_classes=10, input_shape=(hw, hw, 3),
                splits={"train": split(n_train), "validation": split(n_val),
                        "test": split(n_val)})


def section_evaluate(size, device, log):
    from keras_actfn.train import evaluate_activation

    task = synthetic_cifar(size["eval_train"], size["eval_val"], size["eval_hw"])
    with _device_scope(device):
        record = evaluate_activation("alpha*swish(beta*x)", task=task, model="all_cnn_c",
                                     recipe="quick", seed=0, epochs=size["eval_epochs"],
                                     batch_size=size["eval_batch"], threshold=None)
    timing = record.info.get("timing_s", {})
    fit_s = float(timing.get("fit", 0.0))
    images = size["eval_train"] * size["eval_epochs"]
    per_s = images / fit_s if fit_s > 0 else None
    log(f"  evaluate: {record.status} in {record.runtime_s:.1f} s, fit {fit_s:.2f} s, "
        f"{per_s or 0:.0f} images/s")
    rows = [_row("evaluate", "All-CNN-C fit, images/s", per_s, "img/s",
                 result=record.status,
                 detail=f"{images} images, total {record.runtime_s:.1f} s, "
                        f"val acc {record.validation_accuracy}")]
    return rows, {"status": record.status, "reason": record.reason, "images": images,
                  "fit_s": fit_s, "images_per_s": per_s, "runtime_s": record.runtime_s,
                  "timing_s": timing, "validation_accuracy": record.validation_accuracy}


# -------------------------------------------------------------------------- (d) AutoInit
def section_autoinit(size, device, log):
    from keras_actfn.autoinit import AutoInit
    from keras_actfn.backend import keras
    from keras_actfn.models import build_model

    hw = size["autoinit_hw"]
    with _device_scope(device):
        start = time.perf_counter()
        model = build_model(size["autoinit_model"], activation="relu",
                            input_shape=(hw, hw, 3), batchnorm=False)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        init = AutoInit(seed=0)
        init.initialize_model(model)
        autoinit_s = time.perf_counter() - start
        # the initialized network's output is finite on data of the assumed moments
        x = np.random.default_rng(2).standard_normal((4, hw, hw, 3)).astype("float32")
        finite = bool(np.all(np.isfinite(model(x, training=False).numpy())))
    layers = len(init.records)
    log(f"  autoinit {size['autoinit_model']}: build {build_s:.1f} s, AutoInit "
        f"{autoinit_s:.2f} s, {layers} layers")
    keras.backend.clear_session()
    rows = [_row("autoinit", f"{size['autoinit_model']} AutoInit", autoinit_s, "s",
                 result="ok" if finite else "non-finite",
                 detail=f"{layers} layers, build {build_s:.1f} s")]
    return rows, {"model": size["autoinit_model"], "layers": layers, "build_s": build_s,
                  "autoinit_s": autoinit_s, "finite_output": finite}


# ----------------------------------------------------------------------------- (e) GRAFS
def section_grafs(size, device, log):
    from keras_actfn.data import load_task
    from keras_actfn.models import build_model
    from keras_actfn.search.grafs.search import grafs_search

    task = load_task("mnist1d")
    if size["grafs_train"]:
        task = task.subset(train=size["grafs_train"], validation=size["grafs_train"] // 2,
                           test=size["grafs_train"] // 2)
    with _device_scope(device):
        start = time.perf_counter()
        result = grafs_search(lambda: build_model("mnist1d_cnn", activation="relu", task=task),
                              task, epochs=size["grafs_epochs"], warm_start_epochs=1,
                              batch_size=size["grafs_batch"], seed=0, verbose=False,
                              steps_per_epoch=size["grafs_steps"])
        wall = time.perf_counter() - start
    log(f"  grafs: {wall:.1f} s, {len(result.history)} epochs, function {result.function}")
    rows = [_row("grafs", f"{size['grafs_epochs']}-epoch search, MNIST-1D CNN", wall, "s",
                 result="ok", detail=str(result.function)[:60])]
    return rows, {"wall_s": wall, "epochs": len(result.history), "function": result.function,
                  "traces": result.traces}


SECTIONS = (("fim", section_fim), ("activation", section_micro), ("evaluate", section_evaluate),
            ("autoinit", section_autoinit), ("grafs", section_grafs))


# ------------------------------------------------------------------------------- report
def format_table(rows):
    header = ("section", "item", "value", "unit", "ratio", "goal", "result", "detail")
    lines = [header]
    for r in rows:
        value = "-" if r["value"] is None else (f"{r['value']:.3f}" if r["value"] < 100
                                                else f"{r['value']:.0f}")
        lines.append((r["section"], r["item"], value, r["unit"],
                      "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                      "-" if r["goal"] is None else f"<= {r['goal']:g}", r["result"],
                      r["detail"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.rjust(w) if i in (2, 4) else c.ljust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(argv=None, log=print):
    """Run the check; return the report (also what ``--json`` writes)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="hide GPUs; run everything on the CPU")
    p.add_argument("--tiny", action="store_true", help="toy sizes (seconds, for the tests)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--sections", default=",".join(n for n, _ in SECTIONS),
                   help="comma-separated subset of " + ",".join(n for n, _ in SECTIONS))
    args = p.parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {n for n, _ in SECTIONS})
    if unknown:
        p.error(f"unknown sections {unknown}")
    if args.cpu:
        hide_gpus()
    tf = _tf()
    from keras_actfn.backend import describe

    device = default_device(args.cpu)
    size = SIZES["tiny" if args.tiny else "full"]
    scope = "/CPU:0" if args.cpu else None
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    details = {}
    try:
        gpu_details = [tf.config.experimental.get_device_details(g)
                       for g in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - details are decoration
        gpu_details = []
    report = {"meta": {"device": device, "gpus": gpus, "gpu_details": gpu_details,
                       "backend": describe(), "tensorflow": tf.__version__,
                       "python": platform.python_version(), "mode": "tiny" if args.tiny
                       else "full", "cpu_only": args.cpu, "factor_rtol": FACTOR_RTOL,
                       "eig_rtol": EIG_RTOL, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime())},
              "rows": [], "sections": details, "errors": {}}
    log(f"device check on {device} ({describe()}), {report['meta']['mode']} sizes")
    total = time.perf_counter()
    for name, fn in SECTIONS:
        if name not in wanted:
            continue
        start = time.perf_counter()
        try:
            rows, detail = fn(size, scope, log)
        except Exception as err:  # noqa: BLE001 - one section's failure is a result too
            report["errors"][name] = "".join(traceback.format_exception(err))[-4000:]
            rows, detail = [_row(name, "error", None, "", result="ERROR",
                                 detail=f"{type(err).__name__}: {err}"[:120])], None
        details[name] = detail
        for row in rows:
            row["section_s"] = time.perf_counter() - start
        report["rows"].extend(rows)
    report["meta"]["total_s"] = time.perf_counter() - total
    table = format_table(report["rows"])
    report["table"] = table
    log("")
    log(table)
    log(f"\ntotal {report['meta']['total_s']:.1f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=_plain)
        log(f"wrote {args.json}")
    return report


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main(argv=None):
    report = run(argv)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
