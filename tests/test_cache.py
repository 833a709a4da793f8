"""The cache helper, the atomic writer and the staged folder: a damaged or foreign entry is
named, removed and recomputed; nothing is pickled; a failed write leaves the old file or folder."""
import json
import logging

import pytest
import torch

from helpers.core.cache import DamagedEntry, cached, load_checked, read_record, save_checked
from helpers.core.files import atomic_write, staged_folder


def _counted(value: torch.Tensor):
    """A compute function that counts its calls, with its encode and decode."""
    calls = []

    def compute():
        calls.append(1)
        return value.clone(), {"mean": float(value.mean())}

    def encode(result):
        return {"values": result[0]}, result[1]

    def decode(tensors, record):
        return tensors["values"], record

    return calls, compute, encode, decode


def _entry(folder):
    (path,) = folder.glob("*.safetensors")
    return path


def test_a_kept_result_is_returned_without_computing(tmp_path):
    value = torch.arange(12.0).view(3, 4)
    calls, compute, encode, decode = _counted(value)
    first = cached(tmp_path, "demo", {"weights": "w1"}, compute, encode, decode)
    second = cached(tmp_path, "demo", {"weights": "w1"}, compute, encode, decode)
    assert len(calls) == 1
    assert torch.equal(first[0], second[0]) and first[1] == second[1] == {"mean": 5.5}
    cached(tmp_path, "demo", {"weights": "w2"}, compute, encode, decode)
    assert len(calls) == 2, "other sources must get their own entry"


@pytest.mark.parametrize("damage", ["truncate", "zero", "edit_bytes", "edit_record", "empty"])
def test_a_damaged_entry_warns_and_is_recomputed(tmp_path, caplog, damage):
    value = torch.linspace(-1, 1, 64)
    calls, compute, encode, decode = _counted(value)
    cached(tmp_path, "demo", {"weights": "w"}, compute, encode, decode)
    path = _entry(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "zero":
        raw = bytearray(len(raw))
    elif damage == "edit_bytes":
        raw[-3] ^= 0xFF  # inside the tensor data
    elif damage == "edit_record":
        assert b"mean" in raw
        raw = bytearray(bytes(raw).replace(b"mean", b"meen"))  # the record's key, inside the header
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="helpers.core.cache"):
        result = cached(tmp_path, "demo", {"weights": "w"}, compute, encode, decode)
    assert len(calls) == 2, "a damaged entry must be recomputed"
    assert torch.equal(result[0], value) and result[1] == {"mean": float(value.mean())}
    assert len(caplog.records) == 1 and "recomputing" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()
    load_checked(path)  # rewritten whole


def test_an_entry_from_other_sources_under_this_name_is_recomputed(tmp_path, caplog):
    calls, compute, encode, decode = _counted(torch.ones(3))
    cached(tmp_path, "demo", {"weights": "w"}, compute, encode, decode)
    path = _entry(tmp_path)
    tensors, record = load_checked(path)
    record["sources"] = {"weights": "someone else's"}
    save_checked(path, tensors, record)  # a valid file, copied in under the wrong name
    with caplog.at_level(logging.WARNING, logger="helpers.core.cache"):
        cached(tmp_path, "demo", {"weights": "w"}, compute, encode, decode)
    assert len(calls) == 2 and "other sources" in caplog.text


def test_entries_are_safetensors_with_a_json_record(tmp_path):
    """Nothing pickled: the file opens with safetensors and its record is plain JSON."""
    from safetensors import safe_open

    calls, compute, encode, decode = _counted(torch.ones(2))
    cached(tmp_path, "demo", {"weights": "w"}, compute, encode, decode)
    path = _entry(tmp_path)
    assert not path.read_bytes().startswith(b"PK") and b"\x80\x02" not in path.read_bytes()[:16]
    with safe_open(str(path), framework="pt") as f:
        entry = json.loads(f.metadata()["entry"])
        assert set(entry) == {"record", "checksum"}
        assert json.loads(entry["record"])["sources"] == {"weights": "w"}
    assert read_record(path)["kind"] == "demo"


def test_no_folder_means_no_cache(tmp_path):
    calls, compute, encode, decode = _counted(torch.ones(2))
    cached(None, "demo", {}, compute, encode, decode)
    cached(None, "demo", {}, compute, encode, decode)
    assert len(calls) == 2


def test_load_checked_names_the_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(DamagedEntry, match="x.safetensors cannot be read"):
        load_checked(path)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "result.bin"
    atomic_write(target, b"old")

    def fail(path):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.bin"], "no temporary file may be left behind"
    atomic_write(target, lambda path: path.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and oct(target.stat().st_mode & 0o777) == "0o644"


def test_staged_folder_swaps_in_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with staged_folder(out) as staging:
        (staging / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with staged_folder(out) as staging:
            (staging / "a.txt").write_text("second, half written")
            raise RuntimeError("evaluation failed")
    assert (out / "a.txt").read_text() == "first"
    with staged_folder(out) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no staging or old folder may be left behind"
