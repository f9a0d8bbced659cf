"""Language-model tasks from a local text file (byte- or character-level).

The GPT experiments of GRAFS train on TinyStories with GPT-2's BPE tokenizer. We ship no BPE
vocabulary and fetch nothing, so the tokenizer here is the simplest honest one: bytes (a
vocabulary of 256, every file encodes) or the file's characters. The parameter counts the
GRAFS paper gives for miniGPT/tinyGPT/smallGPT include the embedding and output matrices of
the 50,257-token GPT-2 vocabulary; the same transformer with a byte vocabulary is smaller by
``(50257 - 256) * width`` per matrix.

The token stream is split *contiguously* into train / validation / test (90/5/5 by default)
before windows are cut, so no window crosses a split boundary and no text of one split
appears in another. A window is ``seq_len + 1`` consecutive tokens: ``x`` its first
``seq_len``, ``y`` its last ``seq_len`` (the next-token targets). With the default
``stride = seq_len`` windows do not overlap and ``x`` and ``y`` are views of one token array.
"""

from __future__ import annotations

import codecs
import os

import numpy as np

from .tasks import DatasetUnavailableError, Task

TOKENIZERS = ("byte", "char")

#: environment variable the ``tinystories`` loader reads when no ``path`` is given
TINYSTORIES_ENV = "KERAS_ACTFN_TINYSTORIES"

_GPT2_NOTE = ("GRAFS's GPT parameter counts use GPT-2's 50,257-token BPE vocabulary, which "
              "is not shipped; this task is {tokenizer}-level with {vocab} tokens")


def _read_text_bytes(path, max_bytes):
    with open(path, "rb") as handle:
        return handle.read(-1 if max_bytes is None else int(max_bytes))


def tokenize(raw: bytes, tokenizer: str = "byte", encoding: str = "utf-8"):
    """``(tokens int32, vocab)``: bytes -> byte values and ``vocab=None``; or characters ->
    ids into ``vocab``, the sorted string of the distinct characters."""
    if tokenizer == "byte":
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int32), None
    if tokenizer == "char":
        # final=False drops a multi-byte character cut in half by max_bytes
        text = codecs.getincrementaldecoder(encoding)().decode(raw, final=False)
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        alphabet = np.unique(codepoints)
        tokens = np.searchsorted(alphabet, codepoints).astype(np.int32)
        return tokens, "".join(map(chr, alphabet.tolist()))
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {list(TOKENIZERS)}")


def _info_of(task_or_info):
    return task_or_info.info if isinstance(task_or_info, Task) else task_or_info


def decode(tokens, task_or_info) -> str:
    """Text of a token sequence of a text task (or of its ``info`` dict)."""
    info = _info_of(task_or_info)
    tokens = np.asarray(tokens).reshape(-1)
    if info["tokenizer"] == "byte":
        return bytes(tokens.astype(np.uint8).tolist()).decode(info.get("encoding", "utf-8"),
                                                              errors="replace")
    vocab = info["vocab"]
    return "".join(vocab[t] for t in tokens.tolist())


def encode(text: str, task_or_info):
    """Token ids (int32) of ``text`` for a text task; unknown characters raise ``KeyError``."""
    info = _info_of(task_or_info)
    if info["tokenizer"] == "byte":
        return np.frombuffer(text.encode(info.get("encoding", "utf-8")),
                             dtype=np.uint8).astype(np.int32)
    index = {c: i for i, c in enumerate(info["vocab"])}
    return np.array([index[c] for c in text], dtype=np.int32)


def windows(tokens, seq_len: int, stride: int):
    """``(x, y)`` of shape ``(n, seq_len)``: windows of ``seq_len + 1`` tokens starting every
    ``stride`` tokens, split into inputs and next-token targets (views, no copy)."""
    tokens = np.asarray(tokens)
    if len(tokens) < seq_len + 1:
        return (np.zeros((0, seq_len), dtype=tokens.dtype),
                np.zeros((0, seq_len), dtype=tokens.dtype))
    view = np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)[::stride]
    return view[:, :-1], view[:, 1:]


def _split_bounds(n: int, fractions):
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three positive numbers summing to 1 "
                         f"(train, validation, test); got {fractions}")
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    return {"train": (0, a), "validation": (a, b), "test": (b, n)}


