"""Glued numbers and phrases of the inputs page (14): the decomposition, head patching, the probes,
more prompts, and the follow-up's leads beside this run's ranks."""
from __future__ import annotations

import pandas as pd
import torch

from helpers.book.summaries.prompt import agreement
from helpers.core.names import Head, Neuron, show_token
from helpers.core.stats import mean_interval


from helpers.methods.inputs import InputDecomposition, InputPatch, PromptReadings, top_head
from helpers.methods.probes import Probe
from helpers.paper import Leads

Row = tuple[str, object, object]
HALF = 0.5


def rank_by_size(values: torch.Tensor, index: int) -> int:
    """1-based rank of ``values[index]`` when ``values`` are ordered by size (largest first)."""
    return int((values.abs() > values[index].abs()).sum()) + 1


def layer_totals(dec: InputDecomposition) -> torch.Tensor:
    """``[layer, pair]``: clean-minus-corrupted contribution of each layer's heads, attention bias
    excluded, plus its MLP (layers 0 to the neuron's; the neuron's own MLP is not upstream)."""
    heads = dec.heads(dec.diff).sum(1)  # [layer, pair]
    mlps = torch.stack([dec.diff[dec.index(f"mlp {l}")] for l in range(dec.neuron.layer)]) if dec.neuron.layer else heads[:0]
    return heads + torch.cat([mlps, torch.zeros_like(heads[:1])])


def build_layer(dec: InputDecomposition) -> int:
    """The first layer by which the heads' and MLPs' running total of the mean difference reaches
    half of its final value (where the neuron's input "builds")."""
    running = layer_totals(dec).mean(1).cumsum(0)
    final = float(running[-1])
    reached = (running * (1 if final >= 0 else -1)) >= HALF * abs(final)
    return int(reached.nonzero()[0]) if final else 0


