"""The one place that reads a Keras layer graph, for Keras 3 and ``tf_keras`` alike.

Surgery, AutoInit, its signal plot, the Fisher-eigenvalue features and the user-model
evaluator all walk Keras models; every fact about that walk that differs between the two
Kerases (or needs Keras internals) lives here:

* the functional graph of a model in topological order (:func:`functional_graph`), each
  call of a layer as a :class:`GraphNode` (the operation, its input and output tensors,
  the arguments it was called with), also for one layer's own calls (:func:`layer_nodes`);
  Keras 3 calls nodes' parts ``operation``/``input_tensors``/``arguments``, ``tf_keras``
  ``layer``/``keras_inputs``/``call_args``, and a Keras 3 Sequential keeps its graph in a
  wrapped Functional;
* which layer produced a symbolic tensor (:func:`tensor_layer`), input layers
  (:func:`is_input_layer`), nested models (:func:`is_model`, :func:`is_graph_model`: the
  ``Functional`` class is internal in both, and ``tf_keras`` flags subclassed models with
  ``_is_graph_network=False``);
* every layer of a model, nested ones included, each once (:func:`walk_layers`,
  :func:`all_layers`);
* the output shape of a layer's first call (:func:`first_output_shape`: Keras 3 infers
  symbolic shapes without running ``call``, so a sublayer can still be unbuilt after
  cloning);
* cloning (:func:`clone`, :func:`copy_model`): ``keras.models.clone_model(model,
  clone_function=fn)`` calls ``fn`` once per layer in both (Keras 3 caches by layer
  identity, ``tf_keras`` visits each layer of ``model.layers`` once), so shared layers
  stay shared.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from .backend import KERAS3, keras, tf

__all__ = ["GraphNode", "Graph", "functional_graph", "layer_nodes", "tensor_layer",
           "is_model", "is_graph_model", "is_input_layer", "walk_layers", "all_layers", "sublayers",
           "first_output_shape", "clone", "copy_model"]


# ------------------------------------------------------------------------ nodes and graphs
@dataclass
class GraphNode:
    """One call of an operation (a layer, a nested model, a Keras op) in a graph."""

    operation: Any
    inputs: list       # KerasTensors feeding the node (flattened)
    outputs: list      # KerasTensors it produces (flattened)
    call_args: tuple
    call_kwargs: dict

    @property
    def input_shapes(self):
        return [tuple(t.shape) for t in self.inputs]

    @property
    def output_shapes(self):
        return [tuple(t.shape) for t in self.outputs]


@dataclass
class Graph:
    inputs: list
    outputs: list
    nodes: list   # topological order


def _graph_node(node) -> GraphNode:
    """A Keras node (either Keras) as a :class:`GraphNode`."""
    if KERAS3:
        op, ins, outs = node.operation, node.input_tensors, node.output_tensors
        args, kwargs = node.arguments.args, node.arguments.kwargs
    else:
        op, ins, outs = node.layer, node.keras_inputs, node.outputs
        args, kwargs = node.call_args, node.call_kwargs
    return GraphNode(op, list(tf.nest.flatten(ins)), list(tf.nest.flatten(outs)),
                     tuple(args), dict(kwargs))


def functional_graph(model) -> Graph | None:
    """The functional graph of ``model`` in topological order (nodes by decreasing depth),
    or None when it has none (a subclassed model, a Sequential never called on an input)."""
    inner = getattr(model, "_functional", None)  # Keras 3 Sequential wraps a Functional
    if KERAS3 and inner is not None:
        model = inner
    by_depth = getattr(model, "_nodes_by_depth", None)
    if not by_depth or not getattr(model, "inputs", None):
        return None
    nodes = [_graph_node(node) for depth in sorted(by_depth, reverse=True)
             for node in by_depth[depth]]
    return Graph(list(tf.nest.flatten(model.inputs)), list(tf.nest.flatten(model.outputs)),
                 nodes)


def layer_nodes(layer) -> list:
    """Every call of ``layer`` in the graphs it belongs to, as :class:`GraphNode`, in the
    order it was called."""
    return [_graph_node(node) for node in getattr(layer, "_inbound_nodes", None) or []]


def tensor_layer(tensor):
    """The layer (operation) that produced the symbolic ``tensor``, or None."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history[0]


def first_output_shape(layer):
    """Output shape of ``layer``'s first call in its graph, or None if it was never called
    or its first call has several outputs."""
    nodes = layer_nodes(layer)
    if not nodes or len(nodes[0].outputs) != 1:
        return None
    return nodes[0].output_shapes[0]


# ------------------------------------------------------------------------ kinds of layer
@functools.lru_cache(maxsize=None)
def _functional_class():
    if KERAS3:
        module = importlib.import_module("keras.src.models.functional")
    else:
        module = importlib.import_module(keras.__name__ + ".src.engine.functional")
    return module.Functional


def is_model(obj) -> bool:
    """A Keras model of any kind (Sequential, Functional or subclassed)."""
    return isinstance(obj, keras.Model)


def is_graph_model(obj) -> bool:
    """A Sequential or Functional model: a layer graph ``clone_model`` can rebuild (not a
    subclassed model, whose layers are connected by code in ``call``)."""
    if isinstance(obj, keras.Sequential):
        return True
    return (isinstance(obj, _functional_class())
            and bool(getattr(obj, "_is_graph_network", True)))


def is_input_layer(obj) -> bool:
    return isinstance(obj, keras.layers.InputLayer)


# ------------------------------------------------------------------------ every layer
def _model_layers(layer):
    return list(layer.layers)


def sublayers(layer) -> list:
    """The layers ``layer`` holds directly (Keras's tracking: a model's layers, a custom
    layer's ``Dense``, a wrapper's inner layer), or ``[]``."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return list(flatten(include_self=False, recursive=False))


def walk_layers(model, enter=is_model):
    """``(path, layer)`` for every layer inside ``model``, each once (a shared layer at its
    first place), depth first in the order of ``model.layers``.

    The layers of a nested layer for which ``enter(layer)`` is true (by default: any
    model) follow it; ``path`` is the names of the nested models on the way, each followed
    by ``"/"`` (``""`` for the top level)."""
    seen = set()
    stack = [("", layer) for layer in reversed(_model_layers(model))]
    while stack:
        path, layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield path, layer
        if enter(layer):
            inner = path + layer.name + "/"
            stack.extend((inner, sub) for sub in reversed(_model_layers(layer)))


def all_layers(model, tracked=False) -> list:
    """Every layer inside ``model``, nested models' layers included, each once, in order.

    ``tracked=True`` also enters every other layer that holds layers (a custom layer's
    ``Dense``, a ``TimeDistributed``'s inner layer): every layer Keras tracks below
    ``model``."""
    if not tracked:
        return [layer for _, layer in walk_layers(model)]
    seen, order, stack = set(), [], list(reversed(sublayers(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        order.append(layer)
        stack.extend(reversed(sublayers(layer)))
    return order


# ------------------------------------------------------------------------ cloning
def clone(model, clone_function=None):
    """``keras.models.clone_model``: the same graph with new layers (fresh weights, from each
    layer's initializers); ``clone_function(layer) -> layer`` makes each new layer."""
    if clone_function is None:
        return keras.models.clone_model(model)
    return keras.models.clone_model(model, clone_function=clone_function)


def copy_model(model):
    """A clone of ``model`` with the same weights (``clone_model`` alone re-initializes)."""
    copy = clone(model)
    copy.set_weights(model.get_weights())
    return copy
