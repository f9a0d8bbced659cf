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

from ..backend import keras, tf
from .core import AutoInit, AutoInitError, graph_of

#: ``gid`` of each curve of the plot (``<kind>-<init>``) and of the target line
GID_PREDICTED = "predicted-{}"
GID_EMPIRICAL = "empirical-{}"
GID_TARGET = "target-variance"

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


def copy_model(model):
    """A clone of ``model`` with the same weights (``clone_model`` alone re-initializes)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _all_layers(model):
    """Every layer of ``model``, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _weighted_layer_names(model):
    return sorted({layer.name for layer in _all_layers(model) if layer.weights})


class AutoInitVisualizer:
    """Compare predicted and empirical signal propagation, default init vs AutoInit.

    Example::

        result = AutoInitVisualizer().visualize(model, path="signal.png")
        result["autoinit_empirical_var"]   # one value per layer, in topological order

    Args:
        figsize: size of the two-panel figure in inches.
        dpi: resolution of the saved PNG.
    """

    def __init__(self, figsize=(11.0, 4.2), dpi=100):
        self.figsize = tuple(figsize)
        self.dpi = int(dpi)
        #: notes of the last run (e.g. where a prediction overflowed)
        self.notes: list[str] = []
        #: the two clones of the last run: ``{"default": model, "autoinit": model}``
        self.models: dict = {}

    # ------------------------------------------------------------------------------
    def visualize(self, model, path=None, input_data_mean=0.0, input_data_var=1.0,
                  samples=64, seed=0, autoinit_kwargs=None, batch_size=32, training=True,
                  input_shape=None):
        """Measure signal propagation; return a dict of per-layer arrays (and plot it).

        Args:
            model: a functional or Sequential Keras model (left untouched).
            path: if given, the two-panel figure is saved there (PNG).
            input_data_mean, input_data_var: moments of the Gaussian input (scalars, or one
                per model input); AutoInit is told the same.
            samples: number of Gaussian input samples for the empirical moments.
            seed: seed of the Gaussian input and (unless ``autoinit_kwargs`` has its own
                ``seed``) of AutoInit's weight draws.
            autoinit_kwargs: further arguments of :class:`AutoInit` (``signal_variance``,
                ``distribution``, ``keep``, ``custom_distribution_estimators``...).
            batch_size: samples per forward pass of the probe.
            training: run the probe in training mode (what AutoInit's rules model:
                batch statistics in BatchNormalization, active Dropout).
            input_shape: per-sample shape (or a list, one per input) for models whose
                inputs have unknown dimensions.

        Returns:
            ``{"layers", "classes", "depth", "weighted", "signal_variance",
            "<init>_predicted_mean", "<init>_predicted_var", "<init>_empirical_mean",
            "<init>_empirical_var"}`` with ``<init>`` in ``default``/``autoinit``: one entry
            per layer call in topological order (input layers excluded). ``weighted`` marks
            the layers AutoInit initialized. Values that overflow are ``inf``/``nan``.
        """
        samples, batch_size = int(samples), int(batch_size)
        if samples < 2:
            raise ValueError(f"samples must be at least 2, got {samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        kwargs = dict(autoinit_kwargs or {})
        for key in ("input_data_mean", "input_data_var"):
            if key in kwargs:
                raise ValueError(f"give {key} to visualize(), not in autoinit_kwargs")
        kwargs.setdefault("seed", seed)
        # layers are cloned: refer to kept layers by name, not by the caller's objects
        kwargs["keep"] = {k if isinstance(k, str) else k.name for k in kwargs.get("keep", ())}
        kwargs.update(input_data_mean=input_data_mean, input_data_var=input_data_var)
        self.notes = []

        graph = graph_of(model)  # fails early, with AutoInit's message, on subclassed models
        nodes = [n for n in graph.nodes if not isinstance(n.operation, keras.layers.InputLayer)]
        names = [n.operation.name for n in nodes]
        inputs = self._gaussian_inputs(graph, input_data_mean, input_data_var, samples, seed,
                                       input_shape)

        models = {"default": copy_model(model), "autoinit": copy_model(model)}
        self.models = models
        result = {"layers": np.array(names, dtype=object),
                  "classes": np.array([type(n.operation).__name__ for n in nodes],
                                      dtype=object),
                  "depth": np.arange(1, len(nodes) + 1)}

        # AutoInit proper, on its own clone
        init = AutoInit(**kwargs)
        init.initialize_model(models["autoinit"])
        result["signal_variance"] = float(init.signal_variance)
        result["autoinit_predicted_mean"], result["autoinit_predicted_var"], initialized = \
            self._predictions(init.records, names)
        result["weighted"] = initialized

        # the model as given: propagate through its own weights, draw nothing
        quiet = dict(kwargs, keep=kwargs["keep"] | set(_weighted_layer_names(models["default"])),
                     center_activations=False)
        given = AutoInit(**quiet)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # reported below instead
                given.initialize_model(models["default"])
        except (FloatingPointError, AutoInitError, OverflowError) as err:
            done = len(given.records)
            self.notes.append(f"default-init prediction stops after {done} layers: {err}")
        result["default_predicted_mean"], result["default_predicted_var"], _ = \
            self._predictions(given.records, names)

        for name in INITS:
            mean, var = self._empirical(models[name], nodes, inputs, batch_size, training)
            result[f"{name}_empirical_mean"], result[f"{name}_empirical_var"] = mean, var
        if path is not None:
            self.plot(result, path=path, title=getattr(model, "name", None))
        return result

    # ------------------------------------------------------------------------------
    @staticmethod
    def _predictions(records, names):
        """Align AutoInit's records (nested layers included) with the outer layers."""
        mean = np.full(len(names), np.nan)
        var = np.full(len(names), np.nan)
        initialized = np.zeros(len(names), dtype=bool)
        i = 0
        for rec in records:
            if i < len(names) and rec.layer == names[i]:
                if rec.outputs:
                    mean[i], var[i] = rec.outputs[0].mean, rec.outputs[0].var
                initialized[i] = rec.initialized
                i += 1
        return mean, var, initialized

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
        """Per-layer (mean, var) of ``model`` on ``inputs``, pooled over batch chunks."""
        graph = graph_of(model)
        outer = [n for n in graph.nodes
                 if not isinstance(n.operation, keras.layers.InputLayer)]
        if len(outer) != len(nodes):  # the clone must mirror the original graph
            raise AutoInitError("the cloned model's graph differs from the original's")
        probe = keras.Model(graph.inputs, [_MomentProbe()(n.outputs[0]) for n in outer])
        total = inputs[0].shape[0]
        sums = np.zeros((len(outer), 2))
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
        return mean, var

    # ------------------------------------------------------------------------------
    def plot(self, result, path=None, title=None):
        """Draw ``result`` (from :meth:`visualize`) as two panels; return the ``Figure``.

        Left: mean of every layer's output; right: its variance (log scale), against the
        layer's position. Lines are AutoInit's predictions, markers the empirical values
        (filled at the layers AutoInit initializes), red for the default initialization and
        blue for AutoInit; the dashed line is the target ``signal_variance``.
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
        fig = Figure(figsize=self.figsize, dpi=self.dpi)
        FigureCanvasAgg(fig)
        ax_mean, ax_var = fig.subplots(1, 2)
        depth = np.asarray(result["depth"])
        weighted = np.asarray(result["weighted"], dtype=bool)
        target = float(result.get("signal_variance", 1.0))

        ax_mean.axhline(0.0, color="0.6", linewidth=0.8, linestyle="--", gid=GID_TARGET)
        ax_var.axhline(target, color="0.6", linewidth=0.8, linestyle="--", gid=GID_TARGET,
                       label=f"target {target:g}: variance AutoInit gives each filled "
                             f"layer's pre-activation")
        big_mean = 0.0
        for init in INITS:
            colour = _COLOURS[init]
            for ax, key in ((ax_mean, "mean"), (ax_var, "var")):
                pred = _plottable(result[f"{init}_predicted_{key}"], positive=key == "var")
                emp = _plottable(result[f"{init}_empirical_{key}"], positive=key == "var")
                if key == "mean":
                    finite = np.abs(np.concatenate([pred, emp]))
                    finite = finite[np.isfinite(finite)]
                    big_mean = max(big_mean, float(finite.max()) if finite.size else 0.0)
                ax.plot(depth, pred, color=colour, linewidth=1.4, gid=GID_PREDICTED.format(init),
                        label=f"{_LABELS[init]}: predicted")
                ax.plot(depth[~weighted], emp[~weighted], linestyle="none", marker="o",
                        markersize=3, markerfacecolor="none", markeredgecolor=colour,
                        alpha=0.6, gid=GID_EMPIRICAL.format(init))
                ax.plot(depth[weighted], emp[weighted], linestyle="none", marker="o",
                        markersize=3.5, color=colour, gid=GID_EMPIRICAL.format(init),
                        label=f"{_LABELS[init]}: empirical")
        if big_mean > 100:
            ax_mean.set_yscale("symlog", linthresh=1.0)
        ax_var.set_yscale("log")
        ax_mean.set_ylabel("mean of layer output")
        ax_var.set_ylabel("variance of layer output")
        names = [str(n) for n in result.get("layers", [])]
        every = max(1, math.ceil(len(depth) / 24))  # at most ~24 names per axis
        for ax in (ax_mean, ax_var):
            ax.set_xlim(0, max(len(depth), 1) + 1)
            if len(names) == len(depth):
                ax.set_xticks(depth[::every])
                ax.set_xticklabels([_short_name(n) for n in names[::every]], rotation=60,
                                   ha="right", fontsize=6)
                ax.set_xlabel("layer (topological order" + (
                    f", every {every}th named)" if every > 1 else ")"))
            else:
                ax.set_xlabel("layer (topological order)")
        from matplotlib.lines import Line2D

        handles, _ = ax_var.get_legend_handles_labels()
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=3.5,
                              color="0.3", label="filled: layers AutoInit initializes "
                                                 "(output after their own activation)"))
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=3.5,
                              markerfacecolor="none", markeredgecolor="0.3",
                              label="hollow: other layers (activations, pooling...)"))
        ax_var.legend(handles=handles, loc="best", fontsize="x-small", frameon=True,
                      framealpha=0.85)
        if title:
            fig.suptitle(f"Signal propagation: {title}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


def _short_name(name, width=18):
    return name if len(name) <= width else name[:width - 1] + "…"


def _plottable(values, positive=False):
    values = np.asarray(values, dtype=np.float64).copy()
    bad = ~np.isfinite(values)
    if positive:
        bad |= values <= 0
    values[bad] = np.nan
    return values


__all__ = ["AutoInitVisualizer", "copy_model", "GID_PREDICTED", "GID_EMPIRICAL", "GID_TARGET"]
