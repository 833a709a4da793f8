"""Glued numbers and phrases of the prompt-set pages: ablation (11) and direct and indirect effects (12)."""
from __future__ import annotations


import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.names import Neuron, show_token
from helpers.core.prompts import Contrast
from helpers.core.stats import Interval, interval, interval_cell, mean_interval, ratio_interval
from helpers.methods.ablation import LAYER_SET, Ablation, CorpusLoss, NaturalEffects  # noqa: F401 (the pages' tables name it)
from helpers.methods.choice import LayerRanks
from helpers.methods.effects import NeuronEffects
from helpers.paper import Study

Row = tuple[str, object, object]
NEGLIGIBLE = 0.01  # a path below this share of the total effect neither amplifies nor cancels


def prompt_set_summary(pairs: Contrast, clean_diff: torch.Tensor, corrupted_diff: torch.Tensor) -> dict:
    """How many pairs, how many the model gets right both ways, and the mean gap with its interval."""
    right = ((clean_diff > 0) & (corrupted_diff < 0)).float()
    gap = interval(clean_diff - corrupted_diff)
    return dict(
        n_pairs=pairs.n_pairs,
        pairs_right=int(right.sum()),
        pairs_right_share=float(right.mean()),
        gap_mean=gap.mean,
        gap_low=gap.low,
        gap_high=gap.high,
        study_gap=float(clean_diff[0] - corrupted_diff[0]),
    )


def ablation_table(result: Ablation, neuron: Neuron, value: str = "share") -> pd.DataFrame:
    """Mean over pairs [95% interval] per change (each ablation kind, and the clean activations
    restored into the corrupted run), a row each, and per set of neurons (the neuron, its layer,
    the random neurons averaged per pair), a column each: few columns, so the table fits the page.

    ``value="share"``: share of the logit difference lost (ablations) or recovered (restoring);
    ``value="prob"``: P(target) afterwards.
    """
    named = [result.set_names.index(str(neuron)), result.set_names.index(LAYER_SET)]
    randoms = [i for i in range(len(result.set_names)) if i not in named]
    ablated = result.necessity if value == "share" else result.ablated_prob  # [kind, set, pair]
    restored = result.sufficiency if value == "share" else result.restored_prob  # [set, pair]
    groups = {str(neuron): [named[0]], LAYER_SET: [named[1]]}
    if randoms:
        groups[f"{len(randoms)} random neurons (mean)"] = randoms
    changes = {f"{kind} ablation": ablated[k] for k, kind in enumerate(result.kinds)}
    changes["restored: share recovered" if value == "share" else "restored into corrupted"] = restored
    return pd.DataFrame([{"change": name, **{label: _cell(mean_interval(values[sets].mean(0)[None])[0]) for label, sets in groups.items()}}
                         for name, values in changes.items()])


def _cell(values: torch.Tensor) -> str:
    """``(mean, low, high)`` as a table cell (:func:`helpers.core.stats.interval_cell`)."""
    return interval_cell(*values.tolist())


def ablation_summary(result: Ablation, neuron: Neuron) -> dict:
    """The numbers and phrases of the ablation page's prose."""
    s, layer = result.set_names.index(str(neuron)), result.set_names.index(LAYER_SET)
    randoms = [i for i, name in enumerate(result.set_names) if name not in (str(neuron), LAYER_SET)]
    necessity = mean_interval(result.necessity)
    values = {}
    for k, kind in enumerate(result.kinds):
        mean, low, high = necessity[k, s].tolist()
        values.update({f"{kind}_mean": mean, f"{kind}_low": low, f"{kind}_high": high})
        values[f"{kind}_layer"] = float(necessity[k, layer, 0])
        values[f"{kind}_prob"] = float(result.ablated_prob[k, s].mean())
    random_largest = float(necessity[:, randoms, 0].abs().max()) if randoms else float("nan")
    sufficiency = mean_interval(result.sufficiency)
    mean_kind = result.kinds.index("mean") if "mean" in result.kinds else 0
    values.update(
        neuron=str(neuron),
        n_random=len(randoms),
        random_largest=random_largest,
        clean_prob=float(result.clean_prob.mean()),
        corrupted_prob=float(result.corrupted_prob.mean()),
        restored_mean=float(sufficiency[s, 0]),
        restored_low=float(sufficiency[s, 1]),
        restored_high=float(sufficiency[s, 2]),
        restored_layer=float(sufficiency[layer, 0]),
        study_restored=float(result.sufficiency[s, 0]),
        study_mean_ablated=float(result.necessity[mean_kind, s, 0]),
        negate_phrase=_negate_phrase(necessity, result.kinds, s),
        random_phrase=_random_phrase(random_largest, float(necessity[mean_kind, s, 0]), len(randoms)),
        kinds_phrase=kinds_phrase(necessity[:, s, 0].tolist(), necessity[:, layer, 0].tolist(), result.kinds, str(neuron)),
    )
    return values


