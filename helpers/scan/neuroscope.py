"""Every neuron in one pass: Neuroscope's top examples, a histogram, a firing rate and a mean.

Neuroscope shows, for each neuron of a model, the texts where it fires hardest. This pass
records, for every neuron of the chosen MLP layers (all by default), over a corpus:

- its top ``k`` examples (20 by default), **at most one per document**: within a document
  only the neuron's largest activation competes, so the list is never a run of neighbouring
  tokens of one text. Each example keeps its document, position and activation, and a
  window of token ids around it (``context=(12, 4)``: 12 before, 4 after) with the neuron's
  activation at each, so that showing it needs neither the corpus nor the model. A window
  ends where the prompt holding the example ends (token ``-1``, activation NaN): the model
  saw nothing beyond it.
- a histogram of its activation on fixed bins, the same for every neuron and every process:
  ``bins=(low, high, n)`` cuts ``[low, high)`` into ``n`` bins of equal width; the value
  ``x`` goes to bucket ``x * scale + shift`` truncated, with ``scale = n / (high - low)`` and
  ``shift = 1 - low * scale``, computed in float32 (so a test can repeat it bit for bit; a
  value within float32 rounding of an edge may fall on either side of it) and clipped to
  bucket 0 below ``low`` and bucket ``n + 1`` from ``high`` up (NaN too): ``n + 2`` buckets;
- how often it fires (activation > 0) and its mean activation;
- one token sampled from each histogram bucket (pseudo-randomly, the same in any run) with its
  activation, and the token with its lowest activation: examples from the whole range.

Memory is bounded by the state, whatever the corpus: ``k`` examples with their windows, a
histogram and two counters per neuron. The ``tokens x neurons`` matrix is never held: inside
each layer's hook the activations are counted and reduced to each prompt's best token per
neuron, of which only those that can still enter the neuron's list are kept (with their
windows; at most ``batch x neurons``, far fewer once the lists are full), and the forward
pass stops after the last chosen layer (no logits are computed). The candidates of every
layer are merged into the lists once per batch.

Order. Examples rank by activation (largest first), ties to the earlier document, then the
earlier position. That is a total order, so the top ``k`` of a set of tokens is one list
whatever order the tokens arrive in. Counts are integers. The sum behind each mean is kept
as an int64 count of ``2**-24``: each batch's float64 sum is rounded to it (by at most
``2**-25``), and adding integers is exact. Merged results therefore do not depend on how the
documents were split among processes, or on where a run was interrupted.

Work and resumption. Documents are cut into shards of ``shard_docs`` documents; a shard's
prompts and batches depend on its documents alone, so its activations are the same bits in
any run. Process ``rank`` of ``world_size`` takes shards ``rank, rank + world_size, ...`` and
keeps its state in ``part-<rank>-of-<world>.safetensors`` together with the list of shards
that state includes, written atomically at most every ``checkpoint_seconds`` and at the end.
A rerun of the same command resumes each process from its file: a shard is in both the
state and the list, or in neither, so nothing is counted twice. The processes then merge
through ``torch.distributed`` (the top lists gathered and re-ranked, everything else summed)
and rank 0 writes ``neuroscope.safetensors`` and ``manifest.json``.

Identity. A run is keyed by a hash of every weight tensor, of the documents' text and of
every parameter that changes a number (layers, ``k``, bins, context, batch size, prompt
length, shard size, number of processes). A folder that holds another run, or a part file
written by another run, stops the pass with one line naming what differs.

Several processes (gloo on CPU, NCCL on GPUs; ``--nnodes`` for several machines)::

    torchrun --nproc_per_node 2 -m helpers.scan.neuroscope --model toy --documents toy --n-docs 400 --out DIR
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.core.checks import check_layers, check_positive_int
from helpers.core.cache import DamagedEntry, load_checked, read_record, save_checked
from helpers.core.files import atomic_write
from helpers.core.hooks import mlp_post, run_until
from helpers.core.names import Neuron
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.documents import load_documents
from helpers.scan.identity import differences, folder_slug, params_digest, run_identity
from helpers.scan.neuroscope_cli import main, parse_layers  # noqa: F401 (the command line, python -m helpers.scan.neuroscope)
# the state algebra; bucket_of, check_bins, merge_states and top_per_document are re-exported for callers
from helpers.scan.neuroscope_state import (  # noqa: F401
    MAX_PLACE, SUM_UNIT, Batch, Part, all_merge, bucket_constants, bucket_of, check_bins, empty_state, fold_layer, key_place, merge_candidates,
    merge_states, sample_keys, sort_state, top_per_document,
)
from helpers.scan.store import ScanMismatch

log = logging.getLogger(__name__)

NEUROSCOPE_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "neuroscope"
MANIFEST = "manifest.json"
RESULT = "neuroscope.safetensors"
FORMAT = 2  # 2: bucket samples and the lowest activation
# 0.1 wide from -0.2 to 10: GELU is never below -0.17; larger values land in the last bucket
BINS = (-0.2, 10.0, 102)
CONTEXT = (12, 4)


# ---------------------------------------------------------------------------------------
# Files


def part_name(rank: int, world_size: int) -> str:
    return f"part-{rank:03d}-of-{world_size:03d}.safetensors"


def _run_id(params: dict) -> str:
    return params_digest(params, 16)


def read_manifest(path: Path) -> dict:
    """A neuroscope manifest (with its ``params`` and ``run_id``); ``DamagedEntry`` when the file
    cannot be read as one."""
    try:
        manifest = json.loads(path.read_text())
        manifest["params"], manifest["run_id"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise DamagedEntry(f"{path} is not a neuroscope manifest ({type(error).__name__})") from None
    return manifest


def _check_folder(out_dir: Path, params: dict, run_id: str) -> dict | None:
    """The folder's manifest (None if there is none); a one-line error if the manifest or
    any part file in the folder belongs to another run."""
    manifest = None
    path = out_dir / MANIFEST
    if path.exists():
        try:
            manifest = read_manifest(path)
        except DamagedEntry as error:
            log.warning("%s; writing it again (the part files say which run they hold)", error)
        if manifest is not None and manifest["run_id"] != run_id:
            raise ScanMismatch(
                f"{out_dir} holds another neuroscope run ({differences(params, manifest['params'])}); use a fresh out_dir or the same parameters"
            )
    for part in sorted(out_dir.glob("part-*.safetensors")):
        try:
            found = read_record(part)
        except Exception:  # an unreadable part is recomputed by its own rank (see _load_part)
            continue
        if found.get("run_id") != run_id:
            raise ScanMismatch(
                f"{part} was written by another run ({differences(params, found.get('params', {}))}); "
                f"move it out of {out_dir} or use a fresh out_dir"
            )
    return manifest


def _load_part(path: Path, run_id: str, mine: set[int], device) -> tuple[dict[str, Tensor], list[int]] | None:
    """This rank's saved state and the shards it includes, or None when there is none."""
    if not path.exists():
        return None
    try:
        state, metadata = load_checked(path, device)
    except DamagedEntry as error:
        log.warning("%s; this process starts its shards again", error)
        return None
    if metadata.get("run_id") != run_id:
        raise ScanMismatch(f"{path} was written by another run; move it away or use a fresh out_dir")
    shards = metadata["shards"]
    if not set(shards) <= mine:
        raise ScanMismatch(f"{path} lists shards {sorted(set(shards) - mine)} that are not this process's; use a fresh out_dir")
    return state, shards


