"""Glued numbers, phrases and the table of the sweep page (15)."""
from __future__ import annotations

import pandas as pd

from helpers.core.models import BUNDLED_MODELS
from helpers.core.stats import Interval
from helpers.methods.choice import STABLE
from helpers.methods.sweep import Sweep, logit_effect_similarity
from helpers.paper import Study

AUTO = "auto"


def sweep_names(models, model_name: str) -> list[str]:
    """The page's list of models: ``"auto"`` is every bundled model when the page's model is
    bundled, else the page's model alone; a comma-separated string or a list is taken as given."""
    if models == AUTO:
        return list(BUNDLED_MODELS) if model_name in BUNDLED_MODELS else [model_name]
    names = [n.strip() for n in models.split(",")] if isinstance(models, str) else list(models)
    if not names or not all(names):
        raise ValueError(f"models={models!r} names no model; give 'auto', a list, or names separated by commas")
    return names


def shape_of(row) -> str:
    return f"{int(row.n_layers)} x {int(row.d_model)}"


def sweep_table(result: Sweep) -> pd.DataFrame:
    """How each model does the task, one line per model; a model that was not measured is marked
    (``missing_phrase`` of :func:`sweep_summary` says why)."""
    lines = []
    for _, r in result.table.iterrows():
        shape = shape_of(r) if pd.notna(r.get("n_layers")) else ""
        if r.status != "measured":
            lines.append({"model": r.model, "layers x d_model": shape, "accuracy": f"{r.status} (see above)"})
            continue
        lines.append({"model": r.model, "layers x d_model": shape, "accuracy": f"{r.accuracy:.3f}",
                      "P(target)": f"{r.p_target:.3f}", "layer": str(int(r.layer)), "neuron": r.neuron, "engine": r.engine})
    return pd.DataFrame(lines).fillna("")


def neuron_table(result: Sweep) -> pd.DataFrame:
    """The top neuron of each measured model: recovery with its interval, its layer's, how many
    neurons reach half of it, congruence rank and direct ÷ total effect."""
    return pd.DataFrame([{
        "model": r.model, "neuron": neuron_cell(r.neuron, r.get("stability")),
        "held-out recovery": str(Interval(r.recovery, r.recovery_low, r.recovery_high, int(r.n_pairs))),
        "whole layer": f"{r.whole_layer:.3f}", "neurons to half": _count(r.neurons_to_half, r.max_neurons),
        "congruence rank": f"{int(r.congruence_rank)} of {int(r.n_neurons):,}", "direct ÷ total": f"{r.direct_share:.2f}",
    } for _, r in result.measured.iterrows()])


def neuron_cell(neuron: str, stability) -> str:
    """A model's top neuron with the share of selection resamples that choose it; below
    :data:`~helpers.methods.choice.STABLE` it is marked unstable, not named as the model's neuron."""
    if stability is None or pd.isna(stability):
        return f"{neuron} (chosen on one pair)"
    if stability < STABLE:
        return f"unstable: {neuron} in {stability:.0%} of resamples"
    return f"{neuron} ({stability:.0%} of resamples)"


def _count(k, limit) -> str:
    if k is None or pd.isna(k):
        return f"more than {int(limit)}" if limit is not None and not pd.isna(limit) else "not reached"
    return str(int(k))


def _names(frame: pd.DataFrame) -> str:
    names = [f"`{n}`" for n in frame.model]  # shown through note(): Markdown
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _list(values) -> str:
    values = list(values)
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def sweep_summary(result: Sweep) -> dict:
    """Counts and the three answers: a neuron of its own per model, how alike models of one
    shape are, and whether the mechanism concentrates as the models grow."""
    table, measured = result.table, result.measured
    missing = table[table.status != "measured"]
    out = dict(
        n_models=len(table), n_measured=len(measured),
        missing_phrase=("Every model was measured." if missing.empty else
                        "Not measured: " + "; ".join(f"`{r.model}` ({r.status}: {r.note})" for _, r in missing.iterrows()) + "."),
    )
    if measured.empty:
        return {**out, "own_phrase": "No model was measured, so there is nothing to compare.", "alike_phrase": "", "growth_phrase": "",
                "share_min": float("nan"), "share_max": float("nan")}
    share = measured.recovery / measured.whole_layer
    own = [f"`{r.model}` {neuron_cell(r.neuron, r.get('stability'))}: {r.recovery:.3f} of the gap on held-out pairs, "
           f"{s:.2f} of its layer's {r.whole_layer:.3f}" for (_, r), s in zip(measured.iterrows(), share)]
    unstable = [f"`{r.model}`" for _, r in measured.iterrows() if pd.notna(r.get("stability")) and r.stability < STABLE]
    out["own_phrase"] = "Top neurons: " + "; ".join(own) + "." + (
        f" The choice of {_list(unstable)} changes under resampling of the selection pairs (stable below {STABLE:.0%}): "
        "no single neuron of theirs is named here." if unstable else "")
    out["share_min"], out["share_max"] = float(share.min()), float(share.max())
    out["alike_phrase"] = alike_phrase(result)
    out["growth_phrase"] = growth_phrase(measured)
    return out


