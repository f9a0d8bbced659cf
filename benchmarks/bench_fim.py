"""How long do AQuaSurF's Fisher-information features take, against a plain NumPy im2col?

For ResNet-56 (``resnet_v1_56``) and All-CNN-C (``all_cnn_c``) of the model registry
(32x32x3 inputs, 10 classes, the activation ``--fn``), one process times side by side, on
the same built model and the same batch (``--batch`` random images, fixed random labels,
``labels="data"`` so both see the same gradients):

* **ours**: ``keras_actfn.search.aquasurf.fim.fisher_eigenvalues`` -- the forward/backward
  pass, Ω and Γ of every layer (float32; Ω of a stride-1 convolution from lag sums -- one
  ``Conv2DBackpropFilter`` plus edge corrections, no patch matrix --, of a strided one from
  its kernel rows' patch products), the eigenvalues (float64, LAPACK via NumPy with one BLAS
  thread, in a worker thread overlapping the next layers' factors; TensorFlow on a GPU) and
  the histograms;
* **reference**: the same forward/backward pass (captured with fim's hooks), then for every
  layer, plainly in NumPy: im2col (pad, one strided slice per kernel offset copied into an
  ``(M·T, |Δ|·J)`` patch matrix, float64), ``Ω = ĀᵀĀ/M`` with the ones column,
  ``Γ = DSᵀDS/(M·T)``, ``numpy.linalg.eigvalsh`` of both, the log/floor rule and the
  pairwise sums.

Each model gets an untimed warm-up of both, then ``--repeats`` rounds in alternating order;
times are medians over rounds, ratios medians of per-round ratios (reference / ours). Two
ratios are printed: **FIM** (everything after the forward/backward pass, the part the two
implementations differ in -- the goal, >= 5x, is judged on it) and **end-to-end** (the pass
included in both). Per layer the breakdown patches / factors / eigendecomposition is printed
for both (``--layers`` rows, the slowest). Peak memory is the peak resident set size above
the RSS at the start of the phase, sampled every 2 ms from ``/proc/self/statm`` (TF's
allocations are invisible to tracemalloc; tracemalloc's peak is shown for the NumPy part
too). The reference's factors are compared with ours (``allclose``, rtol 1e-3 of each
factor's largest entry): a correctness check of the fast path on real networks.

Last measured on idle cores (3 rounds, TensorFlow 2.21, NumPy 2.4, 2026-11-24): FIM ratio
ResNet-56 5.91x (ours 0.98 s, NumPy 5.82 s), All-CNN-C 7.34x (1.59 s vs 12.49 s): PASS;
end-to-end 3.40x and 4.75x. With another job on the 2 cores, runs minutes apart gave
4.3-6.4x and 4.1-7.3x: the load takes CPU from our two threads, hardly from the
single-threaded reference. See ``benchmarks/README.md``.

    python benchmarks/bench_fim.py                        # ~4-6 minutes on 2 CPU cores
    python benchmarks/bench_fim.py --models all_cnn_c --repeats 1 --layers 9
    python benchmarks/bench_fim.py --batch 32 --quick

The exit status is 0 whatever the numbers: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import statistics
import sys
import threading
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_actfn import keras_graph  # noqa: E402
from keras_actfn.backend import describe, keras  # noqa: E402
from keras_actfn.models import build_model  # noqa: E402
from keras_actfn.search.aquasurf import fim  # noqa: E402

GOAL = 5.0
PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- memory

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Peak RSS above the RSS at entry, sampled by a thread every ``interval`` seconds."""

    def __init__(self, interval=0.002):
        self.interval = interval
        self.peak = 0

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        return False

    @property
    def mib(self):
        return (self.peak - self.base) / 2 ** 20


# ----------------------------------------------------------------------------- reference

