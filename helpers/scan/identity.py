"""What names a pass over a corpus: the model (a hash of every weight tensor), the documents'
text, and the parameters, for the scan and the neuroscope pass alike.

Two runs share a folder only when all of it is equal, so other weights or other documents
(even as many) never read an earlier run's files.
"""
from __future__ import annotations

import hashlib
import json

from helpers.core.models import weights_fingerprint


def docs_digest(docs: list[str]) -> str:
    """sha256 of the documents' text, each prefixed by its length (so no two lists collide)."""
    digest = hashlib.sha256()
    for doc in docs:
        encoded = doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else repr(doc).encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def run_identity(model, documents: list[str]) -> dict:
    """The parameters that name the model and the documents of a run: the model's name, a
    hash of its weights, its shape and dtype, and the documents' digest."""
    cfg = model.cfg
    return {
        "model": cfg.model_name,
        "weights": weights_fingerprint(model),
        "model_shape": [cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx],
        "model_dtype": str(cfg.dtype).removeprefix("torch."),
        "documents_sha256": docs_digest(documents),
    }


def params_digest(params: dict, length: int) -> str:
    """The first ``length`` hex digits of the sha256 of ``params`` as sorted JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:length]


def folder_slug(text: str) -> str:
    """``text`` with every character other than letters, digits, ``-``, ``_`` and ``.`` made ``-``."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def differences(first: dict, second: dict, labels: tuple[str, str] = ("requested", "there")) -> str:
    """The keys on which two parameter sets differ, as ``key: a requested, b there`` (one line)."""
    keys = sorted(set(first) | set(second))
    return "; ".join(f"{k}: {first.get(k)!r} {labels[0]}, {second.get(k)!r} {labels[1]}" for k in keys if first.get(k) != second.get(k))
