"""Summaries for the layer-patching and neuron-patching pages."""
from __future__ import annotations

import torch

from helpers.book.page import NeuronChoice
from helpers.methods.choice import STABLE, HeldOut
from helpers.core.names import Neuron, show_token
from helpers.core.prompts import Contrast
from helpers.methods.attribution import ACCURATE_GAP, VERDICTS, FailureModes, agreement
from helpers.methods.layer_patching import standouts
from helpers.methods.neuron_patching import exact_patching_flops
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
        engine_phrase=engine_phrase(every.engine),
    )


def engine_phrase(engine: str) -> str:
    """How the exact values were computed: the fast engine, or the fallback for other blocks."""
    if engine == "suffix":
        return ("they are computed by running only the layers after the patched one, only at the positions "
                "that change, with many neurons side by side in one batch")
    return ("this model's blocks are not GPT-2 blocks, the only ones the fast engine recomputes, so every neuron "
            "was patched through the model's own forward pass, many neurons side by side in one batch (exact, slower)")


def page_neuron_phrase(choice: NeuronChoice, top: Neuron) -> str:
    """How the book's neuron (the one the other pages study) relates to this page's ranking."""
    if choice.neuron == top:
        return f"{top} is the neuron the other pages of this run study"
    return f"the other pages of this run study {choice.neuron}, {choice.neuron_source}"


def held_out_summary(choice: NeuronChoice, held: HeldOut) -> dict:
    """What page 04 says of the neuron on pairs it was not chosen on: how it was chosen, how
    stable the choice is, and whether it still ranks first in its layer (rules tested in
    ``tests/test_held_out.py``)."""
    if choice.stability is None:
        how = ("It was given as a parameter" if not choice.auto else "It was chosen on the page's own pair alone") + ", so there is nothing to resample."
    elif choice.stability >= STABLE:
        how = (f"It was chosen on {choice.n_selection} selection pairs, and {choice.stability:.0%} of bootstrap resamples of them "
               f"choose it again: a stable choice (at least {STABLE:.0%}).")
    else:
        how = (f"It was chosen on {choice.n_selection} selection pairs, but only {choice.stability:.0%} of bootstrap resamples of "
               f"them choose it again (stable from {STABLE:.0%}): an unstable choice, one neuron among close rivals rather than "
               "the layer's neuron.")
    if held.rank == 1:
        holds = (f"On {held.n_evaluation} held-out pairs it ranks first in its layer, recovering {held.recovery} against "
                 f"{held.runner_up:.3f} for the next neuron and {held.whole_layer} for the whole layer.")
    else:
        holds = (f"On {held.n_evaluation} held-out pairs it ranks {held.rank} in its layer (recovery {held.recovery}; the best "
                 f"neuron there {held.runner_up:.3f}): the choice does not carry over to pairs it was not made on.")
    return dict(held_out_phrase=f"{how} {holds}", held_rank=held.rank, held_recovery=held.recovery.mean)


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


def exact_scope(exact_every_layer: bool, chosen: int) -> list[int] | None:
    """The layers page 04 patches exactly for the model-wide check: every layer (None), or
    only the chosen one."""
    return None if exact_every_layer else [chosen]


def model_attribution_summary(exact: PatchResult, estimate: PatchResult, stats: dict, model_cfg, contrast: Contrast) -> dict:
    """What page 04 says about attribution against exact patching over the exactly patched
    layers (``stats``: :func:`helpers.methods.attribution.model_agreement`), and why the
    check covers what it covers."""
    n_layers, d_mlp = model_cfg.n_layers, model_cfg.d_mlp
    pearson = [s["pearson"] for s in stats["per_layer"]]
    spearman = [s["spearman"] for s in stats["per_layer"]]
    values = exact.values[~exact.values.isnan()].double()
    squares = (values - values.mean()).pow(2)
    carried = float(squares.topk(min(10, squares.numel())).values.sum() / squares.sum()) if squares.sum() > 0 else float("nan")
    worst = min(range(len(pearson)), key=pearson.__getitem__)
    best = max(range(len(pearson)), key=pearson.__getitem__)
    first_diff = contrast.diff_positions[0] if exact.positions == "all" else contrast.clean.shape[1] - 1
    flops = exact_patching_flops(model_cfg, contrast.clean.shape[1] - first_diff, contrast.clean.shape[1])
    return dict(
        n_exact=f"{stats['n_neurons']:,}",
        n_exact_layers=len(stats["layers"]),
        r_model=stats["pooled"]["pearson"],
        rho_model=stats["pooled"]["spearman"],
        overlap_model=stats["pooled"]["top_k_overlap"],
        worst_agreement_layer=stats["layers"][worst],
        worst_agreement_r=pearson[worst],
        best_agreement_layer=stats["layers"][best],
        best_agreement_r=pearson[best],
        median_layer_r=float(torch.tensor(pearson).median()), median_layer_rho=float(torch.tensor(spearman).median()),
        top_ten_carry=carried,
        exact_scope_phrase=exact_scope_phrase(stats["layers"], n_layers, d_mlp, flops),
    )