def capture(model, x, y):
    """Forward/backward pass with fim's hooks: ``[(layer, kind, a, ds)]`` as NumPy float64
    (channels-last, one call per layer) for the Conv/Dense layers."""
    records = [fim._Record(layer, kind) for layer in keras_graph.all_layers(model, tracked=True)
               for kind in [fim._layer_kind(layer)] if kind in ("conv", "dense")]
    hooks = fim._Hooks(records)
    with hooks, tf.GradientTape(watch_accessed_variables=False) as tape:
        hooks.tape = tape
        out = model(x, training=False)
        logp, _ = fim._log_probs(out, "auto")
        nll = -tf.reduce_sum(tf.gather(logp, tf.constant(y, tf.int64), batch_dims=1))
    grads = tape.gradient(nll, [rec.outputs[0] for rec in records])
    return [(rec.layer, rec.kind, np.asarray(rec.inputs[0], np.float64),
             np.asarray(g, np.float64)) for rec, g in zip(records, grads)]


def _same_or_valid_pads(n, k, s, d, padding):
    span = (k - 1) * d + 1
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + span - n, 0)
        return (total // 2, total - total // 2), out
    return (0, 0), (n - span) // s + 1


def numpy_im2col(a, layer):
    """``(M·T, |Δ|·J)`` patch matrix of channels-last ``a``: pad, then one strided copy per
    kernel offset (row-major offsets, channels last: the kernel's flatten order)."""
    rank = a.ndim - 2
    ks = tuple(layer.kernel_size)
    st, dl = tuple(layer.strides), tuple(layer.dilation_rate)
    pads, outs = zip(*[_same_or_valid_pads(a.shape[1 + i], ks[i], st[i], dl[i],
                                           layer.padding.lower()) for i in range(rank)])
    xp = np.pad(a, [(0, 0)] + list(pads) + [(0, 0)])
    m, j = a.shape[0], a.shape[-1]
    cols = np.empty((m,) + tuple(outs) + (int(np.prod(ks)), j), a.dtype)
    for t, offset in enumerate(itertools.product(*[range(k) for k in ks])):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                      for o, d, n, s in zip(offset, dl, outs, st))
        cols[..., t, :] = xp[(slice(None),) + index + (slice(None),)]
    return cols.reshape(m * int(np.prod(outs)), -1), int(np.prod(outs))


def numpy_log_eigs(matrix):
    eig = np.linalg.eigvalsh(matrix)
    tol = max(matrix.shape[0], 100) * float(np.finfo(np.float32).eps)
    cut = max(eig.max() * tol, float(np.finfo(np.float32).tiny))
    return np.where(eig > cut, np.log(np.maximum(eig, cut)), fim.LOG_FLOOR)


def numpy_fim(captured, dtype):
    """The factors and log eigenvalues of every captured layer; per-layer stage times."""
    out = []
    for layer, kind, a, ds in captured:
        a, ds = a.astype(dtype), ds.astype(dtype)
        m = a.shape[0]
        t0 = time.perf_counter()
        if kind == "conv":
            rows, t = numpy_im2col(a, layer)
        else:
            rows, t = a.reshape(-1, a.shape[-1]), a.reshape(-1, a.shape[-1]).shape[0] // m
        if layer.use_bias:
            rows = np.concatenate([np.ones((rows.shape[0], 1), dtype), rows], axis=1)
        t1 = time.perf_counter()
        omega = rows.T @ rows / m
        g = ds.reshape(-1, ds.shape[-1])
        gamma = g.T @ g / (m * t)
        t2 = time.perf_counter()
        lo = numpy_log_eigs(omega.astype(np.float64))
        lg = numpy_log_eigs(gamma.astype(np.float64))
        logs = (lo[:, None] + lg[None, :]).ravel()
        t3 = time.perf_counter()
        out.append(dict(name=layer.name, omega=omega, gamma=gamma, logs=logs,
                        patches=t1 - t0, factors=t2 - t1, eig=t3 - t2))
        del rows
    return out


# ----------------------------------------------------------------------------- runs

def run_ours(model, x, y):
    timings = {}
    gc.collect()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        res = fim.fisher_eigenvalues(model, x, y, labels="data", timings=timings)
        total = time.perf_counter() - t0
    return dict(total=total, fim=total - timings["pass"], pass_=timings["pass"],
                blocks=timings["blocks"], mem=mem.mib, result=res)