def alike_phrase(result: Sweep) -> str:
    """For each shape trained more than once: the seeds' neurons, congruence ranks, recoveries
    and how alike their logit effects are."""
    measured = result.measured
    similarity = logit_effect_similarity(result)
    parts = []
    for shape, group in measured.groupby(measured.apply(shape_of, axis=1), sort=False):
        if len(group) < 2:
            continue
        names = list(group.model)
        cosines = [similarity.loc[a, b] for i, a in enumerate(names) for b in names[i + 1:] if pd.notna(similarity.loc[a, b])]
        layers = sorted({int(l) for l in group.layer})
        layer_text = f"all in layer {layers[0]}" if len(layers) == 1 else "in layers " + _list([str(l) for l in layers])
        text = (f"The {len(group)} models of shape {shape} ({_names(group)}) found {_list(list(group.neuron))}, {layer_text}; "
                f"they recover {_list([f'{v:.3f}' for v in group.recovery])} of the gap, rank "
                f"{_list([str(int(v)) for v in group.congruence_rank])} by congruence with the target, and their direct "
                f"effects are {_list([f'{v:.2f}' for v in group.direct_share])} times their total effects.")
        if cosines:
            spread = f"a cosine of {cosines[0]:.2f}" if len(cosines) == 1 else f"cosines between {min(cosines):.2f} and {max(cosines):.2f}"
            kind = "alike" if min(cosines) > 0.5 else "partly alike" if max(cosines) > 0.5 else "different"
            text += f" Their logit effects (`W_out[n] @ W_U`, centred) have {spread}: {kind} neurons for one job."
        parts.append(text)
    return " ".join(parts) or "No shape was measured more than once, so seeds cannot be compared here."


def growth_phrase(measured: pd.DataFrame) -> str:
    """Neurons to half for each shape, from the smallest to the largest (every seed of a shape),
    and what the trend says beside the spread between seeds."""
    by_shape = []
    for (layers, width), group in measured.groupby(["n_layers", "d_model"], sort=False):
        by_shape.append((int(layers) * int(width) ** 2, f"{int(layers)} x {int(width)}", group))
    by_shape.sort(key=lambda item: item[0])
    if len(by_shape) < 2:
        return "Only one size was measured, so growth cannot be judged here."
    parts, counts = [], []
    for _, shape, group in by_shape:
        ks = [None if pd.isna(k) else int(k) for k in group.neurons_to_half]
        counts.append(ks)
        parts.append(f"{shape} ({_names(group)}): {_list([_count(k, m) for k, m in zip(ks, group.max_neurons)])}")
    text = "Neurons it takes to reach half of the chosen layer's recovery, from the smallest shape to the largest: " + "; ".join(parts) + "."
    if any(k is None for ks in counts for k in ks):
        return text + " Some layer did not reach half within the neurons tried, so the trend is not measured."
    seeds = any(len(ks) > 1 for ks in counts)
    pairs = list(zip(counts, counts[1:]))
    if all(len(set(ks)) == 1 for ks in counts) and len({ks[0] for ks in counts}) == 1:
        verdict = "The count is the same for every model: growing the model neither concentrates nor spreads the mechanism here."
    elif all(max(b) < min(a) for a, b in pairs):
        verdict = "Every larger shape needs fewer neurons than every model of the shape before it: the mechanism concentrates as the model grows."
    elif all(min(b) > max(a) for a, b in pairs):
        verdict = "Every larger shape needs more neurons than every model of the shape before it: the mechanism spreads as the model grows."
    elif seeds:
        verdict = ("The seeds of one shape differ from each other as much as the shapes do, so this family shows no "
                   "effect of size beyond what the seed decides.")
    else:
        verdict = "The count goes up and down with size: no monotone trend here."
    return f"{text} {verdict}"


def sweep_paper_rows(result: Sweep, paper: Study, paper_model: str) -> list[tuple[str, object, object]]:
    """The study's values beside the sweep's row for its model (empty if it was not measured)."""
    rows = result.measured[result.measured.model == paper_model]
    if rows.empty:
        return []
    r = rows.iloc[0]
    return [
        ("layer ranked first", paper.neuron.layer, int(r.layer)),
        ("neuron ranked first", str(paper.neuron), r.neuron),
        ("P(' an') on the study prompt", paper.p_target_clean, round(float(r.p_target), 4)),
        ("top neuron restored at every position, share recovered (study prompt)", paper.top_neurons[0][1],
         round(float(r.recovery_study_pair), 4)),
    ]


def resolve_models(page, models) -> tuple[list[str], str]:
    """The page's ``models`` knob for :data:`helpers.book.page.AUTO_KNOBS`: the model names."""
    names = sweep_names(models, page.context["model_name"])
    return names, ", ".join(names)


def matches_table(matches: pd.DataFrame) -> pd.DataFrame:
    """One row per ordered pair of models: the top neuron's best match in the other model by
    activation correlation, beside the rotation null and the weights' logit-effect cosine."""
    return pd.DataFrame([{
        "model": r["model"], "its neuron": neuron_cell(str(r["neuron"]), r.get("stability")), "matched in": r["other model"],
        "best match": str(r["its best match"]),
        "correlation": f"{r['correlation']:.3f}", "rotation null": f"{r['rotation null']:.3f}",
        "is the other's top neuron": "yes" if r["its best match"] == r["other's top neuron"] else "no",
        "logit-effect cosine": f"{r['logit-effect cosine']:.2f}",
    } for _, r in matches.iterrows()])


def matches_phrase(matches: pd.DataFrame) -> str:
    """Whether the models' top neurons have matches above the rotation null in the other
    models, and whether those matches are the other models' own top neurons."""
    if matches.empty:
        return "No two measured models share a tokenizer, so no activations can be compared token by token."
    n, above = len(matches), int(matches["above the null"].sum())
    own = int((matches["its best match"] == matches["other's top neuron"]).sum())
    tokens = int(matches["tokens"].iloc[0])
    verdict = ("every model's top neuron has a counterpart in every other" if above == n else
               "no model's top neuron has a counterpart above the null" if above == 0 else
               f"the top neuron has a counterpart above the null in {above} of the {n} pairs")
    return (f"Over {tokens:,} tokens, {verdict}: its best-matching neuron correlates with it more than any randomly rotated "
            f"neuron does. In {own} of the {n} pairs that match is the other model's own top neuron, the one patching chose there.")
