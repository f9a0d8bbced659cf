"""Causal decoder-only GPT language models: miniGPT, tinyGPT and smallGPT of the GRAFS paper.

Where the numbers come from: GRAFS Appendix D.1, Table 5

==========  =======  =======  ========
            miniGPT  tinyGPT  smallGPT
==========  =======  =======  ========
n_layers    3        6        9
n_heads     3        6        9
n_embd      192      384      576
==========  =======  =======  ========

and §3: "Andrej Karpathy's streamlined implementation of GPT-2" (nanoGPT), trained on
TinyStories, with "11M", "30M" and "65M" parameters. Those totals are what nanoGPT reports
(``GPT.get_num_params()``: every weight except the position embeddings) with its default
vocabulary of 50304 (the GPT-2 BPE's 50257 padded to a multiple of 64) and the output head
tied to the token embedding: 10.99M, 29.96M and 64.88M. An untied head would add another
``50304 * n_embd`` (9.7M for miniGPT), so the head here is tied (:class:`TiedEmbedding`).

Architecture (nanoGPT ``model.py``, re-expressed in Keras): token + learned position
embeddings -> dropout -> ``n_layers`` pre-norm blocks ``x + Attn(LN(x))``,
``x + MLP(LN(x))`` with causal multi-head self-attention (query/key/value and output
projections with biases, ``n_embd / n_heads`` per head) and ``MLP = Dense(4 n_embd) -> act ->
Dense(n_embd) -> Dropout`` -> final LN -> logits ``h @ E^T`` -> softmax over the vocabulary
at every position. LayerNorms have biases and epsilon 1e-5; weights start ``N(0, 0.02)``
and biases at 0 (nanoGPT also shrinks the residual projections by ``1/sqrt(2 n_layers)``,
which Keras's single ``kernel_initializer`` per attention layer cannot express: not done).

The activation is applied at one site per block, inside the MLP: ``n_layers`` sites. The
default is GELU (exact, erf form, as ``torch.nn.GELU()``).

The context length (nanoGPT's ``block_size``) is not given in the paper: ``seq_len`` sets it
(default 256) and only changes the position-embedding table.
"""

from __future__ import annotations

from ..backend import keras
from ..layers.custom import activation_layer
from .transformer_layers import PositionEmbedding, TiedEmbedding

#: GRAFS Table 5.
GPT_CONFIGS = {
    "mini_gpt": dict(n_layers=3, n_heads=3, n_embd=192),
    "tiny_gpt": dict(n_layers=6, n_heads=6, n_embd=384),
    "small_gpt": dict(n_layers=9, n_heads=9, n_embd=576),
}
#: nanoGPT's default vocabulary: GPT-2 BPE (50257 tokens) padded up to a multiple of 64.
GPT2_VOCAB_SIZE = 50304
DEFAULT_SEQ_LEN = 256
LAYER_NORM_EPSILON = 1e-5
INIT_STDDEV = 0.02

_ALIASES = {"minigpt": "mini_gpt", "tinygpt": "tiny_gpt", "smallgpt": "small_gpt"}


def gpt_config(config) -> dict:
    """``{"n_layers", "n_heads", "n_embd"}`` from a name (``"mini_gpt"``, ``"miniGPT"``...)
    or a dict of those sizes."""
    if isinstance(config, dict):
        missing = {"n_layers", "n_heads", "n_embd"} - set(config)
        if missing:
            raise ValueError(f"a GPT config needs n_layers, n_heads and n_embd; missing "
                             f"{sorted(missing)} in {config}")
        return {k: int(config[k]) for k in ("n_layers", "n_heads", "n_embd")}
    key = str(config).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in GPT_CONFIGS:
        raise ValueError(f"unknown GPT config {config!r}; expected one of {sorted(GPT_CONFIGS)} "
                         "or a dict with n_layers, n_heads and n_embd")
    return dict(GPT_CONFIGS[key])