def _blas_threads(n):
    """Limit NumPy's BLAS/LAPACK threads (threadpoolctl) for the reference; a no-op context
    when ``n`` is 0 or threadpoolctl is missing."""
    if n:
        try:
            from threadpoolctl import threadpool_limits
            return threadpool_limits(n)
        except ImportError:
            pass
    return contextlib.nullcontext()


def run_reference(model, x, y, dtype, threads=1):
    gc.collect()
    with PeakRSS() as mem, _blas_threads(threads):
        t0 = time.perf_counter()
        captured = capture(model, x, y)
        t1 = time.perf_counter()
        tracemalloc.start()
        layers = numpy_fim(captured, dtype)
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t2 = time.perf_counter()
    return dict(total=t2 - t0, fim=t2 - t1, pass_=t1 - t0, layers=layers, mem=mem.mib,
                traced=traced / 2 ** 20)


def check(ours, ref):
    """Largest relative factor difference (per factor, by its largest entry) and layers."""
    worst, bad = 0.0, []
    by_name = {l.name: l for l in ours.layers}
    for r in ref:
        lf = by_name[r["name"]]
        for mine, theirs in ((lf.omega, r["omega"]), (lf.gamma, r["gamma"])):
            scale = max(float(np.abs(theirs).max()), 1e-30)
            diff = float(np.abs(mine - theirs).max()) / scale
            worst = max(worst, diff)
            if not np.allclose(mine, theirs, rtol=1e-3, atol=1e-3 * scale):
                bad.append(r["name"])
    moved = sum(int(np.abs(by_name[r["name"]].histogram
                           - np.histogram(r["logs"], bins=fim.histogram_bins(len(r["logs"])),
                                          range=fim.HIST_RANGE)[0]).sum()) for r in ref)
    return worst, sorted(set(bad)), moved


