"""One resumable pass over a corpus that records a set of neurons on every token, on disk.

The study's last two findings look at a neuron on ordinary text rather than on one prompt:
which texts make L31N892 fire hardest (Neuroscope-style max-activating examples), and how
often the model's top prediction is `` an`` at each level of activation. Both need the same
numbers at every token of a corpus, so they come from one pass that writes them to disk:

- the activation of each neuron of interest (``blocks.{L}.mlp.hook_post``; only the layers
  needed are hooked, and only the chosen columns leave the hook, never a full cache);
- the model's real top-1 prediction (argmax of the true logits, computed in float32 from
  the residual that enters the unembedding, so a bfloat16 model gets an exact argmax);
- optionally the study's *pseudo-prediction* (below);
- the input token, the actual next token (-1 at the end of a document), and the document
  and position of every row;
- per neuron, a running top-k of its largest activations with their (document, position).

Documents are tokenised without special tokens and cut into prompts of at most
``max_tokens`` tokens (the model's context by default), each starting with BOS, so a
prompt holds up to ``max_tokens - 1`` document tokens. The BOS position itself is not
recorded: rows are document tokens only, in (document, position) order. Prompts are sorted
by length and right-padded into batches. Attention is causal, so padding after the last
real token never reaches a real position, and padded positions are dropped before anything
is recorded.

Results are written in shards of ``shard_docs`` documents (safetensors), each written to a
temporary file and moved into place, then listed in ``manifest.json`` (also replaced
atomically) with its checksum and the scan's parameters. Running the same scan again
resumes after the last completed shard and ends with files identical to an uninterrupted
run; a shard whose checksum no longer matches is logged and recomputed.

Pseudo-prediction. The study did not read the model's logits: its "top prediction" was
``argmax_t  x_hat . W_E[t]``, where ``x_hat = (x - mean(x)) / scale`` is the final
residual normalised by ``ln_final`` without its weight and bias (``ln_final.hook_normalized``;
``ln_final.hook_scale`` is ``scale``) and ``W_E`` is the (processed) token embedding, with
no unembedding bias. It treats the embedding as if it were the unembedding. With the
study's weight processing the rows of ``W_E`` are centred, so subtracting the mean and
dividing by the positive scale change no argmax: the pseudo-prediction is the token whose
embedding has the largest dot product with the final residual.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.core.cache import DamagedEntry
from helpers.core.files import atomic_write
from helpers.core.names import Neuron
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.documents import load_documents
from helpers.scan.forward import block_argmax, check_neuron_list, forward
from helpers.scan.identity import differences, docs_digest, folder_slug, params_digest, run_identity

log = logging.getLogger(__name__)

SCAN_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "scans"
MANIFEST = "manifest.json"
FORMAT = 1
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
COLUMNS = ("token", "next_token", "prediction", "pseudo_prediction", "doc", "pos", "activations")


class ScanMismatch(ValueError):
    """An output folder holds a different scan than the one requested."""


# ---------------------------------------------------------------------------------------
# One shard


def _scan_shard(
    model, docs: list[str], first_doc: int, neurons: list[Neuron], opts: dict, weights: dict, on_batch: Callable[[int], None]
) -> dict[str, Tensor]:
    """Every column of one shard, rows in (document, position) order, on CPU."""
    plan = plan_prompts(model.tokenizer, docs, first_doc, opts["max_tokens"] - 1)
    n = len(plan.flat)
    device = weights["W_U"].device
    acts = torch.empty(n, len(neurons), dtype=torch.float32)
    prediction = torch.empty(n, dtype=torch.int32)
    pseudo = torch.empty(n, dtype=torch.int32) if opts["pseudo"] else None
    for tokens, real, rows in padded_batches(plan, opts["batch_size"], opts["bos"]):
        batch_acts, unembed_in, normalized = forward(model, tokens.to(device), neurons, final=True, normalized=opts["pseudo"])
        real_dev = real.to(device)
        where = rows[real]
        acts[where] = batch_acts[:, 1:][real_dev].cpu()
        prediction[where] = block_argmax(unembed_in[:, 1:][real_dev], weights["W_U"], weights["b_U"]).to(torch.int32).cpu()
        if pseudo is not None:
            pseudo[where] = block_argmax(normalized[:, 1:][real_dev], weights["W_E_T"], None).to(torch.int32).cpu()
        on_batch(int(real.sum()))
    columns = {
        "token": torch.from_numpy(plan.flat).to(torch.int32),
        "next_token": torch.from_numpy(plan.next_token).to(torch.int32),
        "prediction": prediction,
        "doc": torch.from_numpy(plan.doc).to(torch.int32),
        "pos": torch.from_numpy(plan.pos).to(torch.int32),
        "activations": acts.to(STORAGE_DTYPES[opts["dtype"]]),
    }
    if pseudo is not None:
        columns["pseudo_prediction"] = pseudo
    topk = _topk(acts, columns["doc"], columns["pos"], opts["top_k"])
    columns.update({f"topk_{k}": v for k, v in topk.items()})
    columns["n_empty"] = torch.tensor([plan.n_empty], dtype=torch.int64)
    return columns


# ---------------------------------------------------------------------------------------
# Running top-k


def _topk(values: Float[Tensor, "rows n"], doc: Int[Tensor, "rows"], pos: Int[Tensor, "rows"], k: int) -> dict[str, Tensor]:
    """Per column, the ``k`` largest values, ties to the earlier row; NaN never wins."""
    if torch.isnan(values).any():
        log.warning("%d NaN activations found; they are left out of the top-k", int(torch.isnan(values).sum()))
    clean = torch.nan_to_num(values.float(), nan=-math.inf)
    top_values, order = torch.sort(clean, dim=0, descending=True, stable=True)
    order = order[:k]
    return {
        "values": top_values[:k].contiguous(),
        "doc": doc[order].contiguous(),
        "pos": pos[order].contiguous(),
    }


def _merge_topk(earlier: dict[str, Tensor] | None, later: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """Top-k of two top-k lists where every row of ``earlier`` precedes every row of ``later``.

    Each list is sorted by value with ties in row order, so a stable sort of the
    concatenation keeps ties in row order and the result does not depend on how the rows
    were split into shards.
    """
    if earlier is None:
        return later
    values = torch.cat([earlier["values"], later["values"]])
    doc = torch.cat([earlier["doc"], later["doc"]])
    pos = torch.cat([earlier["pos"], later["pos"]])
    top_values, order = torch.sort(values, dim=0, descending=True, stable=True)
    order = order[:k]
    return {
        "values": top_values[:k].contiguous(),
        "doc": torch.gather(doc, 0, order).contiguous(),
        "pos": torch.gather(pos, 0, order).contiguous(),
    }


# ---------------------------------------------------------------------------------------
# Files


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    atomic_write(out_dir / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def _read_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("shards"), list):
            raise ValueError("unexpected layout")
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as error:
        raise DamagedEntry(f"{path} is not a scan manifest ({error})") from None
    return manifest


def _read_shard(out_dir: Path, entry: dict) -> dict[str, Tensor] | None:
    """The shard's tensors, or None (with a warning) if the file is missing or corrupt."""
    from safetensors.torch import load

    path = out_dir / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as error:
        log.warning("shard %s cannot be read (%s); recomputing it", path.name, error)
        return None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        log.warning("shard %s does not match its checksum in the manifest (corrupt or changed); recomputing it", path.name)
        return None
    return load(data)