def gpt(config="mini_gpt", vocab_size=GPT2_VOCAB_SIZE, seq_len=DEFAULT_SEQ_LEN,
        activation="gelu", dropout=0.0, name=None, **act_kwargs):
    """Build a causal GPT whose output is a softmax over ``vocab_size`` at each position.

    Args:
        config: ``"mini_gpt"``, ``"tiny_gpt"``, ``"small_gpt"`` (GRAFS Table 5) or a dict
            ``{"n_layers": ..., "n_heads": ..., "n_embd": ...}``.
        vocab_size: tokens in the vocabulary (50304 in the paper's nanoGPT setup; a
            character-level corpus gives a few dozen).
        seq_len: context length; the model takes ``(batch, seq_len)`` integer token ids and
            returns ``(batch, seq_len, vocab_size)`` next-token probabilities (float32).
        activation: the MLP activation (text, Keras name, ``Expr`` or layer factory).
        dropout: nanoGPT's single dropout rate (embeddings, attention probabilities,
            residual branches); 0 by default, as nanoGPT's pre-training default.
        act_kwargs: passed to ``CustomActivation`` for text activations.
    """
    sizes = gpt_config(config)
    layers, heads, width = sizes["n_layers"], sizes["n_heads"], sizes["n_embd"]
    if width % heads:
        raise ValueError(f"n_embd={width} is not a multiple of n_heads={heads}")
    vocab_size, seq_len = int(vocab_size), int(seq_len)

    def init():
        # a new initializer per layer: one unseeded instance reused gives every layer the
        # same draw (in both Kerases)
        return keras.initializers.RandomNormal(stddev=INIT_STDDEV)

    def norm(x, name):
        return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)(x)

    def dense(units, name):
        return keras.layers.Dense(units, kernel_initializer=init(), name=name)

    tokens = keras.Input((seq_len,), dtype="int32", name="tokens")
    embedding = TiedEmbedding(vocab_size, width, embeddings_initializer=init(),
                              name="token_embedding")
    x = embedding(tokens)
    x = PositionEmbedding(seq_len, initializer=init(), name="position_embedding")(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for block in range(1, layers + 1):
        prefix = f"block{block}"
        h = norm(x, f"{prefix}_ln1")
        h = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout,
                                            kernel_initializer=init(),
                                            name=f"{prefix}_attention")(h, h, use_causal_mask=True)
        h = keras.layers.Dropout(dropout, name=f"{prefix}_attention_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_attention_add")([x, h])
        h = norm(x, f"{prefix}_ln2")
        h = dense(4 * width, f"{prefix}_mlp_dense1")(h)
        h = activation_layer(activation, name=f"{prefix}_mlp_act",
                             **act_kwargs)(h)
        h = dense(width, f"{prefix}_mlp_dense2")(h)
        h = keras.layers.Dropout(dropout, name=f"{prefix}_mlp_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_mlp_add")([x, h])
    x = norm(x, "final_ln")
    logits = embedding(x, reverse=True)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(logits)
    if name is None:
        name = config if isinstance(config, str) else "gpt"
    return keras.Model(tokens, outputs, name=name)


def mini_gpt(activation="gelu", vocab_size=GPT2_VOCAB_SIZE, seq_len=DEFAULT_SEQ_LEN, **kwargs):
    """miniGPT (GRAFS Table 5): 3 layers, 3 heads, width 192; 11M parameters at 50304 tokens."""
    return gpt("mini_gpt", vocab_size=vocab_size, seq_len=seq_len, activation=activation,
               **kwargs)


def tiny_gpt(activation="gelu", vocab_size=GPT2_VOCAB_SIZE, seq_len=DEFAULT_SEQ_LEN, **kwargs):
    """tinyGPT (GRAFS Table 5): 6 layers, 6 heads, width 384; 30M parameters at 50304 tokens."""
    return gpt("tiny_gpt", vocab_size=vocab_size, seq_len=seq_len, activation=activation,
               **kwargs)


def small_gpt(activation="gelu", vocab_size=GPT2_VOCAB_SIZE, seq_len=DEFAULT_SEQ_LEN, **kwargs):
    """smallGPT (GRAFS Table 5): 9 layers, 9 heads, width 576; 65M parameters at 50304 tokens."""
    return gpt("small_gpt", vocab_size=vocab_size, seq_len=seq_len, activation=activation,
               **kwargs)


__all__ = ["gpt", "gpt_config", "mini_gpt", "tiny_gpt", "small_gpt", "GPT_CONFIGS",
           "GPT2_VOCAB_SIZE"]