def kinds_phrase(neuron_losses: list[float], layer_losses: list[float], kinds: tuple[str, ...], neuron: str) -> str:
    """The spread of the share lost across kinds of ablation, for the neuron and its layer, and
    whether the neuron alone loses more than the whole layer under some kind."""
    def spread(values):
        low, high = min(range(len(values)), key=values.__getitem__), max(range(len(values)), key=values.__getitem__)
        return f"from {values[low]:.3f} ({kinds[low]}) to {values[high]:.3f} ({kinds[high]})"

    text = (f"Across the {len(kinds)} kinds of ablation, {neuron} loses {spread(neuron_losses)} of the gap and its whole "
            f"layer {spread(layer_losses)}: no single kind is the neuron's necessity, so every kind is shown.")
    more = [k for k, n, l in zip(kinds, neuron_losses, layer_losses) if n > l]
    if more:
        text += (f" Under {', '.join(more)} ablation the neuron alone loses more than its whole layer: the layer's other "
                 "neurons, removed with it, push the other way.")
    return text


def ranks_phrase(ranks: LayerRanks) -> str:
    """Where the neuron ranks in its layer by necessity and by sufficiency, and whether the two
    readings disagree (one rank first, the other beyond the top ten)."""
    text = (f"Among the {ranks.n_neurons:,} neurons of its layer, each patched alone at every position (means over "
            f"{ranks.n_pairs} pair{'s' if ranks.n_pairs != 1 else ''}), {ranks.neuron} ranks "
            f"{ranks.necessity_rank} by necessity (the corrupted activation put into the clean prompt loses "
            f"{ranks.necessity_value:.3f} of the gap) and {ranks.sufficiency_rank} by sufficiency (the clean activation "
            f"put into the corrupted prompt recovers {ranks.sufficiency_value:.3f}).")
    if min(ranks.necessity_rank, ranks.sufficiency_rank) == 1 and max(ranks.necessity_rank, ranks.sufficiency_rank) > 10:
        text += " The two readings disagree: the neuron is first by one and not among the top ten by the other."
    return text


def _negate_phrase(necessity: torch.Tensor, kinds: tuple[str, ...], s: int) -> str:
    if "negate" not in kinds or "mean" not in kinds:
        return "negation was not run beside mean ablation"
    negate, mean = float(necessity[kinds.index("negate"), s, 0]), float(necessity[kinds.index("mean"), s, 0])
    if abs(mean) < 1e-9:
        return f"negation removes {negate:.3f} where mean ablation removes nothing"
    ratio = negate / mean
    if ratio > 1.2:
        return f"negation overstates it: it removes {ratio:.1f} times what mean ablation removes"
    if ratio < 0.8:
        return f"negation understates it: it removes {ratio:.2f} times what mean ablation removes"
    return f"negation and mean ablation agree here (ratio {ratio:.2f})"


def _random_phrase(random_largest: float, neuron_mean: float, n_random: int) -> str:
    if n_random == 0:
        return "no random neurons were ablated"
    if random_largest < 0.2 * abs(neuron_mean):
        return f"none of the {n_random} random neurons of the layer comes within a fifth of it (largest {random_largest:.3f})"
    return f"at least one of the {n_random} random neurons of the layer comes close (largest {random_largest:.3f})"


def loss_summary(result: CorpusLoss, target: str, other: str) -> dict:
    """Mean loss change (nats per token) with intervals, per group of next tokens."""
    values = {}
    for group, label in (("target", "an"), ("other", "a"), ("all", "all")):
        change = result.change[group]
        values[f"loss_{label}_n"] = int(change.numel())
        if change.numel() == 0:
            values.update({f"loss_{label}_mean": float("nan"), f"loss_{label}_low": float("nan"), f"loss_{label}_high": float("nan")})
            continue
        summary = interval(change)
        values.update({f"loss_{label}_mean": summary.mean, f"loss_{label}_low": summary.low, f"loss_{label}_high": summary.high})
        values[f"loss_{label}_base"] = result.loss[group]
    values["loss_phrase"] = loss_phrase(result.change["target"], result.change["all"], target)
    return values