def _remove_stale_temporaries(out_dir: Path) -> None:
    for tmp in out_dir.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# The scan


@dataclass
class ScanResult:
    """A finished scan on disk: parameters, shard list, and the merged top-k per neuron.

    ``topk_values``, ``topk_doc``, ``topk_pos`` are ``[k, n_neurons]``; column ``j`` belongs
    to ``neurons[j]``. Per-token columns are read from the shards by ``load``.
    """

    out_dir: Path
    params: dict
    shards: list[dict]
    topk_values: Float[Tensor, "k n_neurons"]
    topk_doc: Int[Tensor, "k n_neurons"]
    topk_pos: Int[Tensor, "k n_neurons"]
    n_docs: int
    n_empty_docs: int
    n_tokens: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def neurons(self) -> list[Neuron]:
        return [Neuron.parse(n) for n in self.params["neurons"]]

    def column(self, neuron: Neuron | str) -> int:
        """Index of ``neuron`` in the activation columns."""
        wanted = neuron if isinstance(neuron, Neuron) else Neuron.parse(neuron)
        if wanted not in self.neurons:
            raise ValueError(f"{wanted} was not recorded in this scan; it recorded {', '.join(self.params['neurons'])}")
        return self.neurons.index(wanted)

    def load(self, columns: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Per-token columns concatenated over shards (rows in document, position order)."""
        from safetensors.torch import load

        names = list(columns or [c for c in COLUMNS if c != "pseudo_prediction" or self.params["pseudo"]])
        unknown = [c for c in names if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; choose from {', '.join(COLUMNS)}")
        if "pseudo_prediction" in names and not self.params["pseudo"]:
            raise ValueError("this scan did not record pseudo_prediction; rerun scan with pseudo=True into a fresh out_dir")
        missing = [c for c in names if c not in self._cache]
        if missing:
            parts: dict[str, list[Tensor]] = {c: [] for c in missing}
            for entry in self.shards:
                tensors = load((self.out_dir / entry["file"]).read_bytes())
                for c in missing:
                    parts[c].append(tensors[c])
            for c in missing:
                self._cache[c] = torch.cat(parts[c]) if parts[c] else torch.zeros(0)
        return {c: self._cache[c] for c in names}

    def activations(self, neuron: Neuron | str) -> Float[Tensor, "n_tokens"]:
        """One neuron's activation at every recorded token, float32."""
        return self.load(["activations"])["activations"][:, self.column(neuron)].float()

    def top_examples(self, neuron: Neuron | str, before: int = 24, after: int = 4) -> pd.DataFrame:
        """The neuron's top-k tokens with a context window from the same document.

        One row per example (rank order): ``doc``, ``pos``, ``activation``, ``token``,
        ``next_token`` (-1 at a document's end), and ``window_tokens`` /
        ``window_activations`` (lists) with ``focus`` the index of the example's token
        in the window.
        """
        j = self.column(neuron)
        cols = self.load(["token", "next_token", "doc", "pos", "activations"])
        values = self.topk_values[:, j]
        keep = torch.isfinite(values)
        doc, pos = self.topk_doc[keep, j].long(), self.topk_pos[keep, j].long()
        all_doc = cols["doc"].long()
        row = torch.searchsorted(all_doc, doc) + pos
        offsets = torch.arange(-before, after + 1)
        window = row[:, None] + offsets
        inside = (window >= 0) & (window < len(all_doc))
        window = window.clamp(0, max(len(all_doc) - 1, 0))
        inside &= all_doc[window] == doc[:, None]
        tokens = cols["token"][window]
        acts = cols["activations"][window, j].float()
        return pd.DataFrame(
            {
                "doc": doc.tolist(),
                "pos": pos.tolist(),
                "activation": values[keep].tolist(),
                "token": cols["token"][row].tolist(),
                "next_token": cols["next_token"][row].tolist(),
                "window_tokens": [t[m].tolist() for t, m in zip(tokens, inside)],
                "window_activations": [a[m].tolist() for a, m in zip(acts, inside)],
                "focus": (before - (~inside[:, :before]).sum(1)).tolist(),
            }
        )


def open_scan(out_dir: str | Path) -> ScanResult:
    """A finished scan from its folder (no model needed); checksums are verified."""
    out_dir = Path(out_dir)
    try:
        manifest = _read_manifest(out_dir)
    except DamagedEntry as error:
        raise ScanMismatch(f"{error}; run scan(...) with the same parameters to compute it again") from None
    if manifest is None:
        raise FileNotFoundError(f"{out_dir} holds no {MANIFEST}; run scan(...) into it first")
    if not manifest.get("complete"):
        raise ScanMismatch(f"the scan in {out_dir} is not finished; run scan(...) with the same parameters to resume it")
    topk = None
    for entry in manifest["shards"]:
        tensors = _read_shard(out_dir, entry)
        if tensors is None:
            raise ScanMismatch(f"shard {entry['file']} in {out_dir} is damaged; run scan(...) with the same parameters to recompute it")
        topk = _merge_topk(topk, _shard_topk(tensors), manifest["params"]["top_k"])
    return _result(out_dir, manifest, topk)


def _shard_topk(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: tensors[f"topk_{k}"] for k in ("values", "doc", "pos")}


def _result(out_dir: Path, manifest: dict, topk: dict | None) -> ScanResult:
    n_neurons = len(manifest["params"]["neurons"])
    if topk is None:
        topk = {"values": torch.zeros(0, n_neurons), "doc": torch.zeros(0, n_neurons, dtype=torch.int32), "pos": torch.zeros(0, n_neurons, dtype=torch.int32)}
    return ScanResult(
        out_dir=out_dir,
        params=manifest["params"],
        shards=manifest["shards"],
        topk_values=topk["values"],
        topk_doc=topk["doc"],
        topk_pos=topk["pos"],
        n_docs=sum(s["n_docs"] for s in manifest["shards"]),
        n_empty_docs=sum(s["n_empty"] for s in manifest["shards"]),
        n_tokens=sum(s["n_tokens"] for s in manifest["shards"]),
    )


def scan(
    model,
    documents: Iterable[str] | str,
    neurons: Sequence[Neuron | str],
    out_dir: str | Path | None = None,
    batch_size: int = 8,
    max_tokens: int | None = None,
    top_k: int = 20,
    dtype: str = "float32",
    progress: bool = True,
    *,
    pseudo: bool = False,
    n_docs: int | None = None,
    source: str | None = None,
    seed: int = 0,
    shard_docs: int = 64,
    on_shard: Callable[[dict], None] | None = None,
) -> ScanResult:
    """One pass over ``documents`` recording ``neurons`` at every token, resumable.

    ``documents`` is an iterable of texts or a source name for ``load_documents`` (then
    ``n_docs`` and ``seed`` choose the documents). ``n_docs`` caps the documents read
    (default: ``len(documents)`` when it has one, else all). ``max_tokens`` is the longest
    prompt including BOS (default and maximum: the model's context). ``dtype`` is how
    activations are stored ("float32" or "float16"); they are computed, ranked and the
    predictions taken in float32 whatever the model's dtype. ``pseudo`` also records the
    study's pseudo-prediction (see the module docstring). ``on_shard`` is called with each
    newly written shard's manifest entry. ``out_dir=None`` picks a folder under
    ``.cache/scans`` named by the parameters, so equal requests share one scan. The
    parameters include a hash of every weight tensor and of the documents' text, so other
    weights or other documents (even as many) never read an earlier scan.
    """
    cfg = model.cfg
    checked = check_neuron_list(neurons, cfg.n_layers, cfg.d_mlp)
    max_tokens = cfg.n_ctx if max_tokens is None else max_tokens
    for name, value, low in (("batch_size", batch_size, 1), ("max_tokens", max_tokens, 2), ("top_k", top_k, 1), ("shard_docs", shard_docs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_tokens > cfg.n_ctx:
        raise ValueError(f"max_tokens={max_tokens} exceeds the model's context of {cfg.n_ctx} tokens; use at most {cfg.n_ctx}")
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)} (how activations are stored), got {dtype!r}")
    if isinstance(documents, str):
        if n_docs is None:
            raise ValueError(f"reading documents from {documents!r} needs n_docs")
        source = documents if source is None else source
        documents = load_documents(documents, n_docs, seed)
    elif n_docs is None and hasattr(documents, "__len__"):
        n_docs = len(documents)
    if n_docs is not None and (isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 0):
        raise ValueError(f"n_docs must be a non-negative integer, got {n_docs!r}")
    # read the documents first: the scan is keyed by what they say, not by how many there are
    documents = list(documents if n_docs is None else islice(documents, n_docs))
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token; every prompt must start with one")
    params = {
        **run_identity(model, documents),
        "neurons": [str(n) for n in checked],
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "top_k": top_k,
        "dtype": dtype,
        "pseudo": bool(pseudo),
        "source": source or "custom",
        "seed": seed,
        "n_docs": n_docs,
        "shard_docs": shard_docs,
        "bos": bos,
    }
    if out_dir is None:
        slug = folder_slug(f"{params['model']}-{params['source']}-{n_docs}")
        out_dir = SCAN_CACHE / f"{slug}-{params_digest(params, 12)}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _read_manifest(out_dir)
    except DamagedEntry as error:
        log.warning("%s; computing the scan again", error)
        manifest = None
    if manifest is not None and manifest["params"] != params:
        found = differences(params, manifest["params"], ("requested", "on disk"))
        raise ScanMismatch(f"{out_dir} holds a scan with other parameters ({found}); use a fresh out_dir or the same parameters")
    if manifest is not None and manifest.get("complete"):
        try:
            return open_scan(out_dir)
        except ScanMismatch as error:
            log.warning("%s: resuming to repair it", error)
    if manifest is None:
        manifest = {"format": FORMAT, "params": params, "shards": [], "complete": False}
    manifest["complete"] = False
    _remove_stale_temporaries(out_dir)
    done = {s["index"]: s for s in manifest["shards"]}

    device = model.W_U.device
    weights = {"W_U": model.W_U.detach().float(), "b_U": model.b_U.detach().float().to(device), "W_E_T": model.W_E.detach().float().T.contiguous() if pseudo else None}
    opts = {"bos": bos, "max_tokens": max_tokens, "batch_size": batch_size, "pseudo": bool(pseudo), "dtype": dtype, "top_k": top_k}
    from tqdm.auto import tqdm

    docs_iter = iter(documents)
    shards, topk, first_doc, index = [], None, 0, 0
    with tqdm(total=n_docs, unit="doc", desc="scan", disable=not progress) as bar:
        seen_tokens = [0]

        def on_batch(n_tokens: int) -> None:
            seen_tokens[0] += n_tokens
            bar.set_postfix(tokens=f"{seen_tokens[0]:,}", refresh=False)

        while True:
            take = shard_docs if n_docs is None else min(shard_docs, n_docs - first_doc)
            docs = list(islice(docs_iter, take)) if take > 0 else []
            if not docs:
                break
            digest = docs_digest(docs)
            entry = done.get(index)
            tensors = None
            if entry is not None:
                if entry["docs_sha256"] != digest or entry["first_doc"] != first_doc:
                    raise ScanMismatch(
                        f"documents {first_doc}-{first_doc + len(docs) - 1} differ from the ones recorded in {out_dir / entry['file']}; "
                        "use a fresh out_dir or the same documents"
                    )
                tensors = _read_shard(out_dir, entry)
                if tensors is not None:
                    on_batch(entry["n_tokens"])
            if tensors is None:
                tensors = _scan_shard(model, docs, first_doc, checked, opts, weights, on_batch)
                entry = _commit_shard(out_dir, manifest, index, first_doc, docs, digest, tensors)
                if on_shard is not None:
                    on_shard(entry)
            shards.append(entry)
            topk = _merge_topk(topk, _shard_topk(tensors), top_k)
            first_doc += len(docs)
            index += 1
            bar.update(len(docs))
    if n_docs is not None and first_doc < n_docs:
        log.warning("the documents ran out after %d of the %d requested", first_doc, n_docs)
    n_empty = sum(s["n_empty"] for s in shards)
    if n_empty:
        log.info("skipped %d empty document(s) (no tokens)", n_empty)
    manifest["shards"] = shards
    manifest["complete"] = True
    _write_manifest(out_dir, manifest)
    return _result(out_dir, manifest, topk)


def _commit_shard(out_dir: Path, manifest: dict, index: int, first_doc: int, docs: list[str], digest: str, tensors: dict[str, Tensor]) -> dict:
    """Write one shard atomically, then record it in the manifest (also atomically)."""
    from safetensors.torch import save

    name = f"shard-{index:05d}.safetensors"
    # no safetensors metadata: its key order is not stable between runs, and the manifest has it all
    data = save({k: v.contiguous() for k, v in tensors.items()})
    atomic_write(out_dir / name, data)
    entry = {
        "index": index,
        "file": name,
        "first_doc": first_doc,
        "n_docs": len(docs),
        "n_empty": int(tensors["n_empty"][0]),
        "n_tokens": len(tensors["token"]),
        "docs_sha256": digest,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] != index] + [entry]
    manifest["shards"].sort(key=lambda s: s["index"])
    _write_manifest(out_dir, manifest)
    return entry
