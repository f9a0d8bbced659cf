"""Signal propagation pictures for AutoInit (dissertation Figures 5.2 and 5.3).

:class:`AutoInitVisualizer` answers two questions about a model, layer by layer:

* what mean and variance does AutoInit *predict* for every layer's output, and
* what mean and variance does the layer *actually* produce on Gaussian input,

once for the model's current weights (its default initialization: the model as given) and
once after AutoInit. Both are measured on private clones, so the model passed in is never
changed. The default-initialization predictions come from AutoInit itself run in
propagate-only mode: every layer with weights is listed in ``keep=``, so AutoInit draws
nothing and maps the moments through the weights the layers have.

Empirical moments are reduced inside the probe model (float64, per layer, chunk by chunk),
so even ResNet-812's ~1,900 layer outputs never have to be held in memory at once.

matplotlib is optional and imported only by :meth:`AutoInitVisualizer.plot`; figures are
drawn on a private Agg canvas (``Figure`` + ``FigureCanvasAgg``), never through ``pyplot``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import keras_graph
from ..backend import keras, tf
from .core import AutoInit, AutoInitError, graph_of, load_model_argument

#: ``gid`` of each curve of the plot (``<kind>-<init>``) and of the target line
GID_PREDICTED = "predicted-{}"
GID_EMPIRICAL = "empirical-{}"
GID_TARGET = "target-variance"
#: ``gid`` of the pre-activation markers of weighted layers (``<kind>-pre-<init>``)
GID_PRE_PREDICTED = "predicted-pre-{}"
GID_PRE_EMPIRICAL = "empirical-pre-{}"

INITS = ("default", "autoinit")
_COLOURS = {"default": "tab:red", "autoinit": "tab:blue"}
_LABELS = {"default": "default init", "autoinit": "AutoInit"}


class _MomentProbe(keras.layers.Layer):
    """``x -> [mean(x), var(x)]`` over every element of a batch, in float64."""

    def call(self, inputs):
        x = tf.cast(inputs, tf.float64)
        mean = tf.reduce_mean(x)
        return tf.stack([mean, tf.reduce_mean(tf.square(x - mean))])

    def compute_output_shape(self, input_shape):
        return (2,)


def _weighted_layer_names(model):
    return sorted({layer.name for layer in keras_graph.all_layers(model) if layer.weights})


class AutoInitVisualizer:
    """Compare predicted and empirical signal propagation, default init vs AutoInit.

    Example::

        result = AutoInitVisualizer().visualize(model, path="signal.png")
        result["autoinit_empirical_var"]   # one value per layer, in topological order

    The published package's call ``AutoInitVisualizer().visualize(model,
    custom_objects=..., plot_path=..., num_samples=...)`` works as well (see
    :meth:`visualize`).

    Args:
        figsize: size of the two-panel figure in inches.
        dpi: resolution of the saved PNG.
    """

    def __init__(self, figsize=(11.0, 5.2), dpi=100):
        self.figsize = tuple(figsize)
        self.dpi = int(dpi)
        #: notes of the last run (e.g. where a prediction overflowed)
        self.notes: list[str] = []
        #: the two clones of the last run: ``{"default": model, "autoinit": model}``
        self.models: dict = {}
        #: y-limits of the mean and variance panels (``visualize(ylim_mean=, ylim=)``)
        self.ylim_mean = self.ylim_var = None

    # ------------------------------------------------------------------------------
    def visualize(self, model, path=None, input_data_mean=0.0, input_data_var=1.0,
                  samples=64, seed=0, autoinit_kwargs=None, batch_size=32, training=True,
                  input_shape=None, *, custom_objects=None, plot_path=None, num_samples=None,
                  signal_variance=None, custom_distribution_estimators=None,
                  weight_init_config=None, ylim=None, ylim_mean=None, ylim_var=None):
        """Measure signal propagation; return a dict of per-layer arrays (and plot it).

        Args:
            model: a functional or Sequential Keras model (left untouched), or -- as in the
                published package -- a model config dict or JSON string (built with
                ``custom_objects``), or the path of a saved model.
            path: if given, the two-panel figure is saved there (PNG). ``plot_path`` is the
                published package's name for it (a single two-panel PNG here, not
                ``<plot_path>_mean`` / ``<plot_path>_variance``).
            input_data_mean, input_data_var: moments of the Gaussian input (scalars, or one
                per model input); AutoInit is told the same.
            samples: number of Gaussian input samples for the empirical moments
                (``num_samples`` in the published package).
            seed: seed of the Gaussian input and (unless ``autoinit_kwargs`` has its own
                ``seed``) of AutoInit's weight draws.
            autoinit_kwargs: further arguments of :class:`AutoInit` (``distribution``,
                ``keep``, ``match_draw``...).
            batch_size: samples per forward pass of the probe.
            training: run the probe in training mode (what AutoInit's rules model:
                batch statistics in BatchNormalization, active Dropout).
            input_shape: per-sample shape (or a list, one per input) for models whose
                inputs have unknown dimensions.
            custom_objects: custom classes needed to build ``model`` from a config or file.
            signal_variance, custom_distribution_estimators, weight_init_config: passed to
                :class:`AutoInit` (the same as in ``autoinit_kwargs``).
            ylim: y-limits ``(low, high)`` of the variance panel; ``ylim_var`` is the
                same; ``ylim_mean`` those of the mean panel.

        Returns:
            ``{"layers", "classes", "depth", "weighted", "signal_variance",
            "<init>_predicted_mean", "<init>_predicted_var", "<init>_empirical_mean",
            "<init>_empirical_var", "<init>_predicted_pre_mean", "<init>_predicted_pre_var",
            "<init>_empirical_pre_mean", "<init>_empirical_pre_var"}`` with ``<init>`` in
            ``default``/``autoinit``: one entry per layer call in topological order (input
            layers excluded). ``weighted`` marks the layers AutoInit initialized. The
            ``pre`` arrays hold the moments of weighted layers' linear part (before their
            own ``activation=``), NaN elsewhere. Values that overflow are ``inf``/``nan``.
        """
        if isinstance(path, dict) and custom_objects is None:  # the published positional order
            path, custom_objects = None, path
        if plot_path is not None:
            if path is not None and str(path) != str(plot_path):
                raise ValueError("give path= or plot_path= (the same thing), not both")
            path = plot_path
        if num_samples is not None:
            samples = num_samples
        self.ylim_mean = _check_ylim(ylim_mean, "ylim_mean")
        if ylim is not None and ylim_var is not None:
            raise ValueError("give ylim= or ylim_var= (the same thing), not both")
        self.ylim_var = _check_ylim(ylim if ylim is not None else ylim_var, "ylim")
        samples, batch_size = int(samples), int(batch_size)
        if samples < 2:
            raise ValueError(f"samples must be at least 2, got {samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        kwargs = dict(autoinit_kwargs or {})
        for key, value in (("signal_variance", signal_variance),
                           ("custom_distribution_estimators", custom_distribution_estimators),
                           ("weight_init_config", weight_init_config)):
            if value is not None:
                kwargs[key] = value
        for key in ("input_data_mean", "input_data_var"):
            if key in kwargs:
                raise ValueError(f"give {key} to visualize(), not in autoinit_kwargs")
        kwargs.setdefault("seed", seed)
        # layers are cloned: refer to kept layers by name, not by the caller's objects
        kwargs["keep"] = {k if isinstance(k, str) else k.name for k in kwargs.get("keep", ())}
        kwargs.update(input_data_mean=input_data_mean, input_data_var=input_data_var)
        self.notes = []

        model = load_model_argument(model, custom_objects, "AutoInitVisualizer.visualize")
        graph = graph_of(model)  # fails early, with AutoInit's message, on subclassed models
        nodes = [n for n in graph.nodes if not keras_graph.is_input_layer(n.operation)]
        names = [n.operation.name for n in nodes]
        inputs = self._gaussian_inputs(graph, input_data_mean, input_data_var, samples, seed,
                                       input_shape)

        models = {"default": keras_graph.copy_model(model),
                  "autoinit": keras_graph.copy_model(model)}
        self.models = models
        result = {"layers": np.array(names, dtype=object),
                  "classes": np.array([type(n.operation).__name__ for n in nodes],
                                      dtype=object),
                  "depth": np.arange(1, len(nodes) + 1)}

        # AutoInit proper, on its own clone
        init = AutoInit(**kwargs)
        init.initialize_model(models["autoinit"])
        result["signal_variance"] = float(init.signal_variance)
        predicted = self._predictions(init.records, names)
        result["weighted"] = predicted.pop("initialized")
        for key, values in predicted.items():
            result[f"autoinit_predicted_{key}"] = values

        # the model as given: propagate through its own weights, draw nothing
        quiet = dict(kwargs, keep=kwargs["keep"] | set(_weighted_layer_names(models["default"])),
                     center_activations=False)
        quiet.pop("weight_init_config", None)  # constrain_weights must not touch the given
        given = AutoInit(**quiet)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # reported below instead
                given.initialize_model(models["default"])
        except (FloatingPointError, AutoInitError, OverflowError) as err:
            done = len(given.records)
            self.notes.append(f"default-init prediction stops after {done} layers: {err}")
        predicted = self._predictions(given.records, names)
        predicted.pop("initialized")
        for key, values in predicted.items():
            result[f"default_predicted_{key}"] = values

        for name in INITS:
            stats = self._empirical(models[name], nodes, inputs, batch_size, training)
            for key, values in stats.items():
                result[f"{name}_empirical_{key}"] = values
        if path is not None:
            self.plot(result, path=path, title=getattr(model, "name", None))
        return result

    # ------------------------------------------------------------------------------
    @staticmethod
    def _predictions(records, names):
        """Align AutoInit's records (nested layers included) with the outer layers."""
        out = {key: np.full(len(names), np.nan)
               for key in ("mean", "var", "pre_mean", "pre_var")}
        out["initialized"] = np.zeros(len(names), dtype=bool)
        i = 0
        for rec in records:
            if i < len(names) and rec.layer == names[i]:
                if rec.outputs:
                    out["mean"][i], out["var"][i] = rec.outputs[0].mean, rec.outputs[0].var
                if getattr(rec, "pre", None) is not None:
                    out["pre_mean"][i], out["pre_var"][i] = rec.pre.mean, rec.pre.var
                out["initialized"][i] = rec.initialized
                i += 1
        return out

    @staticmethod
    def _gaussian_inputs(graph, mean, var, samples, seed, input_shape):
        n = len(graph.inputs)
        means = list(mean) if isinstance(mean, (list, tuple)) else [mean] * n
        varis = list(var) if isinstance(var, (list, tuple)) else [var] * n
        if input_shape is None:
            shapes = [tuple(t.shape)[1:] for t in graph.inputs]
        elif n == 1 and not isinstance(input_shape[0], (list, tuple)):
            shapes = [tuple(input_shape)]
        else:
            shapes = [tuple(s) for s in input_shape]
        if not (len(means) == len(varis) == len(shapes) == n):
            raise ValueError(f"the model has {n} inputs; give one mean, variance and shape "
                             "per input")
        rng = np.random.default_rng(seed)
        arrays = []
        for shape, m, v in zip(shapes, means, varis):
            if any(d is None for d in shape):
                raise ValueError(f"input shape {shape} has unknown dimensions; pass "
                                 "input_shape= to visualize()")
            x = rng.standard_normal((samples,) + tuple(int(d) for d in shape))
            arrays.append((x * math.sqrt(float(v)) + float(m)).astype("float32"))
        return arrays

    @staticmethod
    def _empirical(model, nodes, inputs, batch_size, training):
        """Per-layer (mean, var) of ``model`` on ``inputs``, pooled over batch chunks, and
        of every weighted layer's linear part (``pre_mean``/``pre_var``, NaN elsewhere).

        The linear part is measured by a twin of the layer with ``activation="linear"``
        and the same weights, called on the layer's own input inside the probe."""
        graph = graph_of(model)
        outer = [n for n in graph.nodes if not keras_graph.is_input_layer(n.operation)]
        if len(outer) != len(nodes):  # the clone must mirror the original graph
            raise AutoInitError("the cloned model's graph differs from the original's")
        probes = [_MomentProbe()(n.outputs[0]) for n in outer]
        pre_index = []
        for i, node in enumerate(outer):
            pre = _linear_twin_output(node)
            if pre is not None:
                probes.append(_MomentProbe()(pre))
                pre_index.append(i)
        probe = keras.Model(graph.inputs, probes)
        total = inputs[0].shape[0]
        sums = np.zeros((len(probes), 2))
        chunks = []
        for start in range(0, total, batch_size):
            xs = [x[start:start + batch_size] for x in inputs]
            with np.errstate(all="ignore"):
                out = probe(xs, training=training)
                out = out if isinstance(out, (list, tuple)) else [out]  # one-layer models
                stats = np.array([np.asarray(o, dtype=np.float64) for o in out])
            chunks.append((xs[0].shape[0], stats))
        with np.errstate(all="ignore"):
            for size, stats in chunks:
                sums[:, 0] += size * stats[:, 0]
            mean = sums[:, 0] / total
            for size, stats in chunks:  # within-chunk variance + between-chunk spread
                sums[:, 1] += size * (stats[:, 1] + np.square(stats[:, 0] - mean))
            var = sums[:, 1] / total
        n = len(outer)
        result = {"mean": mean[:n], "var": var[:n],
                  "pre_mean": np.full(n, np.nan), "pre_var": np.full(n, np.nan)}
        result["pre_mean"][pre_index] = mean[n:]
        result["pre_var"][pre_index] = var[n:]
        return result

    # ------------------------------------------------------------------------------
    def plot(self, result, path=None, title=None):
        """Draw ``result`` (from :meth:`visualize`) as two panels; return the ``Figure``.

        Left: mean, right: variance (log scale), against the layer's position (layer
        names on the x-axis). Lines are AutoInit's predictions of every layer's output,
        hollow circles the measured outputs; at the layers AutoInit initializes, filled
        circles are the measured pre-activation (the linear part, before the layer's own
        ``activation=``) and crosses its prediction: that is what AutoInit sets to mean 0
        and variance ``signal_variance`` (the dashed target lines). Red: the model's
        default initialization; blue: AutoInit.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as err:  # pragma: no cover - depends on the installed extras
            raise ImportError("plotting needs matplotlib: pip install "
                              "'keras_actfn[plots]'") from err

        with np.errstate(all="ignore"):  # axis transforms of huge (overflowing) signals
            return self._draw(Figure, FigureCanvasAgg, result, path, title)

    def _draw(self, Figure, FigureCanvasAgg, result, path, title):  # noqa: N803
        from matplotlib.lines import Line2D

        fig = Figure(figsize=self.figsize, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        ax_mean, ax_var = fig.subplots(1, 2)
        depth = np.asarray(result["depth"])
        weighted = np.asarray(result["weighted"], dtype=bool)
        target = float(result.get("signal_variance", 1.0))

        ax_mean.axhline(0.0, color="0.5", linewidth=0.9, linestyle="--", gid=GID_TARGET)
        ax_var.axhline(target, color="0.5", linewidth=0.9, linestyle="--", gid=GID_TARGET)
        big_mean = 0.0
        for init in INITS:
            colour = _COLOURS[init]
            for ax, key in ((ax_mean, "mean"), (ax_var, "var")):
                positive = key == "var"
                pred = _plottable(result[f"{init}_predicted_{key}"], positive)
                emp = _plottable(result[f"{init}_empirical_{key}"], positive)
                pre_pred = _plottable(result.get(f"{init}_predicted_pre_{key}",
                                                 np.full(len(depth), np.nan)), positive)
                pre_emp = _plottable(result.get(f"{init}_empirical_pre_{key}",
                                                np.full(len(depth), np.nan)), positive)
                if key == "mean":
                    finite = np.abs(np.concatenate([pred, emp, pre_pred, pre_emp]))
                    finite = finite[np.isfinite(finite)]
                    big_mean = max(big_mean, float(finite.max()) if finite.size else 0.0)
                ax.plot(depth, pred, color=colour, linewidth=1.3, alpha=0.8,
                        gid=GID_PREDICTED.format(init))
                ax.plot(depth, emp, linestyle="none", marker="o", markersize=3.5,
                        markerfacecolor="none", markeredgecolor=colour, alpha=0.7,
                        gid=GID_EMPIRICAL.format(init))
                shown = weighted & np.isfinite(pre_emp)
                ax.plot(depth[shown], pre_emp[shown], linestyle="none", marker="o",
                        markersize=4.5, color=colour, gid=GID_PRE_EMPIRICAL.format(init))
                shown = weighted & np.isfinite(pre_pred)
                ax.plot(depth[shown], pre_pred[shown], linestyle="none", marker="x",
                        markersize=6, markeredgewidth=1.3, color=colour,
                        gid=GID_PRE_PREDICTED.format(init))
        if big_mean > 100:
            ax_mean.set_yscale("symlog", linthresh=1.0)
        ax_var.set_yscale("log")
        if self.ylim_mean is not None:
            ax_mean.set_ylim(*self.ylim_mean)
        if self.ylim_var is not None:
            ax_var.set_ylim(*self.ylim_var)
        ax_mean.set_ylabel("mean")
        ax_var.set_ylabel("variance")
        ax_mean.set_title("mean (target 0)", fontsize="medium")
        ax_var.set_title(f"variance (target {target:g})", fontsize="medium")
        names = [str(n) for n in result.get("layers", [])]
        every = max(1, math.ceil(len(depth) / 24))  # at most ~24 names per axis
        for ax in (ax_mean, ax_var):
            ax.set_xlim(0, max(len(depth), 1) + 1)
            if len(names) == len(depth):
                ax.set_xticks(depth[::every])
                ax.set_xticklabels([_short_name(n) for n in names[::every]], rotation=60,
                                   ha="right", rotation_mode="anchor", fontsize=6)
                ax.set_xlabel("layer (topological order" + (
                    f", every {_ordinal(every)} named)" if every > 1 else ")"), fontsize="small")
            else:
                ax.set_xlabel("layer (topological order)", fontsize="small")
        handles = [Line2D([], [], color=_COLOURS[i], linewidth=2.5, label=_LABELS[i])
                   for i in INITS]
        handles += [
            Line2D([], [], color="0.3", linewidth=1.3, label="line: predicted layer output"),
            Line2D([], [], linestyle="none", marker="o", markersize=4, markerfacecolor="none",
                   markeredgecolor="0.3", label="hollow: measured layer output"),
            Line2D([], [], linestyle="none", marker="o", markersize=4.5, color="0.3",
                   label="filled: measured pre-activation of weighted layers "
                         "(before their own activation=)"),
            Line2D([], [], linestyle="none", marker="x", markersize=6, markeredgewidth=1.3,
                   color="0.3", label="cross: predicted pre-activation"),
            Line2D([], [], color="0.5", linewidth=0.9, linestyle="--",
                   label=f"target: AutoInit sets each weighted layer's pre-activation to "
                         f"mean 0, variance {target:g}"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize="x-small",
                   frameon=False)
        if title:
            fig.suptitle(f"Signal propagation: {title}")
        if path is not None:
            fig.savefig(path)
        return fig


def _ordinal(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _check_ylim(value, name):
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high); got {value!r}") from None
    if not low < high:
        raise ValueError(f"{name} must have low < high; got {value!r}")
    return low, high


def _linear_twin_output(node):
    """The pre-activation tensor of a weighted layer called at ``node``: its output when
    the activation is linear, else the output of a twin with ``activation="linear"`` and
    the same weights (None for layers without ``activation`` or several inputs)."""
    layer = node.operation
    act = getattr(layer, "activation", None)
    if act is None or not layer.weights or keras_graph.is_model(layer) or \
            len(node.inputs) != 1:
        return None
    if getattr(act, "__name__", "") == "linear":
        return node.outputs[0]
    try:
        config = dict(layer.get_config(), activation="linear", name=f"{layer.name}__pre")
        twin = type(layer).from_config(config)
        kwargs = {k: v for k, v in node.call_kwargs.items() if k not in ("training", "mask")}
        out = twin(*node.call_args, **kwargs)
        twin.set_weights(layer.get_weights())
    except Exception:  # noqa: BLE001 - a layer that cannot be twinned: no pre marker
        return None
    return out


def _short_name(name, width=18):
    return name if len(name) <= width else name[:width - 1] + "…"


def _plottable(values, positive=False):
    values = np.asarray(values, dtype=np.float64).copy()
    bad = ~np.isfinite(values)
    if positive:
        bad |= values <= 0
    values[bad] = np.nan
    return values


__all__ = ["AutoInitVisualizer", "GID_PREDICTED", "GID_EMPIRICAL", "GID_TARGET",
           "GID_PRE_PREDICTED", "GID_PRE_EMPIRICAL"]