def loss_phrase(before_target: torch.Tensor, overall: torch.Tensor, target: str) -> str:
    """What the loss changes say, from their intervals (tokens resampled): whether removing the
    neuron hurts before ``target``, and how many times more than on an average token, the ratio
    only when the average token's change is itself clear of zero."""
    if before_target.numel() == 0:
        return f"The corpus has no {target!r} to measure."
    here = interval(before_target)
    if not here.has_bounds:
        return f"Only {here.n} tokens precede {target!r} here: too few to say whether the neuron's removal hurts there."
    if here.low <= 0:
        return (f"Before {target!r} the interval of the loss change reaches zero or below ({here}): "
                "this corpus does not show that the model relies on the neuron there.")
    ratio = ratio_interval(before_target, overall)
    if ratio is None:
        return (f"The removal hurts before {target!r} ({here}); over all tokens the change's interval reaches zero, "
                "so no ratio between the two is given.")
    return (f"Per token, its removal costs {ratio.mean:.3g} times more before {target!r} than on an average token "
            f"(95% interval {ratio.low:.3g} to {ratio.high:.3g}, tokens resampled).")


def ablation_paper_rows(paper: Study, neuron: Neuron, result: Ablation) -> list[Row]:
    """The study pair (pair 0) beside the study's values."""
    rows: list[Row] = [
        ("P(' an') on the study's clean prompt", paper.p_target_clean, round(float(result.clean_prob[0]), 4)),
        ("clean logit difference", paper.clean_logit_diff, round(float(result.clean_diff[0]), 4)),
    ]
    rows.append(("neuron", str(paper.neuron), str(neuron)))
    rows.append(("restored alone at every position (the page's own pair)", paper.top_neurons[0][1],
                 round(float(result.sufficiency[result.set_names.index(str(neuron)), 0]), 4)))
    return rows


def direct_tokens(values: torch.Tensor, model: TransformerBridge, k: int = 10) -> pd.DataFrame:
    """The ``k`` most positive and most negative tokens of ``W_out[n] @ W_U``, side by side."""
    top, bottom = values.topk(k), values.topk(k, largest=False)
    decode = lambda ids: [show_token(model.tokenizer.decode([i])) for i in ids.tolist()]  # noqa: E731
    return pd.DataFrame({"most raised": decode(top.indices), "by": top.values.numpy(),
                         "most lowered": decode(bottom.indices), "by ": bottom.values.numpy()})


def direct_summary(values: torch.Tensor, model: TransformerBridge, target: int, other: int, scale: float) -> dict:
    """Where the target and its rival rank in ``W_out[n] @ W_U``, by how much the neuron
    separates them, and that per unit of activation through the final norm at ``scale`` (its
    mean scale at the last position of the page's prompts): ``dla_diff / scale``."""
    order = values.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    return dict(
        dla_target=float(values[target]), dla_other=float(values[other]), dla_diff=float(values[target] - values[other]),
        dla_target_rank=int(rank[target]), dla_other_rank=int(rank[other]), dla_vocab=int(values.numel()),
        dla_mean=float(values.mean()), dla_std=float(values.std()), dla_scale=scale, dla_diff_scaled=float(values[target] - values[other]) / scale,
        dla_top=show_token(model.tokenizer.decode([int(order[0])])), dla_bottom=show_token(model.tokenizer.decode([int(order[-1])])),
    )


def effects_summary(effects: NeuronEffects) -> dict:
    """Means with intervals of the total, direct and indirect effects, their shares, and the
    later components that amplify or cancel most."""
    parts = torch.stack([effects.total, effects.direct, effects.indirect, effects.rest, effects.total / effects.gap, effects.final_norm])
    (total, direct, indirect, rest, share, final_norm) = mean_interval(parts).tolist()
    values = dict(
        n_pairs=effects.total.numel(), direction=effects.direction,
        total_mean=total[0], total_low=total[1], total_high=total[2],
        direct_mean=direct[0], direct_low=direct[1], direct_high=direct[2],
        indirect_mean=indirect[0], indirect_low=indirect[1], indirect_high=indirect[2],
        rest_mean=rest[0], share_mean=share[0], share_low=share[1], share_high=share[2],
        final_norm_mean=final_norm[0], final_norm_low=final_norm[1], final_norm_high=final_norm[2],
        scale_mean=float(effects.base_scale.double().mean()),
        direct_share=direct[0] / total[0] if total[0] else float("nan"),
        n_components=len(effects.components),
        study_total=float(effects.total[0]), study_direct=float(effects.direct[0]),
    )
    values["split_phrase"] = _split_phrase(values["direct_share"], effects.neuron, len(effects.components))
    values.update(_path_phrases(effects, direct[0]))
    return values