# ---------------------------------------------------------------------------------------
# The result


@dataclass
class Neuroscope:
    """A finished every-neuron pass: per neuron of ``layers``, its top examples, histogram,
    firing count and sum. ``tensors`` are on the CPU (see :func:`empty_state` for shapes)."""

    out_dir: Path
    params: dict
    tensors: dict[str, Tensor]

    @property
    def run_id(self) -> str:
        """The hash that names this run (its weights, documents and parameters)."""
        return _run_id(self.params)

    @property
    def layers(self) -> list[int]:
        return self.params["layers"]

    @property
    def d_mlp(self) -> int:
        return self.params["model_shape"][2]

    @property
    def k(self) -> int:
        return self.params["k"]

    @property
    def edges(self) -> list[float]:
        """The bins' edges, ``low`` to ``high`` (bucket ``i`` of ``1..n`` is edges ``i-1`` to ``i``)."""
        low, high, n_bins = self.params["bins"]
        return [low + (high - low) * j / n_bins for j in range(n_bins + 1)]

    @property
    def n_tokens(self) -> int:
        return int(self.tensors["totals"][0])

    @property
    def n_docs(self) -> int:
        return int(self.tensors["totals"][1])

    @property
    def n_empty_docs(self) -> int:
        return int(self.tensors["totals"][2])

    @property
    def n_neurons(self) -> int:
        return len(self.layers) * self.d_mlp

    def where(self, neuron: Neuron | str) -> tuple[int, int]:
        """(row of its layer in the tensors, index within the layer), or a one-line error."""
        wanted = Neuron.of(neuron)
        if wanted.layer not in self.layers or not 0 <= wanted.index < self.d_mlp:
            raise ValueError(f"{wanted} was not recorded: this pass holds neurons 0-{self.d_mlp - 1} of layers {self.layers}")
        return self.layers.index(wanted.layer), wanted.index

    def firing_rates(self) -> Float[Tensor, "layer neuron"]:
        """Share of tokens at which each neuron's activation is above 0."""
        return self.tensors["fires"].double() / max(self.n_tokens, 1)

    def means(self) -> Float[Tensor, "layer neuron"]:
        """Each neuron's mean activation over every token (float64)."""
        return self.tensors["sums"].double() / SUM_UNIT / max(self.n_tokens, 1)

    def histogram(self, neuron: Neuron | str) -> Int[Tensor, "bucket"]:
        """Token counts per bucket (below ``low``, each bin, from ``high`` up; see ``bins``)."""
        i, n = self.where(neuron)
        return self.tensors["histogram"][i, n]

    def top_examples(self, neuron: Neuron | str) -> pd.DataFrame:
        """The neuron's examples in rank order: ``activation``, ``doc``, ``pos``, and the
        window (``window_tokens``, ``window_activations``, lists) with ``focus`` the
        example's index in it; the window stops at its prompt's ends."""
        i, n = self.where(neuron)
        values = self.tensors["values"][i, n]
        kept = torch.isfinite(values)
        tokens = self.tensors["window_tokens"][i, n][kept]
        acts = self.tensors["window_acts"][i, n][kept]
        inside = tokens >= 0
        before = self.params["context"][0]
        return pd.DataFrame({
            "activation": values[kept].tolist(),
            "doc": self.tensors["doc"][i, n][kept].tolist(),
            "pos": self.tensors["pos"][i, n][kept].tolist(),
            "window_tokens": [t[m].tolist() for t, m in zip(tokens, inside)],
            "window_activations": [a[m].tolist() for a, m in zip(acts, inside)],
            "focus": (before - (~inside[:, :before]).sum(1)).tolist(),
        })


    def lowest(self, neuron: Neuron | str) -> tuple[float, int, int]:
        """The neuron's lowest activation, and the document and position of the token with it."""
        i, n = self.where(neuron)
        doc, pos = key_place(self.tensors["low_keys"][i, n])
        return float(self.tensors["low_values"][i, n]), int(doc), int(pos)


