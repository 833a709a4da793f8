"""Which neurons fire together: the correlation of every pair of recorded neurons' activations
over a corpus, in one streaming pass.

Per batch, the activations ``X [tokens, neurons]`` of the chosen layers (padding left out) are
added to running sums: the count, ``sum X`` and ``X.T @ X``, all float64. Each batch is shifted
by a fixed value per neuron (the first batch's mean) before it is added, so the variance is
not the small difference of two large sums. Pearson's correlation of neurons ``i`` and ``j`` is
then ``cov_ij / (sd_i sd_j)``; a neuron whose activation never varies has none (NaN).

Memory is the ``neurons x neurons`` matrix of products, 8 bytes each: all recorded neurons
together while that fits in ``budget`` bytes (1 GiB: up to 11,585 neurons, the bundled models'
every layer or one layer of GPT-2 Large, 5,120 neurons, 0.21 GB), otherwise each layer with
itself (36 layers of GPT-2 Large: 7.5 GB, so choose fewer). Nothing of the ``tokens x
neurons`` activations is kept beyond one batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.core.cache import cached
from helpers.core.checks import check_layers
from helpers.core.hooks import mlp_post, run_until
from helpers.core.models import weights_fingerprint
from helpers.core.names import Neuron
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.identity import docs_digest

BUDGET = 2**30  # bytes of the products matrix kept at once
CORRELATION_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "correlations"
CORRELATION_VERSION = 2  # part of the cache key: raise it when what is kept changes


@dataclass
class Correlations:
    """Per recorded neuron, the ``k`` others whose activations correlate most with its own:
    ``values`` and ``neurons`` (flat indices over ``layers``, layer after layer), ``[neuron,
    k]``; ``scope`` says whether neurons were compared across layers or within each layer."""

    layers: list[int]
    d_mlp: int
    n_tokens: int
    scope: str  # "across layers" or "within each layer"
    values: Float[Tensor, "neuron k"]
    neurons: Int[Tensor, "neuron k"]

    def neighbours(self, neuron: Neuron | str) -> list[tuple[Neuron, float]]:
        """The neuron's most correlated neurons, largest correlation first."""
        neuron = Neuron.of(neuron)
        row = self.layers.index(neuron.layer) * self.d_mlp + neuron.index
        return [(Neuron(self.layers[int(f) // self.d_mlp], int(f) % self.d_mlp), float(v))
                for f, v in zip(self.neurons[row], self.values[row]) if v == v]


def correlation_scope(n_layers: int, d_mlp: int, budget: int = BUDGET) -> str:
    """``"across layers"`` when several layers are recorded and every recorded neuron's products
    with every other fit in ``budget`` bytes, else ``"within each layer"`` (a one-line error if
    even that does not fit)."""
    if n_layers > 1 and (n_layers * d_mlp) ** 2 * 8 <= budget:
        return "across layers"
    if n_layers * d_mlp**2 * 8 <= budget:
        return "within each layer"
    raise ValueError(f"{n_layers} layers of {d_mlp:,} neurons need {n_layers * d_mlp**2 * 8 / 1e9:.1f} GB of products even within each layer; "
                     f"record fewer layers or raise the budget ({budget / 1e9:.1f} GB)")


@torch.no_grad()
def activation_correlations(
    model, documents: Sequence[str], layers: Sequence[int] | None = None, *, k: int = 5, batch_size: int = 8,
    max_tokens: int | None = None, budget: int = BUDGET, cache: Path | None = CORRELATION_CACHE,
) -> Correlations:
    """The ``k`` most correlated neurons of every neuron of ``layers`` (all for None) over
    ``documents``, prompts cut as the neuroscope pass cuts them (see the module docstring).
    Kept under ``cache`` (None: not kept), keyed by the weights, the documents and the settings."""
    cfg = model.cfg
    layers = check_layers(layers, cfg.n_layers)
    max_tokens = cfg.n_ctx if max_tokens is None else max_tokens
    documents = list(documents)
    sources = dict(version=CORRELATION_VERSION, weights=weights_fingerprint(model), documents=docs_digest(documents), layers=layers, k=k, batch_size=batch_size,
                   max_tokens=max_tokens, budget=budget)
    return cached(
        cache, "correlations", sources, lambda: _correlations(model, documents, layers, k, batch_size, max_tokens, budget),
        lambda c: ({"values": c.values, "neurons": c.neurons}, {k: v for k, v in asdict(c).items() if k not in ("values", "neurons")}),
        lambda tensors, record: Correlations(**record, values=tensors["values"], neurons=tensors["neurons"]),
    )


def _correlations(model, documents: list[str], layers: list[int], k: int, batch_size: int, max_tokens: int, budget: int) -> Correlations:
    cfg = model.cfg
    scope = correlation_scope(len(layers), cfg.d_mlp, budget)
    plan = plan_prompts(model.tokenizer, list(documents), 0, max_tokens - 1)
    device = model.W_U.device
    n_total = len(layers) * cfg.d_mlp
    blocks = [slice(0, n_total)] if scope == "across layers" else [slice(i * cfg.d_mlp, (i + 1) * cfg.d_mlp) for i in range(len(layers))]
    products = [torch.zeros(b.stop - b.start, b.stop - b.start, dtype=torch.float64, device=device) for b in blocks]
    sums = torch.zeros(n_total, dtype=torch.float64, device=device)
    shift, count = None, 0
    for tokens, real, _ in padded_batches(plan, batch_size, model.tokenizer.bos_token_id):
        acts: list[Tensor] = []
        hooks = [(mlp_post(layer), lambda x, hook: acts.append(x[:, 1:][real.to(x.device)].float())) for layer in layers]
        run_until(model, tokens.to(device), mlp_post(layers[-1]), hooks)
        x = torch.cat(acts, dim=1)  # [real tokens, neuron]
        shift = x.mean(0) if shift is None else shift
        x = x - shift
        count += len(x)
        sums += x.sum(0, dtype=torch.float64)
        for block, product in zip(blocks, products):
            product += (x[:, block].T @ x[:, block]).double()
    if count < 2:
        raise ValueError("the documents hold fewer than 2 tokens: no correlation can be measured")
    values, neurons = [], []
    for block, product in zip(blocks, products):
        mean = sums[block] / count
        cov = product / count - mean[:, None] * mean[None, :]
        sd = cov.diagonal().clamp(min=0).sqrt()
        r = cov / (sd[:, None] * sd[None, :])
        r.fill_diagonal_(float("nan"))
        r = r.nan_to_num(nan=-float("inf"))  # no correlation (itself, or a constant neuron) ranks last
        top = r.topk(min(k, r.shape[1] - 1), dim=1)
        values.append(top.values.masked_fill(top.values == -float("inf"), float("nan")).float().cpu())
        neurons.append(top.indices.cpu() + block.start)
    return Correlations(layers, cfg.d_mlp, count, scope, torch.cat(values), torch.cat(neurons))