def bench_model(name, args):
    keras.utils.set_random_seed(args.seed)
    model = build_model(name, activation=args.fn, input_shape=(32, 32, 3), num_classes=10)
    rng = np.random.default_rng(args.seed)
    x = tf.constant(rng.normal(size=(args.batch, 32, 32, 3)).astype(np.float32))
    y = rng.integers(0, 10, size=args.batch)
    dtype = np.dtype(args.ref_dtype)
    # warm-up (untimed): tracing of eager kernels, allocator pools, BLAS threads
    fim.fisher_eigenvalues(model, x[:8], y[:8], labels="data")
    with _blas_threads(args.ref_threads):
        numpy_fim(capture(model, x[:8], y[:8]), dtype)
    rounds = []
    for r in range(args.repeats):
        if r % 2 == 0:
            ours = run_ours(model, x, y)
            ref = run_reference(model, x, y, dtype, args.ref_threads)
        else:
            ref = run_reference(model, x, y, dtype, args.ref_threads)
            ours = run_ours(model, x, y)
        rounds.append((ours, ref))
        print(f"  {name} round {r + 1}: ours {ours['total']:.2f} s, reference "
              f"{ref['total']:.2f} s", flush=True)
    ours, ref = rounds[-1]
    worst, bad, moved = check(ours["result"], ref["layers"])
    med = statistics.median
    summary = dict(
        model=name, layers=len(ours["result"].layers), params=ours["result"].num_params,
        ours_total=med(o["total"] for o, _ in rounds), ours_fim=med(o["fim"] for o, _ in rounds),
        ours_pass=med(o["pass_"] for o, _ in rounds),
        ref_total=med(r["total"] for _, r in rounds), ref_fim=med(r["fim"] for _, r in rounds),
        ref_pass=med(r["pass_"] for _, r in rounds),
        ratio_fim=med(r["fim"] / o["fim"] for o, r in rounds),
        ratio_total=med(r["total"] / o["total"] for o, r in rounds),
        ours_mem=max(o["mem"] for o, _ in rounds), ref_mem=max(r["mem"] for _, r in rounds),
        ref_traced=max(r["traced"] for _, r in rounds),
        worst=worst, bad=bad, moved=moved, skipped=ours["result"].skipped)
    # per-layer breakdown (last round), the slowest first
    stages = ("patches", "factors", "eig")
    rows = []
    for r in ref["layers"]:
        b = ours["blocks"].get(r["name"], {})
        rows.append((r["name"], [b.get(s, 0.0) for s in stages], [r[s] for s in stages]))
    rows.sort(key=lambda row: -sum(row[2]))
    return summary, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet_v1_56", "all_cnn_c"])
    parser.add_argument("--fn", default="x*sigmoid(x)", help="the activation function")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per model")
    parser.add_argument("--layers", type=int, default=6, help="per-layer rows to print")
    parser.add_argument("--ref-dtype", default="float64", choices=["float64", "float32"],
                        help="dtype of the NumPy reference (float64: the natural reference)")
    parser.add_argument("--ref-threads", type=int, default=1,
                        help="BLAS threads of the NumPy reference (threadpoolctl; 0: NumPy's "
                             "default). 1 is the reference's best on a shared 2-core CPU: "
                             "OpenBLAS's default threads, competing with TensorFlow's pool, "
                             "made eigvalsh of a 577x577 matrix 1.8 s instead of 0.04 s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one round per model")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    print(f"# {describe()}; NumPy {np.__version__}; {os.cpu_count()} CPUs; batch {args.batch}; "
          f"fn {args.fn!r}; reference dtype {args.ref_dtype}, "
          f"BLAS threads {args.ref_threads or 'default'}", flush=True)
    summaries = []
    for name in args.models:
        start = time.perf_counter()
        summary, rows = bench_model(name, args)
        summaries.append(summary)
        s = summary
        print(f"\n## {name}: {s['layers']} layers, {s['params']:,} weights "
              f"(skipped: {s['skipped'] or 'none'}), {time.perf_counter() - start:.0f} s")
        print(f"{'layer':<24} {'ours: patches':>13} {'factors':>8} {'eig':>7}   "
              f"{'numpy: im2col':>13} {'factors':>8} {'eig':>7}")
        for lname, mine, theirs in rows[:args.layers]:
            print(f"{lname[:24]:<24} {mine[0]:13.3f} {mine[1]:8.3f} {mine[2]:7.3f}   "
                  f"{theirs[0]:13.3f} {theirs[1]:8.3f} {theirs[2]:7.3f}")
        tot_m = [sum(r[1][i] for r in rows) for i in range(3)]
        tot_t = [sum(r[2][i] for r in rows) for i in range(3)]
        print(f"{'all layers (last round)':<24} {tot_m[0]:13.3f} {tot_m[1]:8.3f} {tot_m[2]:7.3f}   "
              f"{tot_t[0]:13.3f} {tot_t[1]:8.3f} {tot_t[2]:7.3f}")
        check_msg = "allclose" if not s["bad"] else f"NOT allclose in {s['bad']}"
        print(f"factors vs reference: {check_msg}, max relative difference {s['worst']:.1e}; "
              f"histogram counts moved: {s['moved']}")
    print("\nmodel          ours s (pass + FIM)   numpy s (pass + FIM)   FIM ratio  "
          "end-to-end  peak RSS ours / numpy MiB (tracemalloc)  goal  result")
    for s in summaries:
        verdict = "PASS" if s["ratio_fim"] >= GOAL else "MISS"
        print(f"{s['model']:<14} {s['ours_total']:6.2f} ({s['ours_pass']:5.2f} + "
              f"{s['ours_fim']:5.2f})   {s['ref_total']:6.2f} ({s['ref_pass']:5.2f} + "
              f"{s['ref_fim']:6.2f})   {s['ratio_fim']:8.2f}x  {s['ratio_total']:9.2f}x  "
              f"{s['ours_mem']:8.0f} / {s['ref_mem']:6.0f} ({s['ref_traced']:.0f})"
              f"          >= {GOAL:.0f}x  {verdict}")
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # a report, not a test: always exit 0
        print(f"benchmark failed: {type(err).__name__}: {err}")
    sys.exit(0)