def _split_phrase(direct_share: float, neuron: Neuron, n_components: int) -> str:
    if n_components == 0:
        return f"{neuron} is in the last layer, so nothing reads it but the unembedding: its effect is direct but for the final norm's rescaling"
    if direct_share != direct_share:
        return "the total effect is zero, so no part of it can be called direct"
    if direct_share < 0:
        return (f"the direct path pushes against the total effect (direct ÷ total = {direct_share:.2f}): "
                "later layers reverse what the neuron writes")
    if direct_share > 1.2:
        return (f"the direct path alone moves the logit difference {direct_share:.2f} times as much as the whole effect: "
                "later layers cancel part of what the neuron writes")
    if direct_share > 0.8:
        return "most of the effect is direct: the neuron speaks to the logits itself"
    if direct_share < 0.2:
        return "most of the effect is indirect: the neuron works through later layers"
    return "the effect is split between the direct path and later layers"


def _path_phrases(effects: NeuronEffects, direct_mean: float) -> dict:
    rest = float(effects.rest.mean())
    if not effects.components:
        return dict(top_amplifier="none", top_amplifier_value=0.0, top_canceller="none", top_canceller_value=0.0,
                    paths_legend=(f"{effects.neuron} is in the last layer, so the figure has no later components: only the direct "
                                  "path, the final norm's scale (blue with the sign of the total effect, red against it) and what neither carries."),
                    paths_phrase=f"There are no later components to amplify or cancel it; what the direct effect leaves, {rest:.3f}, is the final norm's rescaling.")
    means = effects.paths.mean(1)
    total = float(effects.total.mean())
    sign = 1.0 if total >= 0 else -1.0  # amplify: the same sign as the neuron's total effect
    floor = NEGLIGIBLE * abs(total)
    amplify, cancel = int((means * sign).argmax()), int((means * sign).argmin())
    amplifies, cancels = float(means[amplify]) * sign > floor, float(means[cancel]) * sign < -floor
    phrase = (
        f"The later component that amplifies it most is {effects.components[amplify]} ({float(means[amplify]):+.3f}); "
        f"the one that cancels it most is {effects.components[cancel]} ({float(means[cancel]):+.3f})."
    )
    if not cancels:
        phrase = f"No later component cancels it; the one that amplifies it most is {effects.components[amplify]} ({float(means[amplify]):+.3f})."
    if not amplifies:
        phrase = f"No later component amplifies it; the one that cancels it most is {effects.components[cancel]} ({float(means[cancel]):+.3f})."
    if not amplifies and not cancels:
        phrase = "No single later component carries more than a hundredth of its total effect."
    phrase += f" Over its {len(effects.components)} later components, the direct effect and the single paths leave {rest:.3f} of the total unexplained."
    legend = ("Blue bars have the sign of the neuron's total effect (they amplify it), red bars the opposite sign "
              "(they cancel it); the final norm's scale is the channel above; \"not explained\" is what none of them "
              "carries: chains through two or more later components and the later layers' own norms.")
    return dict(top_amplifier=effects.components[amplify], top_amplifier_value=float(means[amplify]), paths_legend=legend,
                top_canceller=effects.components[cancel], top_canceller_value=float(means[cancel]), paths_phrase=phrase)


def most_indirect(others: list[NeuronEffects]) -> NeuronEffects | None:
    """The compared neuron whose mean indirect effect is largest in size (None if none was compared)."""
    return max(others, key=lambda e: abs(float(e.indirect.mean())), default=None)


def most_indirect_summary(effects: NeuronEffects | None) -> dict:
    """The phrases about the compared neuron whose paths the page draws."""
    if effects is None:
        return dict(indirect_neuron="none", indirect_paths_phrase="No other neuron was compared (`n_compare=0`), so there are no other paths to draw.")
    values = effects_summary(effects)
    return dict(indirect_neuron=str(effects.neuron), indirect_paths_phrase=(
        f"Of the neurons compared, {effects.neuron} has the largest indirect effect; its paths are drawn below. "
        f"Its total effect is {values['total_mean']:.3f}, of which {values['direct_mean']:.3f} is direct. " + values["paths_phrase"]))