def open_neuroscope(out_dir: str | Path) -> Neuroscope:
    """A finished pass from its folder (no model needed). A result file that is missing,
    damaged or of another run is named in a warning and rebuilt from the part files beside it."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} holds no {MANIFEST}; run neuroscope(...) into it first")
    try:
        manifest = read_manifest(path)
    except DamagedEntry as error:
        raise ScanMismatch(f"{error}; run the pass again into a fresh out_dir") from None
    params, run_id = manifest["params"], manifest["run_id"]
    if not manifest.get("complete"):
        raise ScanMismatch(f"the pass in {out_dir} is not finished; run it again with the same parameters to resume it")
    try:
        tensors, record = load_checked(out_dir / RESULT)
        if record.get("run_id") != run_id:
            raise DamagedEntry(f"{out_dir / RESULT} belongs to another run than {path}")
    except DamagedEntry as error:
        log.warning("%s; rebuilding it from the part files", error)
        tensors = rebuild_result(out_dir, params, run_id)
    return Neuroscope(out_dir, params, tensors)


def rebuild_result(out_dir: Path, params: dict, run_id: str) -> dict[str, Tensor]:
    """The result merged again from the run's part files, and written; a one-line
    ``ScanMismatch`` when a part is damaged or missing (rerunning the pass then resumes)."""
    world, parts = params["world_size"], []
    for rank in range(world):
        path = out_dir / part_name(rank, world)
        try:
            state, record = load_checked(path)
        except DamagedEntry as error:
            raise ScanMismatch(f"{error}: the result cannot be rebuilt; run the pass again with the same parameters (it resumes from the intact parts)") from None
        if record.get("run_id") != run_id:
            raise ScanMismatch(f"{path} was written by another run; run the pass again into a fresh out_dir")
        parts.append(Part(state, record["params"], record["shards"]))
    merged = merge_states(parts, params["k"])
    if merged.shards != list(range(-(-params["n_docs"] // params["shard_docs"]))):
        raise ScanMismatch(f"the part files in {out_dir} do not cover every shard; run the pass again with the same parameters to finish it")
    save_checked(out_dir / RESULT, merged.state, {"run_id": run_id})
    return merged.state


# ---------------------------------------------------------------------------------------
# The pass


def check_context(context: Sequence[int]) -> tuple[int, int]:
    if len(context) != 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in context):
        raise ValueError(f"context must be (tokens before, tokens after), two integers >= 0, got {context!r}")
    return int(context[0]), int(context[1])


def neuroscope(
    model,
    documents: Iterable[str] | str,
    layers: Sequence[int] | int | None = None,
    out_dir: str | Path | None = None,
    *,
    k: int = 20,
    bins: Sequence = BINS,
    context: Sequence[int] = CONTEXT,
    batch_size: int = 8,
    max_tokens: int | None = None,
    n_docs: int | None = None,
    source: str | None = None,
    seed: int = 0,
    shard_docs: int = 64,
    checkpoint_seconds: float = 300.0,
    progress: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> Neuroscope:
    """Every neuron of ``layers`` (all for None) over ``documents``, in one resumable pass.

    ``documents`` is an iterable of texts or a source name for ``load_documents`` (then
    ``n_docs`` and ``seed`` choose them). Inside a ``torch.distributed`` process group each
    process takes its own shards and every process returns the merged result; rank 0 writes
    it. ``out_dir=None`` picks a folder under ``.cache/neuroscope`` named by the run.
    ``on_shard`` is called with each shard's index once it is folded in (and saved, when a
    checkpoint was due). See the module docstring for what is recorded and how.
    """
    import torch.distributed as dist

    cfg = model.cfg
    grouped = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    layers = check_layers(None if layers in (None, "all") else layers, cfg.n_layers)
    max_tokens = cfg.n_ctx if max_tokens is None else max_tokens
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("max_tokens", max_tokens, 2), ("shard_docs", shard_docs, 1)):
        check_positive_int(name, value, low)
    if max_tokens > cfg.n_ctx:
        raise ValueError(f"max_tokens={max_tokens} exceeds the model's context of {cfg.n_ctx} tokens; use at most {cfg.n_ctx}")
    bins, context = check_bins(bins), check_context(context)
    if not checkpoint_seconds >= 0:
        raise ValueError(f"checkpoint_seconds must be >= 0 (0: after every shard), got {checkpoint_seconds!r}")
    if isinstance(documents, str):
        if n_docs is None:
            raise ValueError(f"reading documents from {documents!r} needs n_docs")
        source = documents if source is None else source
        documents = load_documents(documents, n_docs, seed)
    documents = list(documents if n_docs is None else islice(documents, n_docs))
    if not documents:
        raise ValueError("no documents to scan: pass at least one text (or a source with n_docs >= 1)")
    if len(documents) > MAX_PLACE:
        raise ValueError(f"{len(documents):,} documents: one pass takes at most {MAX_PLACE:,}; run several passes on parts of the corpus")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"document {i} is a {type(doc).__name__}, not a str; pass text documents")
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token; every prompt must start with one")
    params = {
        "format": FORMAT,
        **run_identity(model, documents),
        "n_docs": len(documents),
        "source": source or "custom",
        "seed": seed,
        "layers": layers,
        "k": k,
        "bins": list(bins),
        "context": list(context),
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "shard_docs": shard_docs,
        "bos": bos,
        "world_size": world_size,
    }
    run_id = _run_id(params)
    if out_dir is None:
        slug = folder_slug(f"{cfg.model_name}-{params['source']}-{len(documents)}")
        out_dir = NEUROSCOPE_CACHE / f"{slug}-{run_id}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _check_folder(out_dir, params, run_id)
    if world_size == 1 and manifest is not None and manifest.get("complete"):
        try:
            return open_neuroscope(out_dir)
        except ScanMismatch as error:
            log.warning("%s; computing the pass again", error)
    if rank == 0 and manifest is None:
        atomic_write(out_dir / MANIFEST, _manifest_bytes(params, run_id, False))

    device = model.W_U.device
    n_shards = -(-len(documents) // shard_docs)
    mine = list(range(rank, n_shards, world_size))
    part = out_dir / part_name(rank, world_size)
    width = context[0] + context[1] + 1
    loaded = _load_part(part, run_id, set(mine), device)
    state, done = loaded if loaded is not None else (empty_state(len(layers), cfg.d_mlp, k, bins[2] + 2, width, device), [])
    todo = [s for s in mine if s not in set(done)]
    if done and todo:
        log.info("resuming: %d of this process's %d shards already counted", len(done), len(mine))
    opts = dict(bins=bucket_constants(bins), offsets=torch.arange(-context[0], context[1] + 1, device=device),
                k=k, max_tokens=max_tokens, batch_size=batch_size, bos=bos)
    from tqdm.auto import tqdm

    saved_at = time.monotonic()
    with tqdm(total=len(mine), initial=len(mine) - len(todo), unit="shard", desc="neuroscope", disable=not progress or rank != 0) as bar:
        for shard in todo:
            docs = documents[shard * shard_docs:(shard + 1) * shard_docs]
            _fold_shard(model, docs, shard * shard_docs, layers, state, opts)
            done.append(shard)
            if time.monotonic() - saved_at >= checkpoint_seconds:
                save_checked(part, state, {"run_id": run_id, "params": params, "shards": sorted(done)})
                saved_at = time.monotonic()
            bar.update(1)
            if on_shard is not None:
                on_shard(shard)
    save_checked(part, state, {"run_id": run_id, "params": params, "shards": sorted(done)})
    merged = all_merge(state, k) if world_size > 1 else sort_state(state, k)
    merged = {name: t.cpu() for name, t in merged.items()}
    if rank == 0:
        save_checked(out_dir / RESULT, merged, {"run_id": run_id})
        atomic_write(out_dir / MANIFEST, _manifest_bytes(params, run_id, True, merged["totals"]))
    if world_size > 1:
        dist.barrier()
    return Neuroscope(out_dir, params, merged)


def _manifest_bytes(params: dict, run_id: str, complete: bool, totals: Tensor | None = None) -> bytes:
    manifest = {"format": FORMAT, "run_id": run_id, "params": params, "complete": complete, "result": RESULT if complete else None}
    if totals is not None:
        manifest.update(n_tokens=int(totals[0]), n_docs=int(totals[1]), n_empty_docs=int(totals[2]))
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def _fold_shard(model, docs: list[str], first_doc: int, layers: list[int], state: dict[str, Tensor], opts: dict) -> None:
    """Run one shard's prompts, a batch at a time, folding every chosen layer into ``state``."""
    device = state["values"].device
    plan = plan_prompts(model.tokenizer, docs, first_doc, opts["max_tokens"] - 1)
    doc_of, pos_of = torch.from_numpy(plan.doc), torch.from_numpy(plan.pos)
    if len(plan.pos) and int(plan.pos.max()) >= MAX_PLACE:
        raise ValueError(f"document {int(plan.doc[plan.pos.argmax()])} has more than {MAX_PLACE:,} tokens; split it into shorter documents")
    current: list[Batch] = []

    found: list[dict[str, Tensor]] = []

    def make_hook(i: int, layer: int):
        def hook(act, hook):
            found.append(fold_layer(state, i, act, current[0], opts["bins"], opts["offsets"], layer))
            return act

        return hook

    hooks = [(mlp_post(layer), make_hook(i, layer)) for i, layer in enumerate(layers)]
    with torch.no_grad():  # the pass stops after the last chosen layer's hook has run
        for tokens, real, rows in padded_batches(plan, opts["batch_size"], opts["bos"]):
            head = rows[:, 0]
            docs_here = doc_of[head]
            keys = sample_keys(doc_of[rows[real]], pos_of[rows[real]])  # the real tokens, row-major
            order = keys.argsort()
            current[:] = [Batch(
                tokens=tokens[:, 1:].to(device=device, dtype=torch.int32),
                real=real.to(device),
                all_real=bool(real.all()),
                length=real.sum(1).to(device),
                doc=docs_here.to(device=device, dtype=torch.int32),
                first_pos=pos_of[head].to(device=device, dtype=torch.int32),
                repeats=len(set(docs_here.tolist())) < len(docs_here),
                order=order.to(device),
                sorted_keys=keys[order].to(device),
            )]
            found.clear()
            run_until(model, tokens.to(device), mlp_post(layers[-1]), hooks)
            merge_candidates(state, found, current[0], opts["k"])
    state["totals"] += torch.tensor([len(plan.flat), len(docs), plan.n_empty], device=device)


if __name__ == "__main__":
    main()
