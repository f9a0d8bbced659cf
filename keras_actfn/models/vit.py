"""ViT-tiny and ViT-small for 32x32 images, as evaluated in the GRAFS paper.

Where the numbers come from: GRAFS Appendix D.1, Table 4 gives

=============  ========  =========
               ViT-tiny  ViT-small
=============  ========  =========
embed_dim      512       512
depth          4         6
num_heads      6         8
mlp_dim        256       512
patch_size     4         4
img_size       32        32
=============  ========  =========

and §3 says both are "adapted from the implementation [33]" (K. Yoshioka,
vision-transformers-cifar10), whose ``vit_tiny``/``vit_small`` networks are the ViT for
small datasets of Lee, Lee & Song (2021): **shifted patch tokenization** (the image and
its four copies shifted one pixel left, right, up and down are stacked along channels, cut
into patches, layer-normalized and projected) and **locality self-attention** (a learned softmax
temperature, and no token attends to itself). The rest is the pre-norm ViT of Dosovitskiy
et al.: a ``[class]`` token and learned position embeddings, blocks
``x + Attn(LN(x))`` and ``x + MLP(LN(x))`` with ``MLP = Dense(mlp_dim) -> act -> Dropout ->
Dense(embed_dim) -> Dropout``, and a read-out ``LN -> Dense`` on the class token. Heads have
64 dimensions each whatever their number (so the attention's inner width is
``64 * num_heads``: 384 for ViT-tiny, 512 for ViT-small), dropout and embedding dropout are
0.1, and GELU (exact, erf form) is the default activation, as in that implementation.

The activation is applied at one site per block, inside the MLP: ``depth`` sites.

Differences from the PyTorch reference, by construction: attention uses
``keras.layers.MultiHeadAttention`` (here :class:`LocalitySelfAttention`, a subclass) with
``use_bias=False``, which matches the reference's bias-free query/key/value projection but
also drops the output projection's bias (``embed_dim`` parameters per block, 0.05% of the
total); weights use Keras's default initializers, the class token and position embeddings
``N(0, 1)`` as the reference's ``torch.randn``.
"""

from __future__ import annotations

from ..backend import KERAS3, keras, serializable, tf
from ..layers.custom import activation_layer
from .transformer_layers import ClassToken, PositionEmbedding

#: GRAFS Table 4 (image size 32, patch size 4); head width and dropouts from [33].
VIT_CONFIGS = {
    "vit_tiny": dict(embed_dim=512, depth=4, num_heads=6, mlp_dim=256, patch_size=4),
    "vit_small": dict(embed_dim=512, depth=6, num_heads=8, mlp_dim=512, patch_size=4),
}
HEAD_DIM = 64
LAYER_NORM_EPSILON = 1e-5  # PyTorch's default, as in the reference implementation

# one-pixel shifts of shifted patch tokenization: (padding, cropping) of (rows, columns)
_SHIFTS = (
    (((0, 0), (1, 0)), ((0, 0), (0, 1))),   # content moves right
    (((0, 0), (0, 1)), ((0, 0), (1, 0))),   # left
    (((1, 0), (0, 0)), ((0, 1), (0, 0))),   # down
    (((0, 1), (0, 0)), ((1, 0), (0, 0))),   # up
)


@serializable
class LocalitySelfAttention(keras.layers.MultiHeadAttention):
    """Locality self-attention (Lee, Lee & Song, 2021) on Keras's ``MultiHeadAttention``.

    Two changes to scaled dot-product attention: the logits are multiplied by a learned
    temperature ``exp(t)`` (``t`` starts at 0, so training starts from the usual
    ``1/sqrt(key_dim)`` scaling), and each query is masked from the key at its own
    position (the diagonal), so attention goes to *other* tokens.

    The temperature multiplies the query input; with ``use_bias=False`` (required) the
    query projection is linear, so that is exactly a multiplication of the logits.
    """

    def __init__(self, num_heads, key_dim, use_bias=False, **kwargs):
        if use_bias:
            raise ValueError("LocalitySelfAttention needs use_bias=False: its temperature "
                             "scales the query input, which scales the logits only when the "
                             "query projection has no bias")
        super().__init__(num_heads=num_heads, key_dim=key_dim, use_bias=False, **kwargs)

    def build(self, query_shape, value_shape=None, key_shape=None):
        self.log_temperature = self.add_weight(name="log_temperature", shape=(),
                                               initializer="zeros", trainable=True)
        if KERAS3:
            super().build(query_shape, value_shape if value_shape is not None else query_shape,
                          key_shape)
        else:  # tf_keras builds its projections on the first call (_build_from_signature)
            super().build(query_shape)

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
             training=None, use_causal_mask=False):
        batch, queries, keys = tf.shape(query)[0], tf.shape(query)[1], tf.shape(value)[1]
        off_diagonal = tf.logical_not(tf.eye(queries, keys, dtype=tf.bool))
        mask = tf.broadcast_to(off_diagonal[None], tf.stack([batch, queries, keys]))
        if attention_mask is not None:
            mask = tf.logical_and(mask, tf.cast(attention_mask, tf.bool))
        scaled = query * tf.exp(tf.cast(self.log_temperature, query.dtype))
        return super().call(scaled, value, key=value if key is None else key,
                            attention_mask=mask, return_attention_scores=return_attention_scores,
                            training=training, use_causal_mask=use_causal_mask)


