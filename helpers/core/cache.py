"""One cache helper: every entry names what it was computed from and carries a checksum.

An entry is one safetensors file (nothing pickled): its tensors, plus one metadata field,
``entry``, a JSON object holding ``record`` (the JSON of the small results and of the
``sources`` the entry was computed from) and ``checksum`` (SHA-256 over the record and every
tensor's name, dtype, shape and bytes). One field, because safetensors writes several in no
fixed order and the same content should give the same bytes.

``cached(folder, kind, sources, compute, encode, decode)`` keys the file by a digest of
``kind`` and ``sources`` (the weights fingerprint, the options, the documents' digest: whatever
the result depends on). On every read the checksum and the sources are checked again; a
truncated, zeroed, edited or foreign entry is named in one warning line, removed and
recomputed, so a damaged cache gives the same result as a cold run. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from helpers.core.files import atomic_write

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the layout of an entry changes: older entries are then recomputed
T = TypeVar("T")


class DamagedEntry(ValueError):
    """A cache or result file that cannot be trusted: unreadable, truncated, or its content does
    not match its checksum."""


def digest(value) -> str:
    """A short SHA-256 of ``value``'s JSON (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


def content_checksum(tensors: dict[str, Tensor], record_json: str) -> str:
    """SHA-256 over the record's JSON and each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(record_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_checked(path: Path, tensors: dict[str, Tensor], record: dict) -> None:
    """Write ``tensors`` and the JSON ``record`` to ``path`` with their checksum (atomically)."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    record_json = json.dumps(record)  # key order kept: a row reads back in its own column order
    metadata = {"entry": json.dumps({"checksum": content_checksum(tensors, record_json), "record": record_json})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checked(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """The tensors and record of a file written by ``save_checked``; ``DamagedEntry`` when it
    cannot be read or its content does not match its checksum."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        entry = json.loads(metadata["entry"])
        record_json, checksum = entry["record"], entry["checksum"]
        record = json.loads(record_json)
    except Exception as error:
        raise DamagedEntry(f"{path} cannot be read ({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None
    if content_checksum(tensors, record_json) != checksum:
        raise DamagedEntry(f"{path} does not match its checksum (damaged on disk)")
    return {name: t.to(device) for name, t in tensors.items()}, record


def read_record(path: Path) -> dict:
    """The record of a ``save_checked`` file without reading its tensors (for identity checks;
    ``load_checked`` verifies the content)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return json.loads(json.loads((f.metadata() or {})["entry"])["record"])


def cached(
    folder: Path | None, kind: str, sources: dict, compute: Callable[[], T],
    encode: Callable[[T], tuple[dict[str, Tensor], dict]], decode: Callable[[dict[str, Tensor], dict], T],
) -> T:
    """``compute()``, or its result kept from an earlier call with the same ``kind`` and
    ``sources`` (``folder=None``: no cache). ``encode`` turns a result into tensors and a JSON
    record; ``decode`` turns them back."""
    if folder is None:
        return compute()
    path = Path(folder) / f"{kind}-{digest([CACHE_FORMAT, kind, sources])}.safetensors"
    if path.is_file():
        try:
            tensors, record = load_checked(path)
            if record.get("sources") != json.loads(json.dumps(sources, sort_keys=True)):
                raise DamagedEntry(f"{path} was computed from other sources than its name says")
            return decode(tensors, record["result"])
        except (DamagedEntry, KeyError, TypeError, ValueError) as error:
            log.warning("%s; recomputing it", error)
            path.unlink(missing_ok=True)
    result = compute()
    tensors, record = encode(result)
    save_checked(path, tensors, {"kind": kind, "sources": sources, "result": record})
    return result
