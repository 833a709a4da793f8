"""Neurons matched across two models by the correlation of their activations on the same text.

Gurnee et al. (2024, "Universal Neurons in GPT2 Language Models") compare models trained from
different seeds this way: run both on the same tokens, correlate every neuron of one with
every neuron of the other, and call a neuron's best match real only if it beats what a
random rotation of the other model's neurons gives (a rotation keeps the activations' joint
distribution but mixes the neurons, so no rotated direction is a neuron of its own).

:func:`match_neurons` does it in one streaming pass: both models read the same prompts
(they must share a tokenizer), and the running sums (count, sums, sums of squares, and the
``neurons_a x neurons_b`` sums of products, float64, each batch shifted by a fixed value per
neuron as in :mod:`helpers.scan.correlation`) give Pearson's correlation of every pair
exactly. The null applies ``rotations`` random orthogonal rotations to each layer of model
B's neurons (within the layer, as a layer's basis is what a neuron is) and keeps, per neuron
of A, its best correlation with any rotated direction. A rotation is linear, so it needs no
pass of its own: the covariances of A with B and of each layer of B with itself, turned by
the rotation, give the rotated correlations exactly. Memory: ``neurons_a x neurons_b`` plus
``layers_b x d_mlp_b x d_mlp_b`` float64 sums, on the models' device (the bundled models,
every neuron: 0.04 GB; GPT-2 Large as model B: 7.5 GB, GPT-2 XL 15.7 GB).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.core.cache import cached
from helpers.core.hooks import mlp_post, run_until
from helpers.core.models import load_model, weights_fingerprint
from helpers.core.names import Neuron
from helpers.methods.sweep import SWEEP_CACHE, Sweep, logit_effect_similarity
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.identity import docs_digest

ROTATIONS = 4
BUDGET = 16 * 2**30  # bytes of model B's per-layer covariances (GPT-2 Large 7.5 GB, GPT-2 XL 15.7 GB)


@dataclass
class Matches:
    """For each matched neuron of model A (``neurons``, flat, layer after layer): its best
    match in model B (``best``, flat over B's layers), their correlation ``r``, and ``null``,
    the best correlation it reaches with a randomly rotated neuron of B (the largest over
    rotations)."""

    neurons: Int[Tensor, "neuron_a"]
    d_mlp_a: int
    d_mlp_b: int
    n_tokens: int
    best: Int[Tensor, "neuron_a"]
    r: Float[Tensor, "neuron_a"]
    null: Float[Tensor, "neuron_a"]

    def of(self, neuron: Neuron | str) -> tuple[Neuron, float, float]:
        """``neuron``'s best match in B, the correlation, and the rotation null's best."""
        row = (self.neurons == Neuron.of(neuron).flat(self.d_mlp_a)).nonzero()
        if not len(row):
            raise ValueError(f"{neuron} was not matched; pass it in neurons=")
        i = int(row[0])
        return Neuron.from_flat(int(self.best[i]), self.d_mlp_b), float(self.r[i]), float(self.null[i])


def same_tokenizer(model_a, model_b) -> bool:
    """Whether two models split text into the same token ids (the same vocabulary)."""
    return model_a.tokenizer.get_vocab() == model_b.tokenizer.get_vocab()


def _activations(model, tokens: Tensor, real: Tensor) -> Float[Tensor, "tokens neuron"]:
    """Every layer's MLP activations at the real positions, layers side by side."""
    acts: list[Tensor] = []
    hooks = [(mlp_post(layer), lambda x, hook: acts.append(x[:, 1:][real.to(x.device)].double())) for layer in range(model.cfg.n_layers)]
    run_until(model, tokens.to(model.W_U.device), mlp_post(model.cfg.n_layers - 1), hooks)
    return torch.cat(acts, dim=1)


def random_rotations(n_layers: int, d_mlp: int, count: int, seed: int) -> Float[Tensor, "count layer d_mlp d_mlp"]:
    """``count`` random orthogonal matrices per layer (QR of Gaussian matrices, signs fixed so
    that the draw is uniform), float64."""
    generator = torch.Generator().manual_seed(seed)
    gauss = torch.randn(count, n_layers, d_mlp, d_mlp, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]


class _Moments:
    """Running sums for correlations of ``a``'s columns with ``b``'s, and of each layer of
    ``b`` with itself (from which any rotation of that layer's neurons follows exactly)."""

    def __init__(self, n_layers_b: int):
        self.count, self.n_layers_b, self.shift_a = 0, n_layers_b, None

    def add(self, a: Float[Tensor, "token neuron_a"], b: Float[Tensor, "token neuron_b"]) -> None:
        if self.shift_a is None:
            self.shift_a, self.shift_b = a.mean(0), b.mean(0)
            self.sa, self.saa, self.sb = torch.zeros_like(self.shift_a), torch.zeros_like(self.shift_a), torch.zeros_like(self.shift_b)
            self.sab = torch.zeros(len(self.shift_a), len(self.shift_b), dtype=torch.float64, device=b.device)
            d = len(self.shift_b) // self.n_layers_b
            self.sbb = torch.zeros(self.n_layers_b, d, d, dtype=torch.float64, device=b.device)
        a, b = a - self.shift_a, b - self.shift_b
        self.count += len(a)
        self.sa += a.sum(0)
        self.saa += (a * a).sum(0)
        self.sb += b.sum(0)
        self.sab += a.T @ b
        by_layer = b.view(len(b), self.n_layers_b, -1).transpose(0, 1)  # [layer, token, d_mlp]
        self.sbb += by_layer.transpose(1, 2) @ by_layer

    def correlations(self, rotation: Float[Tensor, "layer d_mlp d_mlp"] | None = None) -> Float[Tensor, "a b"]:
        """Pearson's correlation of every column of ``a`` with every neuron of ``b`` (with
        every direction of ``b``'s layers turned by ``rotation``, when given); -inf where a
        column does not vary."""
        n, layers = self.count, self.n_layers_b
        mean_b = (self.sb / n).view(layers, -1)
        cov_ab = (self.sab / n - (self.sa / n)[:, None] * (self.sb / n)[None, :]).view(-1, layers, mean_b.shape[1])  # [a, layer, d]
        cov_bb = self.sbb / n - mean_b[:, :, None] * mean_b[:, None, :]  # [layer, d, d]
        if rotation is not None:
            cov_ab = torch.einsum("ald,lde->ale", cov_ab, rotation)
            cov_bb = rotation.transpose(1, 2) @ cov_bb @ rotation
        sd_a = (self.saa / n - (self.sa / n) ** 2).clamp(min=0).sqrt()
        sd_b = torch.diagonal(cov_bb, dim1=1, dim2=2).clamp(min=0).sqrt()  # [layer, d]
        r = cov_ab / (sd_a[:, None, None] * sd_b[None])
        return r.reshape(len(sd_a), -1).nan_to_num(nan=-float("inf"))


@torch.no_grad()
def match_neurons(model_a, model_b, documents: Sequence[str], neurons: Sequence[Neuron] | None = None, *, rotations: int = ROTATIONS,
                  seed: int = 0, batch_size: int = 8, max_tokens: int = 128, budget: int = BUDGET) -> Matches:
    """Every neuron of ``model_a`` (or those of ``neurons``) matched to its most correlated
    neuron of ``model_b`` over ``documents``, with the random-rotation null (see the module
    docstring). Matching a few neurons keeps the sums of products small for large models."""
    if not same_tokenizer(model_a, model_b):
        raise ValueError(f"{model_a.cfg.model_name} and {model_b.cfg.model_name} have different tokenizers: their activations "
                         "cannot be compared token by token; match models that share one")
    max_tokens = min(max_tokens, model_a.cfg.n_ctx, model_b.cfg.n_ctx)
    plan = plan_prompts(model_a.tokenizer, list(documents), 0, max_tokens - 1)
    layers_b, d_mlp_b = model_b.cfg.n_layers, model_b.cfg.d_mlp
    if layers_b * d_mlp_b**2 * 8 > budget:
        raise ValueError(f"{model_b.cfg.model_name}'s per-layer covariances take {layers_b * d_mlp_b**2 * 8 / 1e9:.1f} GB, over the budget of "
                         f"{budget / 1e9:.1f} GB; raise budget= on a machine with the memory")
    rotation = random_rotations(layers_b, d_mlp_b, rotations, seed)
    every = model_a.cfg.n_layers * model_a.cfg.d_mlp
    chosen = torch.arange(every) if neurons is None else torch.tensor([n.check(model_a.cfg.n_layers, model_a.cfg.d_mlp).flat(model_a.cfg.d_mlp) for n in map(Neuron.of, neurons)])
    moments = _Moments(layers_b)
    for tokens, real, _ in padded_batches(plan, batch_size, model_a.tokenizer.bos_token_id):
        moments.add(_activations(model_a, tokens, real)[:, chosen.to(model_a.W_U.device)], _activations(model_b, tokens, real))
    if moments.count < 2:
        raise ValueError("the documents hold fewer than 2 tokens: no correlation can be measured")
    best = moments.correlations().max(dim=1)
    null = torch.stack([moments.correlations(turn.to(moments.sbb.device)).max(dim=1).values for turn in rotation]).max(dim=0).values
    nan = lambda t: t.masked_fill(t == -float("inf"), float("nan")).float()  # noqa: E731  (a constant neuron has no correlation)
    return Matches(chosen, model_a.cfg.d_mlp, d_mlp_b, moments.count, best.indices.cpu(), nan(best.values).cpu(), nan(null).cpu())


def sweep_matches(
    result: Sweep, documents: Sequence[str], device: str = "cpu", dtype: str = "float32", *, rotations: int = ROTATIONS, seed: int = 0,
    load: Callable = load_model, cache: Path | None = SWEEP_CACHE,
) -> pd.DataFrame:
    """For every ordered pair of measured models of one vocabulary: model A's top neuron, its
    best match in model B by activation correlation over ``documents``, the correlation, the
    rotation null's best, whether it beats the null, and the cosine of the two neurons' logit
    effects (the sweep's weight comparison). Two models in memory at a time; each pair's
    match is kept under ``cache``, keyed by both models' weights and the documents."""
    measured = result.measured.set_index("model")
    names = list(result.models)
    similarity = logit_effect_similarity(result)
    documents, rows = list(documents), []
    for a in names:
        others = [b for b in names if b != a and measured.loc[b, "vocabulary"] == measured.loc[a, "vocabulary"]]
        if not others:
            continue
        model_a, neuron = load(a, device=device, dtype=dtype), Neuron.of(measured.loc[a, "neuron"])
        fingerprint_a = weights_fingerprint(model_a)  # once per model A, not once per pair
        for b in others:
            model_b = load(b, device=device, dtype=dtype)
            sources = dict(a=fingerprint_a, b=weights_fingerprint(model_b), neuron=str(neuron), documents=docs_digest(documents),
                           rotations=rotations, seed=seed)
            match = cached(cache, "match", sources, lambda: match_neurons(model_a, model_b, documents, [neuron], rotations=rotations, seed=seed),
                           lambda m: ({"neurons": m.neurons, "best": m.best, "r": m.r, "null": m.null}, dict(d_mlp_a=m.d_mlp_a, d_mlp_b=m.d_mlp_b, n_tokens=m.n_tokens)),
                           lambda tensors, record: Matches(**tensors, **record))
            other, r, null = match.of(neuron)
            rows.append({"model": a, "neuron": neuron, "stability": measured.loc[a].get("stability"), "other model": b, "its best match": other, "correlation": r, "rotation null": null,
                         "above the null": bool(r > null), "other's top neuron": Neuron.of(measured.loc[b, "neuron"]),
                         "logit-effect cosine": float(similarity.loc[a, b]), "tokens": match.n_tokens})
    return pd.DataFrame(rows)