def vit(embed_dim, depth, num_heads, mlp_dim, patch_size=4, activation="gelu",
        input_shape=(32, 32, 3), num_classes=10, head_dim=HEAD_DIM, dropout=0.1,
        embedding_dropout=0.1, shifted_patches=True, locality_attention=True, name="vit",
        **act_kwargs):
    """A pre-norm Vision Transformer classifying by its ``[class]`` token.

    Args:
        embed_dim, depth, num_heads, mlp_dim, patch_size: the architecture (GRAFS Table 4
            for :func:`vit_tiny` and :func:`vit_small`).
        activation: the MLP activation: text, a Keras name, an ``Expr`` or a zero-argument
            layer factory (see ``activation_layer``); GELU by default.
        input_shape: ``(height, width, channels)``, each side a multiple of ``patch_size``.
        num_classes: width of the softmax read-out.
        head_dim: width of each attention head (64 in the reference).
        dropout: after the attention and in the MLP; ``embedding_dropout``: on the tokens.
        shifted_patches: shifted patch tokenization (the reference); ``False`` gives the
            plain linear patch embedding of Dosovitskiy et al.
        locality_attention: :class:`LocalitySelfAttention` (the reference); ``False`` gives
            ordinary ``MultiHeadAttention`` (with biases).
        act_kwargs: passed to ``CustomActivation`` for text activations.
    """
    height, width, channels = (int(s) for s in input_shape)
    if height % patch_size or width % patch_size:
        raise ValueError(f"image sides must be multiples of patch_size={patch_size}; got "
                         f"input_shape={tuple(input_shape)}")
    rows, cols = height // patch_size, width // patch_size

    inputs = keras.Input((height, width, channels))
    x = inputs
    if shifted_patches:
        shifted = [keras.layers.Cropping2D(crop, name=f"shift{i}_crop")(
                   keras.layers.ZeroPadding2D(pad, name=f"shift{i}_pad")(inputs))
                   for i, (pad, crop) in enumerate(_SHIFTS, start=1)]
        x = keras.layers.Concatenate(name="shifted_stack")([inputs, *shifted])
        channels *= 1 + len(_SHIFTS)
    # cut into patches, each flattened in (row, column, channel) order
    x = keras.layers.Reshape((rows, patch_size, cols, patch_size, channels), name="grid")(x)
    x = keras.layers.Permute((1, 3, 2, 4, 5), name="patch_order")(x)
    x = keras.layers.Reshape((rows * cols, patch_size * patch_size * channels),
                             name="patches")(x)
    if shifted_patches:
        x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="patch_norm")(x)
    x = keras.layers.Dense(embed_dim, name="patch_embedding")(x)
    x = ClassToken(initializer=keras.initializers.RandomNormal(stddev=1.0), name="class_token")(x)
    x = PositionEmbedding(rows * cols + 1, initializer=keras.initializers.RandomNormal(stddev=1.0),
                          name="position_embedding")(x)
    x = keras.layers.Dropout(embedding_dropout, name="embedding_dropout")(x)

    for block in range(1, depth + 1):
        prefix = f"block{block}"
        h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{prefix}_ln1")(x)
        if locality_attention:
            attention = LocalitySelfAttention(num_heads, head_dim, output_shape=embed_dim,
                                              name=f"{prefix}_attention")
        else:
            attention = keras.layers.MultiHeadAttention(num_heads, head_dim,
                                                        output_shape=embed_dim,
                                                        name=f"{prefix}_attention")
        h = attention(h, h)
        h = keras.layers.Dropout(dropout, name=f"{prefix}_attention_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_attention_add")([x, h])

        h = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{prefix}_ln2")(x)
        h = keras.layers.Dense(mlp_dim, name=f"{prefix}_mlp_dense1")(h)
        h = activation_layer(activation, name=f"{prefix}_mlp_act",
                             **act_kwargs)(h)
        h = keras.layers.Dropout(dropout, name=f"{prefix}_mlp_dropout1")(h)
        h = keras.layers.Dense(embed_dim, name=f"{prefix}_mlp_dense2")(h)
        h = keras.layers.Dropout(dropout, name=f"{prefix}_mlp_dropout2")(h)
        x = keras.layers.Add(name=f"{prefix}_mlp_add")([x, h])

    # the class token's final state: crop away the patch tokens
    x = keras.layers.Cropping1D((0, rows * cols), name="class_state")(x)
    x = keras.layers.Flatten(name="class_flat")(x)
    x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="head_norm")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def vit_tiny(activation="gelu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
    """ViT-tiny of GRAFS Table 4: 512 wide, 4 blocks of 6 heads, MLP 256, patches 4x4."""
    config = {**VIT_CONFIGS["vit_tiny"], **kwargs}
    return vit(activation=activation, input_shape=input_shape, num_classes=num_classes,
               **{"name": "vit_tiny", **config})


def vit_small(activation="gelu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
    """ViT-small of GRAFS Table 4: 512 wide, 6 blocks of 8 heads, MLP 512, patches 4x4."""
    config = {**VIT_CONFIGS["vit_small"], **kwargs}
    return vit(activation=activation, input_shape=input_shape, num_classes=num_classes,
               **{"name": "vit_small", **config})


__all__ = ["vit", "vit_tiny", "vit_small", "LocalitySelfAttention", "VIT_CONFIGS"]