def decomposition_summary(dec: InputDecomposition) -> dict:
    """Exactness, the pre-activation gap, the components that carry it most, and where it builds."""
    gap = mean_interval(torch.stack([dec.clean_pre - dec.corrupted_pre, dec.clean_pre, dec.corrupted_pre]))
    means = mean_interval(dec.diff)  # [component, 3]
    order = means[:, 0].abs().argsort(descending=True)
    top, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    heads = dec.heads(dec.diff).mean(-1)
    head_flat = int(heads.abs().flatten().argmax())
    head = Head(head_flat // dec.n_heads, head_flat % dec.n_heads)
    head_row = dec.index(str(head))
    total = float(gap[0, 0])
    error = float(torch.cat([(dec.clean.sum(0) - dec.clean_pre).abs(), (dec.corrupted.sum(0) - dec.corrupted_pre).abs()]).max())
    values = dict(
        neuron=str(dec.neuron), n_pairs=dec.clean.shape[1], n_components=len(dec.labels), n_heads_upstream=len(dec.head_labels),
        exact_error=error, exact_agreement=agreement(error), pre_gap_mean=total, pre_gap_low=float(gap[0, 1]), pre_gap_high=float(gap[0, 2]),
        pre_clean_mean=float(gap[1, 0]), pre_corrupted_mean=float(gap[2, 0]),
        top_component=dec.labels[top], top_component_mean=float(means[top, 0]), top_component_low=float(means[top, 1]), top_component_high=float(means[top, 2]),
        second_component=dec.labels[second], second_component_mean=float(means[second, 0]),
        top_dec_head=str(head), top_dec_head_mean=float(means[head_row, 0]), top_dec_head_low=float(means[head_row, 1]), top_dec_head_high=float(means[head_row, 2]),
        heads_share=float(heads.sum()) / total if total else float("nan"),
        build_layer=build_layer(dec),
    )
    values["top_share"] = values["top_component_mean"] / total if total else float("nan")
    values["decomposition_phrase"] = _decomposition_phrase(values)
    return values


def _decomposition_phrase(values: dict) -> str:
    share = values["top_share"]
    if share != share:
        return "The clean and corrupted pre-activations are equal on average, so no component carries a difference."
    if share > 0.5:
        return f"One component, {values['top_component']}, carries most of it ({share:.0%} of the mean gap)."
    if share > 0:
        return f"No single component carries most of it; the largest, {values['top_component']}, carries {share:.0%} of the mean gap."
    return f"The largest single contribution, {values['top_component']}, works against the gap ({share:.0%} of it): others more than make up for it."


def head_patching_summary(patch: InputPatch, paths: InputPatch, dec: InputDecomposition) -> dict:
    """The head whose patching moves the neuron most, with its interval and share, its direct path,
    and whether the decomposition ranks the same head first."""
    head = top_head(patch)
    effect, direct = patch.effect[head.layer, head.index], paths.effect[head.layer, head.index]
    stats = mean_interval(torch.stack([effect, direct]))
    gap = float((patch.source_act - patch.base_act).mean())
    paths_head = top_head(paths)
    dec_head = decomposition_summary(dec)["top_dec_head"]
    values = dict(
        top_head=str(head), top_head_effect_mean=float(stats[0, 0]), top_head_effect_low=float(stats[0, 1]), top_head_effect_high=float(stats[0, 2]),
        top_head_direct_mean=float(stats[1, 0]), top_head_direct_low=float(stats[1, 1]), top_head_direct_high=float(stats[1, 2]),
        act_gap_mean=gap, top_head_share=float(stats[0, 0]) / gap if gap else float("nan"),
        direct_of_effect=float(stats[1, 0] / stats[0, 0]) if float(stats[0, 0]) else float("nan"),
        top_path_head=str(paths_head), base_act_mean=float(patch.base_act.mean()), source_act_mean=float(patch.source_act.mean()),
        direction=patch.direction,
    )
    agree = [name for name, other in (("the decomposition", dec_head), ("path patching", str(paths_head))) if other == str(head)]
    disagree = [f"{name} ranks {other} first" for name, other in (("the decomposition", dec_head), ("path patching", str(paths_head))) if other != str(head)]
    if not disagree:
        values["agreement_phrase"] = f"The decomposition and path patching rank the same head first, {head}."
    elif agree:
        values["agreement_phrase"] = f"{agree[0].capitalize()} agrees; {disagree[0]}."
    else:
        values["agreement_phrase"] = f"The other two views disagree: {disagree[0]}, and {disagree[1]}."
    ratio = values["direct_of_effect"]
    if head.layer == patch.neuron.layer:
        values["direct_phrase"] = f"{head} is in the neuron's own layer, so the direct path is its only path to the neuron ({ratio:.0%} of what patching it moves)"
    elif ratio == ratio and ratio > 0.8:
        values["direct_phrase"] = f"its direct path into the neuron carries {ratio:.0%} of what patching it moves, so it acts on the neuron itself, not through the components between them"
    else:
        values["direct_phrase"] = f"its direct path into the neuron carries {ratio:.0%} of what patching it moves: the rest goes through components between it and the neuron"
    return values


def position_summary(by_position: InputPatch, head: Head, tokens) -> dict:
    """On the study's pair: the position at which patching ``head`` moves the neuron most, and its token."""
    effect = by_position.effect[head.layer, :, head.index]  # [pos]
    position = int(effect.abs().argmax())
    return dict(position_top=position, position_token=show_token(tokens[position]), position_effect=float(effect[position]),
                position_share=float(effect[position] / effect.sum()) if float(effect.sum()) else float("nan"))


def cosine_phrase(value: float, null: torch.Tensor) -> str:
    """A cosine against its null (``null``: the same cosine for random directions): beyond chance
    only when its size passes the 95th percentile of the null's sizes."""
    bound = float(null.abs().quantile(0.95))
    if abs(value) > bound:
        return f"{value:.3f}, beyond the {bound:.3f} that 95% of random directions stay within"
    return f"{value:.3f}, within the {bound:.3f} that 95% of random directions stay within: at chance"


def probe_summary(embedding: Probe, residual: Probe, embedding_cos: float, residual_cos: float, head: Head, layer: int,
                  null: torch.Tensor | None = None) -> dict:
    """Held-out accuracies of the two probes beside the letter rule and their shuffled-label
    baselines, on the misleading words, and the cosines of their directions (through the head's
    OV circuit) with the neuron's input, each against ``null`` (:func:`ov_cosine_null`)."""
    misleading = embedding.misleading
    values = dict(
        probe_words=len(embedding.names), probe_an=int(embedding.labels.sum()), probe_folds=embedding.folds,
        embedding_accuracy=embedding.accuracy, letter_accuracy=embedding.letter_accuracy,
        misleading_words=int(misleading.sum()), misleading_correct=int(embedding.correct[misleading].sum()),
        misleading_list=", ".join(show_token(" " + w) for w, m in zip(embedding.names, misleading.tolist()) if m) or "none",
        residual_examples=len(residual.names), residual_nouns=len(set(residual.names)), residual_accuracy=residual.accuracy,
        residual_letter_accuracy=residual.letter_accuracy, residual_layer=layer,
        embedding_cos=embedding_cos, residual_cos=residual_cos, ov_head=str(head),
        embedding_shuffled=embedding.shuffled_accuracy, residual_shuffled=residual.shuffled_accuracy,
    )
    if null is not None:
        values["cosine_phrase"] = (f"For the embedding probe the cosine is {cosine_phrase(embedding_cos, null)}; "
                                   f"for the residual probe it is {cosine_phrase(residual_cos, null)}.")
    values["probe_phrase"] = _probe_phrase(values)
    return values


def _probe_phrase(values: dict) -> str:
    if values["misleading_words"] == 0:
        return "No word of the list has a misleading first letter for this tokenizer, so sound and spelling cannot be told apart here."
    right, count = values["misleading_correct"], values["misleading_words"]
    if values["embedding_accuracy"] < values["letter_accuracy"]:
        return (f"It does worse than the letter rule over all words, and gets {right} of the {count} words whose first letter "
                "misleads right: these embeddings do not carry the sound linearly.")
    if right == count:
        return f"It gets all {count} words whose first letter misleads right, so it follows the article each word takes, not its first letter."
    if right / count > 0.5:
        return f"It gets {right} of the {count} words whose first letter misleads right: mostly the article, not the first letter."
    return f"It gets only {right} of the {count} words whose first letter misleads right: it follows the spelling more than the sound."


def prompts_table(extra: PromptReadings, clean: PromptReadings, corrupted: PromptReadings, target: str) -> pd.DataFrame:
    """The follow-up's prompts, then the prompt set's clean and corrupted prompts: P(target) and the
    neuron's activation at the last position."""
    rows = [("follow-up", p, float(pr), float(a)) for p, pr, a in zip(extra.prompts, extra.p_target, extra.activation)]
    for kind, readings in (("clean", clean), ("corrupted", corrupted)):
        rows += [(kind, p, float(pr), float(a)) for p, pr, a in zip(readings.prompts, readings.p_target, readings.activation)]
    return pd.DataFrame(rows, columns=["prompt kind", "prompt", f"P({target!r})", "activation"])


def prompts_summary(extra: PromptReadings, clean: PromptReadings, corrupted: PromptReadings) -> dict:
    """Mean P(target) and activation per kind of prompt, and the follow-up prompt the neuron fires on most."""
    best = int(extra.activation.argmax())
    means = mean_interval(torch.stack([clean.activation, corrupted.activation]))
    return dict(
        extra_top=repr(extra.prompts[best]), extra_top_act=float(extra.activation[best]), extra_top_p=float(extra.p_target[best]),
        extra_mean_act=float(extra.activation.mean()), clean_act_mean=float(means[0, 0]), clean_act_low=float(means[0, 1]), clean_act_high=float(means[0, 2]),
        corrupted_act_mean=float(means[1, 0]), corrupted_act_low=float(means[1, 1]), corrupted_act_high=float(means[1, 2]),
        clean_p_mean=float(clean.p_target.mean()), corrupted_p_mean=float(corrupted.p_target.mean()),
        correlation_phrase=within_groups_phrase({"clean": (clean.activation, clean.p_target), "corrupted": (corrupted.activation, corrupted.p_target)}),
    )


def within_groups_phrase(groups: dict[str, tuple[torch.Tensor, torch.Tensor]], min_size: int = 8) -> str:
    """Pearson r of two readings within each group (``{name: (x, y)}``), never pooled: two
    clusters (clean and corrupted prompts) give a large pooled r whatever happens inside each."""
    parts = []
    for name, (x, y) in groups.items():
        if x.numel() < min_size:
            parts.append(f"{name}: too few prompts ({x.numel()})")
            continue
        r = torch.corrcoef(torch.stack([x.double(), y.double()]))[0, 1]
        parts.append(f"{name} prompts r = {float(r):.2f}" if r == r else f"{name}: one of the two is constant")
    return "Within each kind of prompt, activation and P(target) correlate at: " + "; ".join(parts) + (
        " (pooled over both kinds the correlation would mostly measure the gap between them).")


def lead_rows(leads: Leads, dec: InputDecomposition, patch: InputPatch, n_layers: int, n_heads: int, d_mlp: int,
              neuron_patch: InputPatch | None = None) -> list[Row]:
    """The follow-up's leads beside where this run ranks them: the head in the decomposition and in
    head patching, each candidate neuron among every upstream neuron (and, when ``neuron_patch``
    holds it, the change of the neuron's activation when it is patched alone), and the layer the
    input builds from."""
    patched_sources = list(neuron_patch.sources) if neuron_patch is not None else []
    head, neuron = leads.head, dec.neuron
    n_upstream = len(dec.head_labels)
    rows: list[Row] = []
    if not (head.layer < n_layers and head.index < n_heads):
        rows.append((f"{head}: rank among heads", "attends from ' picked' to the fruit", "not in this model"))
    elif head.layer > neuron.layer:
        rows.append((f"{head}: rank among heads", "attends from ' picked' to the fruit", f"after {neuron}'s layer: cannot reach it"))
    else:
        decomposition = dec.heads(dec.diff).mean(-1).flatten()
        patched = patch.effect.mean(-1).flatten()
        flat = head.layer * dec.n_heads + head.index
        rows.append((f"{head}: rank in the decomposition (of {n_upstream} heads)", "attends from ' picked' to the fruit", rank_by_size(decomposition, flat)))
        rows.append((f"{head}: rank in head patching (of {n_upstream} heads)", "attends from ' picked' to the fruit", rank_by_size(patched, flat)))
    per_neuron = dec.neurons_diff.mean(-1).flatten()  # [layer * d_mlp]
    for candidate in leads.vowel_neurons:
        label = f"{candidate}: rank among {per_neuron.numel():,} upstream neurons"
        if not candidate.exists_in(n_layers, d_mlp):
            rows.append((label, "candidate vowel neuron", "not in this model"))
        elif candidate.layer >= neuron.layer:
            rows.append((label, "candidate vowel neuron", f"not upstream of {neuron}"))
        else:
            rows.append((label, "candidate vowel neuron", rank_by_size(per_neuron, candidate.flat(d_mlp))))
            if candidate in patched_sources:
                effect = neuron_patch.effect[patched_sources.index(candidate)].mean()
                rows.append((f"{candidate}: patched alone, mean change of {neuron}'s activation", "candidate vowel neuron", round(float(effect), 4)))
    rows.append(("layer by which half of the input difference is in place", f"builds from about layer {leads.input_from_layer}", build_layer(dec)))
    return rows


def top_neurons(dec: InputDecomposition, k: int = 10) -> pd.DataFrame:
    """The ``k`` upstream neurons whose contributions differ most between the prompts (mean [interval])."""
    means = dec.neurons_diff.mean(-1).flatten()
    if means.numel() == 0:
        return pd.DataFrame(columns=["neuron", "clean - corrupted"])
    order = means.abs().argsort(descending=True)[:k]
    d_mlp = dec.neurons_diff.shape[1]
    stats = mean_interval(dec.neurons_diff.flatten(0, 1)[order])
    return pd.DataFrame({"neuron": [str(Neuron.from_flat(int(i), d_mlp)) for i in order],
                         "clean - corrupted": [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in stats.tolist()]})


def leads_note(neuron: Neuron, paper_neuron: Neuron) -> str:
    """What the leads table compares: the study's neuron, or another one."""
    if neuron == paper_neuron:
        return f"This run's neuron is the study's {neuron}, the one the follow-up named its leads for."
    return f"This run's neuron is {neuron}; the leads were named for the study's {paper_neuron}, so their ranks here say how they relate to another neuron."


def attention_summary(pattern: torch.Tensor, tokens, noun_position: int) -> dict:
    """Where the last position of ``pattern`` (``[query, key]``) attends most, and how much it attends
    to the noun (the position where the prompts differ)."""
    last = pattern[-1]
    key = int(last.argmax())
    return dict(attn_top_position=key, attn_top_token=show_token(tokens[key]), attn_top_weight=float(last[key]),
                attn_noun_token=show_token(tokens[noun_position]), attn_noun_weight=float(last[noun_position]))