def exact_scope_phrase(layers: list[int], n_layers: int, d_mlp: int, flops: float) -> str:
    """Which neurons the exact check covers, and, when it covers only some layers, why."""
    total = n_layers * d_mlp
    if len(layers) == n_layers:
        return f"every one of the model's {total:,} neurons ({n_layers} layers of {d_mlp:,}) was patched exactly"
    named = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"
    return (
        f"only {named} ({len(layers) * d_mlp:,} neurons) was patched exactly: this run sets `exact_every_layer=False`, because "
        f"patching all {total:,} neurons exactly takes about {flops:.1e} floating-point operations, "
        f"{duration(flops / 1e11)} even at 100 GFLOP/s (a good rate for a CPU); the GPU profile turns it on"
    )


def duration(seconds: float) -> str:
    """A time span in the unit a reader takes in at once: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def failure_mode_summary(diagnosis: FailureModes) -> dict:
    """The sentence page 04 says about the neurons where attribution is furthest from exact,
    and the worst one's numbers."""
    verdicts = diagnosis.verdicts
    gaps = diagnosis.gap.abs()
    worst = diagnosis.neurons[0]
    return dict(
        n_worst=len(verdicts),
        worst_gap_neuron=str(worst),
        worst_gap_exact=float(diagnosis.exact[0]),
        worst_gap_estimate=float(diagnosis.estimate[0]),
        worst_gap_verdict=verdicts[0],
        failure_sentence=failure_sentence(verdicts, float(gaps.min()), float(gaps.max())),
        failure_caption=(f"The {len(verdicts)} neurons with the largest gaps between attribution and exact patching "
                         f"(gaps {float(gaps.min()):.3f} to {float(gaps.max()):.3f}; below {ACCURATE_GAP} a gap is no failure)"),
    )


def failure_sentence(verdicts: list[str], smallest_gap: float, largest_gap: float) -> str:
    """How many of the worst-estimated neurons each failure mode explains, in one sentence."""
    n = len(verdicts)
    if all(v == VERDICTS[0] for v in verdicts):
        return (
            f"Even the largest gap is {largest_gap:.4f}, below {ACCURATE_GAP} of the clean-corrupted difference: on these prompts "
            f"attribution is accurate for every neuron, and there is no failure to explain"
        )
    counts = {v: verdicts.count(v) for v in VERDICTS}
    phrases = {
        VERDICTS[1]: "freezing the later attention patterns closes at least half of the gap (attention saturation)",
        VERDICTS[2]: "large contributions through different later layers cancel in the estimate (cancellation)",
        VERDICTS[3]: "both tests point at once (attention saturation and cancellation)",
        VERDICTS[4]: "neither test explains the gap (what remains is the curvature of the later MLPs and layer norms)",
        VERDICTS[5]: "the gap is the rounding of the estimate in the model's dtype (precision)",
        VERDICTS[0]: f"the gap is below {ACCURATE_GAP} (accurate)",
    }
    parts = [f"for {counts[v]} {phrases[v]}" for v in (*VERDICTS[1:], VERDICTS[0]) if counts[v]]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Of the {n} neurons where the estimate is furthest from the exact value (gaps {smallest_gap:.3f} to {largest_gap:.3f}), {listed}"
