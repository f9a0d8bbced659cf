"""Small layers the transformer models need and Keras lacks, written for both Kerases.

* :class:`PositionEmbedding`: a learned position vector added to each token.
* :class:`ClassToken`: a learned ``[class]`` token put in front of the token sequence (ViT).
* :class:`TiedEmbedding`: an ``Embedding`` that, called with ``reverse=True``, multiplies by
  its transposed matrix: the GPT-2 / nanoGPT language-model head that shares its weights
  with the token embedding.

They compute with TensorFlow ops and are registered (``keras_actfn>Name``), so models using
them save and reload without ``custom_objects``.
"""

from __future__ import annotations

from ..backend import KERAS3, keras, serializable, tf


@serializable
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position: ``y[:, t] = x[:, t] + P[t]``.

    Args:
        sequence_length: the most positions the layer serves (inputs may be shorter: the
            first ``T`` rows of ``P`` are used).
        initializer: of the ``(sequence_length, features)`` matrix ``P``.
    """

    def __init__(self, sequence_length, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"PositionEmbedding needs a known feature size; got input shape "
                             f"{tuple(input_shape)}")
        if input_shape[-2] is not None and input_shape[-2] > self.sequence_length:
            raise ValueError(f"input has {input_shape[-2]} positions but the layer was made for "
                             f"at most sequence_length={self.sequence_length}")
        self.positions = self.add_weight(name="positions",
                                         shape=(self.sequence_length, int(input_shape[-1])),
                                         initializer=self.initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        length = tf.shape(inputs)[-2]
        table = tf.cast(self.positions, inputs.dtype)[:length]
        return inputs + table

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(sequence_length=self.sequence_length,
                      initializer=keras.initializers.serialize(self.initializer))
        return config


@serializable
class ClassToken(keras.layers.Layer):
    """Prepends one learned token to a ``(batch, tokens, features)`` sequence.

    The output has ``tokens + 1`` positions; position 0 is the ``[class]`` token whose final
    state a ViT classifies (Dosovitskiy et al., 2021).
    """

    def __init__(self, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(int(input_shape[-1]),),
                                     initializer=self.initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        batch = tf.shape(inputs)[0]
        token = tf.cast(self.token, inputs.dtype)[None, None, :]
        return tf.concat([tf.tile(token, [batch, 1, 1]), inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(initializer=keras.initializers.serialize(self.initializer))
        return config


@serializable
class TiedEmbedding(keras.layers.Embedding):
    """A token embedding whose matrix also serves as the language-model read-out.

    ``layer(ids)`` looks tokens up as ``Embedding`` does; ``layer(h, reverse=True)`` returns
    ``h @ E^T``, the logits over the vocabulary, with the same matrix ``E`` (weight tying,
    as in GPT-2 and nanoGPT). Use one layer object for both calls in a functional model.
    It is an ``Embedding`` subclass, so code that handles embeddings (AutoInit's rule, for
    example) recognizes it.
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        matrix = tf.cast(self.embeddings, inputs.dtype)
        return tf.einsum("...d,vd->...v", inputs, matrix)

    if KERAS3:
        # Keras 3 infers symbolic outputs from compute_output_shape, which cannot see
        # `reverse`; give the output spec directly (tf_keras traces call() instead).
        def compute_output_spec(self, inputs, reverse=False):
            if not reverse:
                return super().compute_output_spec(inputs)
            shape = tuple(inputs.shape[:-1]) + (self.input_dim,)
            return keras.KerasTensor(shape, dtype=self.compute_dtype)


__all__ = ["PositionEmbedding", "ClassToken", "TiedEmbedding"]