def effects_paper_rows(paper: Study, neuron: Neuron, effects: NeuronEffects) -> list[Row]:
    """The study pair's total effect (share of the gap) beside the study's neuron patching value."""
    recovered = float(effects.total[0] / effects.gap[0])
    return [("neuron", str(paper.neuron), str(neuron)),
            ("restored at every position, share recovered (the page's own pair)", paper.top_neurons[0][1], round(recovered, 4)),
            ("direct effect ÷ total effect", "not measured", round(float(effects.direct.mean() / effects.total.mean()), 3))]


def comparison_phrase(others: list[NeuronEffects]) -> str:
    """What the comparison table holds."""
    if not others:
        return "No other neuron was compared on this run (`n_compare=0`): each costs a pass per later component over the prompt set."
    names = ", ".join(str(e.neuron) for e in others)
    return f"Beside it: {names}, the neurons with the largest attribution estimates in the other layers."


def effects_table(all_effects: list[NeuronEffects]) -> pd.DataFrame:
    """Per neuron: mean total, direct and indirect effect over pairs [95% interval], and direct ÷ total
    (above 1 where later layers cancel part of the direct effect, below 0 where they reverse it)."""
    rows = []
    for effects in all_effects:
        total, direct, indirect = mean_interval(torch.stack([effects.total, effects.direct, effects.indirect])).tolist()
        rows.append({"neuron": str(effects.neuron), "total": _cell(torch.tensor(total)), "direct": _cell(torch.tensor(direct)),
                     "indirect": _cell(torch.tensor(indirect)), "direct ÷ total": round(direct[0] / total[0], 3) if total[0] else float("nan")})
    return pd.DataFrame(rows)


def heldout_source(dataset: str) -> str:
    """The documents a page measures natural positions on: the bundled corpus's held-out split
    for ``"toy"``, else the same source (drawn with another seed than the scan's)."""
    return "toy-heldout" if dataset == "toy" else dataset


def beyond_summary(main: Ablation, unseen: Ablation, natural: NaturalEffects, neuron: Neuron, target: str, other: str) -> dict:
    """The neuron's mean-ablation necessity on the templates' pairs and on unseen frames, and
    its total and direct effect at natural corpus positions before the target and its rival.
    Each interval says what it resamples: pairs, or positions."""
    def lost(result: Ablation) -> Interval:
        kind = result.kinds.index("mean") if "mean" in result.kinds else 0
        return interval(result.necessity[kind, result.set_names.index(str(neuron))])

    here, there = lost(main), lost(unseen)
    right = int(((unseen.clean_diff > 0) & (unseen.corrupted_diff < 0)).sum())
    values = dict(templates_necessity=str(here), unseen_necessity=str(there), n_unseen=unseen.necessity.shape[-1],
                  unseen_right=right, unseen_gap=str(interval(unseen.clean_diff - unseen.corrupted_diff)))
    for label, mask in (("target", natural.before_target), ("other", ~natural.before_target)):
        values[f"natural_{label}_n"] = int(mask.sum())
        values[f"natural_{label}_total"] = str(interval(natural.total[mask])) if mask.any() else "no positions"
        values[f"natural_{label}_direct"] = str(interval(natural.direct[mask])) if mask.any() else "no positions"
    if not there.has_bounds or not here.has_bounds:
        values["unseen_phrase"] = f"The unseen frames give {there.n} pairs: too few for an interval, so no comparison is drawn."
    elif there.high < here.low:
        values["unseen_phrase"] = "On frames the model never read, the neuron matters less than on the templates: part of what the templates show is the templates."
    elif there.low > here.high:
        values["unseen_phrase"] = "On frames the model never read, the neuron matters more than on the templates."
    else:
        values["unseen_phrase"] = "On frames the model never read, its necessity is not distinguishable from the templates'."
    before = natural.total[natural.before_target]
    if before.numel() and interval(before).has_bounds:
        natural_here = interval(before)
        values["natural_phrase"] = (
            f"At natural positions before {target!r}, removing it lowers the logit difference ({natural_here})." if natural_here.high < 0 else
            f"At natural positions before {target!r}, removing it does not lower the logit difference measurably ({natural_here})."
        )
    else:
        values["natural_phrase"] = f"Too few natural positions precede {target!r} here for an interval."
    return values
