"""The documents a scan reads: the bundled toy corpus, or pile-10k streamed from the hub.

``load_documents(source, n_docs, seed)`` is the one entry point; a source that cannot be read
here (pile-10k without the hub) fails at once with a line naming the offline alternative.
"""
from __future__ import annotations

import os
from itertools import islice
from typing import Iterator

SOURCES = ("toy", "toy-heldout", "pile-10k")
PILE_10K = "NeelNanda/pile-10k"


class DatasetUnavailable(RuntimeError):
    """The requested documents cannot be read here; the message says what to use instead."""


def load_documents(source: str, n_docs: int, seed: int = 0) -> Iterator[str]:
    """``n_docs`` documents from ``source``: ``"toy"`` (the bundled corpus), ``"toy-heldout"``
    (its held-out split: frames and nouns the bundled models never read) or ``"pile-10k"``.

    ``"pile-10k"`` streams NeelNanda/pile-10k from the HuggingFace hub (in its order for
    ``seed=0``, shuffled with a 10,000-document buffer otherwise). Offline it fails at once.
    """
    if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be a positive integer, got {n_docs!r}")
    if source in ("toy", "toy-heldout"):
        from helpers.toy.corpus import documents

        return iter(documents(n_docs, seed=seed, split="heldout" if source == "toy-heldout" else "train"))
    if source == "pile-10k":
        return _stream_pile(n_docs, seed)
    raise ValueError(f"unknown document source {source!r}; use one of {', '.join(SOURCES)}")


def _stream_pile(n_docs: int, seed: int) -> Iterator[str]:
    from helpers.core.models import hub_reachable

    offline = os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("", "0")
    if offline or not hub_reachable():
        raise DatasetUnavailable(
            f"pile-10k is streamed from the HuggingFace hub ({PILE_10K}), which this machine cannot reach; "
            "use source 'toy' (the bundled corpus)"
        )
    from datasets import load_dataset

    stream = load_dataset(PILE_10K, split="train", streaming=True)
    if seed:
        stream = stream.shuffle(seed=seed, buffer_size=10_000)
    return (row["text"] for row in islice(stream, n_docs))


def document_windows(model, source: str, n_docs: int, seed: int = 0, length: int = 64):
    """``n_docs`` documents of ``source`` cut into ``[window, length]`` token windows led by BOS
    (a reference corpus for mean and resample ablation)."""
    from helpers.methods.ablation import corpus_windows

    return corpus_windows(model, list(load_documents(source, n_docs, seed)), length)
