"""Summaries for the layer-patching and neuron-patching pages."""
from __future__ import annotations

from helpers.book.page import NeuronChoice
from helpers.core.names import Neuron, show_token
from helpers.core.prompts import Contrast
from helpers.methods.attribution import agreement
from helpers.methods.layer_patching import standouts
from helpers.methods.patching import PatchResult
from helpers.paper import Study

Row = tuple[str, object, object]


def contrast_summary(contrast: Contrast, result: PatchResult) -> dict:
    """The two baselines, where the prompts differ and where the prediction is made."""
    diff_position = contrast.diff_positions[0]
    return dict(
        clean_diff=result.clean_diff,
        corrupted_diff=result.corrupted_diff,
        diff_token=show_token(contrast.str_tokens[diff_position]),
        diff_position=diff_position,
        last_token=show_token(contrast.str_tokens[-1]),
    )


def resid_span(found: dict) -> str:
    """One sentence on where the last position's residual stream crosses the two thresholds."""
    if found["low_layer"] is None:
        return "Patching it recovers less than 0.2 at every layer."
    text = f"Patching it first recovers 0.2 or more at layer {found['low_layer']} ({found['low_value']:.3f})"
    if found["high_layer"] is None:
        return text + " and never reaches 0.9."
    return text + f" and 0.9 or more from layer {found['high_layer']} ({found['high_value']:.3f})."


def layer_patching_summary(results: dict[str, PatchResult], diff_position: int, prefix: str) -> dict:
    """The stand-out cells of one direction's maps, each name prefixed (``suf_``, ``nec_``)."""
    found = standouts(results, diff_position)
    resid = results["resid_pre"].values
    values = {k: v for k, v in found.items() if v is not None}
    values.update(resid_span=resid_span(found), resid_diff_first=resid[0, diff_position].item(), resid_diff_last=resid[-1, diff_position].item())
    return {f"{prefix}{k}": v for k, v in values.items()}


def layer_patching_paper_rows(paper: Study, results: dict[str, PatchResult], diff_position: int) -> list[Row]:
    """Page 03's table: the study's stand-outs located by the same rules in its own maps."""
    ref, run = standouts(paper.patch_maps, paper.diff_position), standouts(results, diff_position)
    return [
        ("attention 0 at the differing token", round(ref["attn0_diff"], 3), round(run["attn0_diff"], 3)),
        ("MLP 0 at the differing token", round(ref["mlp0_diff"], 3), round(run["mlp0_diff"], 3)),
        ("best attention layer at the last position", ref["attn_layer"], run["attn_layer"]),
        ("  its recovery", round(ref["attn_value"], 3), round(run["attn_value"], 3)),
        ("best MLP layer at the last position", ref["mlp_layer"], run["mlp_layer"]),
        ("  its recovery", round(ref["mlp_value"], 3), round(run["mlp_value"], 3)),
        ("residual stream at the last position: largest rise", f"layer {ref['rise_from']} -> {ref['rise_to']}", f"layer {run['rise_from']} -> {run['rise_to']}"),
        ("  first layer at 0.2 or more", ref["low_layer"], run["low_layer"]),
        ("  first layer at 0.9 or more", ref["high_layer"], run["high_layer"]),
    ]


def neuron_patching_summary(choice: NeuronChoice, last: PatchResult, every: PatchResult) -> dict:
    """What page 04 says about the layer's neurons restored at the last and at every position."""
    (first_name, first_value), (second_name, second_value) = every.ranked(2)
    return dict(
        layer=choice.layer,
        layer_source=choice.layer_source,
        layer_mlp_last=last.whole_layer,
        top_neuron=str(first_name),
        top_all=first_value,
        top_last=last.value_of(first_name),
        second_neuron=str(second_name),
        second_all=second_value,
        whole_all=every.whole_layer,
        whole_last=last.whole_layer,
        same_top="the same neuron" if last.top_neuron == first_name else f"a different neuron, {last.top_neuron}",
        top_vs_layer="more than" if first_value > every.whole_layer else "less than",
        n_neurons=f"{every.values.numel():,}",
        clean_diff=every.clean_diff,
        corrupted_diff=every.corrupted_diff,
        page_neuron=str(choice.neuron),
        page_neuron_phrase=page_neuron_phrase(choice, first_name),
    )


def page_neuron_phrase(choice: NeuronChoice, top: Neuron) -> str:
    """How the book's neuron (the one the other pages study) relates to this page's ranking."""
    if choice.neuron == top:
        return f"{top} is the neuron the other pages of this run study"
    return f"the other pages of this run study {choice.neuron}, {choice.neuron_source}"


def study_verdict(paper: Study, on_paper_model: bool, model_name: str, top: Neuron) -> str:
    """Whether this run's top neuron is the study's, or why it cannot be compared."""
    if not on_paper_model:
        return f"cannot be compared with the study's {paper.neuron}: this run uses {model_name}, not GPT-2 Large"
    if top == paper.neuron:
        return f"matches the study: the top neuron is {paper.neuron}"
    return f"does not match the study: the top neuron is {top}, not {paper.neuron}"


def neuron_patching_paper_rows(paper: Study, last: PatchResult, every: PatchResult) -> list[Row]:
    """Page 04's table beside the study (which restored neurons at every position)."""
    (first_name, first_value), (_, second_value) = every.ranked(2)
    return [
        ("top neuron, restored at every position", str(paper.neuron), str(first_name)),
        ("its recovery", paper.top_neurons[0][1], round(first_value, 4)),
        ("next best recovery", paper.top_neurons[1][1], round(second_value, 4)),
        ("whole MLP layer at the last position", paper.whole_layer_last, round(last.whole_layer, 4)),
    ]


def study_neurons_on_this_run(paper: Study, every: PatchResult) -> dict[Neuron, float] | None:
    """This run's recovery for each neuron the study listed, when this run patched that layer."""
    listed = [n for n, _ in paper.top_neurons + paper.bottom_neurons]
    if every.layer != paper.patched_layer:
        return None
    return {n: every.value_of(n) for n in listed}


def attribution_summary(exact: dict[str, PatchResult], estimates: dict[str, PatchResult], top_k: int) -> dict:
    """How attribution patching agrees with exact neuron patching on the patched layer, and
    its top neuron over the whole model."""
    layer = exact["all"].layer
    stats = {mode: agreement(exact[mode].values, estimates[mode].values[layer], k=top_k) for mode in exact}
    top_exact = exact["all"].top_neuron
    overall, overall_value = estimates["all"].ranked(1)[0]
    return dict(
        r_all=stats["all"]["pearson"],
        rho_all=stats["all"]["spearman"],
        overlap_all=stats["all"]["top_k_overlap"],
        r_last=stats["last"]["pearson"],
        rho_last=stats["last"]["spearman"],
        overlap_last=stats["last"]["top_k_overlap"],
        top_k=top_k,
        estimate_top=estimates["all"].value_of(top_exact),
        overall_top=str(overall),
        overall_value=overall_value,
        overall_same="the same neuron exact patching put first" if overall == top_exact else f"not {top_exact}, the neuron exact patching put first in layer {layer}",
    )