def load_text_task(path=None, seq_len: int = 128, stride: int | None = None,
                   tokenizer: str = "byte", split_fractions=(0.9, 0.05, 0.05),
                   max_bytes: int | None = None, encoding: str = "utf-8",
                   name: str = "text") -> Task:
    """A next-token prediction task from the text file at ``path``.

    Args:
        path: a local text file.
        seq_len: tokens per example (the model's context length).
        stride: tokens between window starts; default ``seq_len`` (non-overlapping inputs).
            A smaller stride gives overlapping windows and more examples.
        tokenizer: ``"byte"`` (vocabulary 256, any file) or ``"char"`` (the file's distinct
            characters; the vocabulary is taken from the whole file read).
        split_fractions: contiguous (train, validation, test) fractions of the token stream.
        max_bytes: read only the first ``max_bytes`` of the file (large corpora: the task
            holds every token in memory, 4 bytes per token).
        encoding: text encoding for ``"char"`` and for :func:`decode`.
        name: the task's name.

    ``task.info`` holds the tokenizer, the vocabulary (``vocab``: the character string for
    ``"char"``, ``None`` for bytes, where token ``i`` is byte ``i``) and the token range of
    each split (``split_tokens``); :func:`decode` turns tokens back into text.
    """
    if path is None:
        raise ValueError("load_task('text') needs path=<a local text file>")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetUnavailableError(
            f"text corpus {path!r} is not a file on this machine; pass path= to a local "
            f"text file (copy it here first: nothing is downloaded)")
    seq_len = int(seq_len)
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    stride = seq_len if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_bytes is not None and int(max_bytes) < 1:
        raise ValueError(f"max_bytes must be >= 1 or None, got {max_bytes}")

    raw = _read_text_bytes(path, max_bytes)
    tokens, vocab = tokenize(raw, tokenizer, encoding)
    vocab_size = 256 if tokenizer == "byte" else len(vocab)
    bounds = _split_bounds(len(tokens), split_fractions)
    splits = {}
    for split, (start, stop) in bounds.items():
        if stop - start < seq_len + 1:
            raise ValueError(
                f"{path!r} has {len(tokens)} {tokenizer} tokens; its {split} split "
                f"({split_fractions} of them) holds {stop - start}, fewer than one window "
                f"of seq_len + 1 = {seq_len + 1}. Use a longer text, a smaller seq_len or "
                f"larger max_bytes.")
        splits[split] = windows(tokens[start:stop], seq_len, stride)

    info = {
        "source": path,
        "tokenizer": tokenizer,
        "encoding": encoding,
        "vocab": vocab,
        "vocab_size": vocab_size,
        "seq_len": seq_len,
        "stride": stride,
        "num_tokens": int(len(tokens)),
        "split_tokens": {split: [int(a), int(b)] for split, (a, b) in bounds.items()},
        "split_fractions": [float(f) for f in split_fractions],
        "note": _GPT2_NOTE.format(tokenizer=tokenizer, vocab=vocab_size),
    }
    return Task(name=name, num_classes=vocab_size, input_shape=(seq_len,), splits=splits,
                kind="language_model", info=info)


def load_tinystories_task(path=None, seq_len: int = 128, **options) -> Task:
    """TinyStories (Eldan & Li 2023), the corpus of GRAFS's GPT experiments, from a local
    file: ``path`` or the environment variable ``KERAS_ACTFN_TINYSTORIES``. Options are
    those of :func:`load_text_task` (GRAFS does not state its context length; nanoGPT, whose
    GPT GRAFS scales down, uses 256 for character-level and 1,024 for BPE text)."""
    path = path if path is not None else os.environ.get(TINYSTORIES_ENV)
    if path is None or not os.path.isfile(os.fspath(path)):
        looked = "no path was given" if path is None else f"{os.fspath(path)!r} is not a file"
        raise DatasetUnavailableError(
            f"TinyStories is not on this machine ({looked}, and ${TINYSTORIES_ENV} is "
            f"{'unset' if os.environ.get(TINYSTORIES_ENV) is None else 'set to a missing file'}"
            f"). To provide it: on a machine with internet, download "
            f"TinyStoriesV2-GPT4-train.txt (2.2 GB) or TinyStoriesV2-GPT4-valid.txt (22 MB) "
            f"from https://huggingface.co/datasets/roneneldan/TinyStories (e.g. "
            f"`huggingface-cli download roneneldan/TinyStories TinyStoriesV2-GPT4-valid.txt "
            f"--repo-type dataset --local-dir .`), copy the file here and call "
            f"load_task('tinystories', path='/path/TinyStoriesV2-GPT4-valid.txt') or set "
            f"{TINYSTORIES_ENV}. Any local text file works as load_task('text', path=...); "
            f"the embedded tasks 'mnist1d' and 'digits' need no download.")
    options.setdefault("name", "tinystories")
    return load_text_task(path=path, seq_len=seq_len, **options)


__all__ = ["load_text_task", "load_tinystories_task", "tokenize", "encode", "decode",
           "windows", "TOKENIZERS", "TINYSTORIES_ENV"]
