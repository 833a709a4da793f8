"""The study's claims as rules on numbers, and the verdict of each on a run.

Each :class:`Claim` names the finding it reads (recorded by the page that measures it, see
:mod:`helpers.book.findings`), states its criterion in words, and decides with a ``rule``: a
function of the run's values that returns a :class:`Verdict`. Where the study published the
numbers the rule needs, the same rule is applied to them, so the study's column is a verdict
too and not only a value.

Verdicts: ``holds``; ``does not hold``; ``undecided`` (an interval straddles the threshold);
``not applicable`` (with the reason); ``needs a GPT-2 Large run`` (the claim is about the
study's own neuron or tokens); ``not measured`` (the page that measures it did not run in this
build). On random weights (the rehearsal) every verdict is the untrained network's, and the
scorecard says so.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from helpers.core.stats import interval_cell, rank_correlation
from helpers.scan.statistics import MIN_BIN_COUNT
from helpers.methods.choice import STABLE
from helpers.paper import Study

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
NOT_APPLICABLE, NEEDS_STUDY_MODEL, NOT_MEASURED = "not applicable", "needs a GPT-2 Large run", "not measured"

AS_GOOD_AS_LAYER = 0.8  # one neuron recovers at least this share of its whole layer's recovery
RUNNER_UP_SHARE = 0.25  # ... while the next neuron recovers at most this share of the first's
STANDS_OUT = 2.0  # a layer stands out when it recovers at least twice the next layer
RISING = 0.8  # rank correlation of bin position and proportion for "rises with activation"
NULL_LEVEL = 0.95


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.status} ({self.reason})" if self.reason else self.status


# --- rules on numbers, each tested on planted values ---------------------------------------


def at_least(value: float, threshold: float, low: float | None = None, high: float | None = None, what: str = "the value") -> Verdict:
    """``value >= threshold``, decided by the interval ``[low, high]`` when there is one:
    holds when ``low`` clears the threshold, fails when ``high`` is below it, else undecided."""
    if low is None or high is None:
        status = HOLDS if value >= threshold else FAILS
        return Verdict(status, f"{what} {value:.3g} {'>=' if value >= threshold else '<'} {threshold:g}")
    if low >= threshold:
        return Verdict(HOLDS, f"{what}'s interval [{low:.3g}, {high:.3g}] lies above {threshold:g}")
    if high < threshold:
        return Verdict(FAILS, f"{what}'s interval [{low:.3g}, {high:.3g}] lies below {threshold:g}")
    return Verdict(UNDECIDED, f"{what}'s interval [{low:.3g}, {high:.3g}] contains {threshold:g}")


def stands_out(values: list[float], labels: list, factor: float = STANDS_OUT) -> Verdict:
    """The largest of ``values`` is at least ``factor`` times the second largest (and positive)."""
    if len(values) < 2:
        return Verdict(NOT_APPLICABLE, "fewer than two to compare")
    order = torch.tensor(values, dtype=torch.float64).argsort(descending=True, stable=True).tolist()
    first, second = values[order[0]], values[order[1]]
    reason = f"{labels[order[0]]} {first:.3f}, next {labels[order[1]]} {second:.3f}"
    return Verdict(HOLDS if first > 0 and first >= factor * max(second, 0.0) else FAILS, reason)


def outlier_threshold(n: int, level: float = NULL_LEVEL) -> float:
    """The z-score that the largest of ``n`` independent standard normal draws stays below with
    probability ``level``: the null for "one of n is far above the rest"."""
    if n < 1:
        raise ValueError(f"an outlier needs at least one value to stand out from, got n={n}")
    return float(torch.special.ndtri(torch.tensor(level, dtype=torch.float64) ** (1.0 / n)))


def is_outlier(value: float, mean: float, std: float, n: int, rank: int) -> Verdict:
    """First of ``n`` and further above the mean than the largest of ``n`` Gaussian draws with
    the same mean and sd would be (at :data:`NULL_LEVEL`)."""
    if std <= 0:
        return Verdict(NOT_APPLICABLE, "all values are equal")
    z, null = (value - mean) / std, outlier_threshold(n)
    reason = f"rank {rank} of {n:,}, z = {z:.1f} against {null:.1f} for the largest of {n:,} Gaussian draws"
    return Verdict(HOLDS if rank == 1 and z > null else FAILS, reason)


def rises(starts: list[float], proportions: list[float], counts: list[int] | None, min_count: int = MIN_BIN_COUNT) -> Verdict:
    """The proportion rises with the activation: over bins holding at least ``min_count`` tokens
    (all bins when counts are unknown), the tie-aware rank correlation of bin and proportion is at
    least :data:`RISING`, and the last such bin's proportion is above the first's."""
    kept = [i for i in range(len(starts)) if counts is None or counts[i] >= min_count]
    if len(kept) < 3:
        return Verdict(NOT_APPLICABLE, f"fewer than 3 bins hold {min_count} tokens")
    x = torch.tensor([starts[i] for i in kept], dtype=torch.float64)
    y = torch.tensor([proportions[i] for i in kept], dtype=torch.float64)
    rho = rank_correlation(x, y)
    if rho != rho:  # NaN: the proportion is the same in every bin
        return Verdict(FAILS, f"the proportion is {float(y[0]):.3g} in all {len(kept)} bins")
    status = HOLDS if rho >= RISING and y[-1] > y[0] else FAILS
    scope = f"bins of at least {min_count} tokens" if counts is not None else "bins"
    return Verdict(status, f"rank correlation {rho:.2f} over {len(kept)} {scope}; {float(y[0]):.3f} in the first, {float(y[-1]):.3f} in the last")


def below(value: float, threshold: float, what: str) -> Verdict:
    return Verdict(HOLDS if value < threshold else FAILS, f"{what} {value:.3g} {'<' if value < threshold else '>='} {threshold:g}")


# --- the claims ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One claim of the study (or request of its reviewers) and how a run decides it."""

    key: str
    finding: str  # the recorded finding it reads
    claim: str
    criterion: str
    rule: Callable[[dict], Verdict]
    shown: Callable[[dict], str]  # this run's value, as text
    study: Callable[[Study], str] = lambda s: "not reported"
    study_rule: Callable[[Study], Verdict] | None = None


def _interval(v: dict, name: str) -> str:
    return interval_cell(v[name], v.get(f"{name}_low"), v.get(f"{name}_high"))


def _lens_rule(v: dict) -> Verdict:
    wanted = f"MLP {v['neuron_layer']}"
    return Verdict(HOLDS if v["step_sublayer"] == wanted else FAILS, f"largest step after {v['step_sublayer']}, the neuron is in layer {v['neuron_layer']}")


def _study_lens(s: Study) -> Verdict:
    from helpers.methods.logit_lens import biggest_step, sublayer_after

    step_from = biggest_step(s.logit_lens)[0]
    return _lens_rule({"step_sublayer": sublayer_after(step_from), "neuron_layer": s.neuron.layer})


def _one_neuron(v: dict) -> Verdict:
    if v["whole"] <= 0:
        return Verdict(NOT_APPLICABLE, f"the whole layer recovers {v['whole']:.3f}: nothing to match")
    share = v["top"] / v["whole"]
    first = at_least(share, AS_GOOD_AS_LAYER, what="its share of the whole layer")
    runner_up = v["second"] <= RUNNER_UP_SHARE * v["top"]
    reason = f"{v['neuron']} recovers {v['top']:.3f}, the layer {v['whole']:.3f} (share {share:.2f}), the next neuron {v['second']:.3f}"
    return Verdict(HOLDS if first.status == HOLDS and runner_up else FAILS, reason)


def _study_one_neuron(s: Study) -> Verdict:
    return _one_neuron({"neuron": str(s.neuron), "top": s.top_neurons[0][1], "second": s.top_neurons[1][1], "whole": s.whole_layer_last})


def _stable(v: dict) -> Verdict:
    held = f"on {v['n_evaluation']} held-out pairs it ranks {v['evaluation_rank']} in its layer"
    if v["stability"] is None:
        return Verdict(NOT_APPLICABLE, f"the neuron was not chosen on selection pairs; {held}")
    verdict = at_least(v["stability"], STABLE, what="share of resamples choosing it")
    return Verdict(verdict.status if v["evaluation_rank"] == 1 else FAILS, f"{verdict.reason}; {held}")


def _under(v: dict) -> Verdict:
    if v["actual"] == 0:
        return Verdict(NOT_APPLICABLE, "the token never comes next in the corpus")
    return below(v["predicted"] / v["actual"], 1.0, f"top-1 {v['predicted']:,} / actual {v['actual']:,} =")


def _kinds(v: dict) -> Verdict:
    kinds = v["kinds"]
    lows = {k: kinds[k]["mean_low"] for k in kinds}
    spread = f"{min(kinds[k]['mean'] for k in kinds):.3f} to {max(kinds[k]['mean'] for k in kinds):.3f} across {', '.join(kinds)}"
    if all(low is not None and low > 0 for low in lows.values()):
        return Verdict(HOLDS, f"every kind's interval lies above 0; means {spread}")
    return Verdict(FAILS, f"not every kind's interval lies above 0; means {spread}")


def _direct(v: dict) -> Verdict:
    return at_least(v["direct_share"], 0.5, what="direct effect ÷ total effect")


def _reading(v: dict) -> Verdict:
    reading = v["reading"]
    means = f"{v['before_target']:.3f} before the target, {v['before_vowel']:.3f} before a bare vowel-sound word, {v['before_consonant']:.3f} before a consonant-sound word"
    status = {"article": HOLDS, "vowel": FAILS, "both": FAILS, "undecided": UNDECIDED}.get(reading, NOT_APPLICABLE)
    return Verdict(status, f"{reading} reading: {means}")


def poisson_max_threshold(n_items: int, n_bins: int, level: float = NULL_LEVEL) -> int:
    """The count that the fullest of ``n_bins`` bins stays at or below with probability
    ``level`` when ``n_items`` fall into them at random (Poisson bins): the null for hubs."""
    rate = torch.tensor(n_items / n_bins, dtype=torch.float64)
    k = 0
    while float(torch.special.gammaincc(torch.tensor(k + 1.0, dtype=torch.float64), rate)) ** n_bins < level:
        k += 1
    return k


def _hubs(v: dict) -> Verdict:
    null = poisson_max_threshold(v["d_vocab"], v["n_neurons"])
    status = HOLDS if v["largest"] > null else FAILS
    return Verdict(status, f"{v['neuron']} is the top neuron of {v['largest']} tokens; at random the fullest of {v['n_neurons']:,} neurons "
                           f"tops at most {null} of {v['d_vocab']:,} tokens (95%)")


def _curve_below(v: dict) -> Verdict:
    if v["best"] is None:
        return Verdict(NOT_APPLICABLE, "no bin of the curve holds 20 tokens")
    return below(v["best"], 0.5, f"{v['neuron']}'s best top-1 share for {v['token']}")


def _mutual(v: dict) -> Verdict:
    best = {k: b for k, b in v["best"].items() if b is not None}
    if not best:
        return Verdict(NOT_APPLICABLE, "no pair's curve has a bin of 20 tokens")
    clean = sum(b >= 0.9 for b in best.values())
    return Verdict(HOLDS if clean == len(best) else FAILS, f"{clean} of {len(best)} curves reach 0.9 in a bin of 20+ tokens")


def _drives(v: dict) -> Verdict:
    return at_least(v["share"], 0.25, v["low"], v["high"], what=f"{v['head']}'s share of the activation gap")


def _ordinary(v: dict) -> Verdict:
    if v["low"] is None:
        return Verdict(NOT_APPLICABLE, f"{v['n']} tokens before the target: too few for an interval")
    return at_least(v["mean"], 0.0, v["low"], v["high"], what="the loss change before the target (nats)")


def _sweep(v: dict) -> Verdict:
    if v["n_measured"] == 0:
        return Verdict(NOT_APPLICABLE, "no model was measured")
    return Verdict(HOLDS if v["n_single"] > 0 else FAILS,
                   f"{v['n_single']} of {v['n_measured']} models have a stably chosen neuron about as good as its layer on held-out pairs")


CLAIMS: tuple[Claim, ...] = (
    Claim("prompt", "prompt", "The study's prompt makes the target the top prediction.",
          "the target is the clean prompt's top-1 token",
          lambda v: Verdict(HOLDS if v["top_clean"] == v["target"] else FAILS, f"top-1 {v['top_clean']}, P = {v['p_target_clean']:.3f}"),
          lambda v: f"P({v['target']}) = {v['p_target_clean']:.3f}, top-1 {v['top_clean']}",
          study=lambda s: f"P(' an') = {s.p_target_clean:.2f}",
          study_rule=lambda s: Verdict(HOLDS if s.p_target_clean > 0.5 else UNDECIDED, f"P = {s.p_target_clean:.2f} > 0.5, so it is the top-1")),
    Claim("first_sentence", "prompt", "The first sentence is needed: alone, the second does not predict the target.",
          "the second sentence alone does not have the target as its top-1 token",
          lambda v: Verdict(HOLDS if v["top_alone"] != v["target"] else FAILS, f"alone, top-1 {v['top_alone']} (P(target) = {v['p_target_alone']:.3f})"),
          lambda v: f"alone: top-1 {v['top_alone']}",
          study=lambda s: "alone: tokens like ' up' (stated, no number)"),
    Claim("lens_jump", "lens", "The logit lens jumps right after the neuron's MLP layer.",
          "the largest step between consecutive points of the lens follows the neuron's layer's MLP",
          _lens_rule, lambda v: f"{v['step_before']:.2f} -> {v['step_after']:.2f} after {v['step_sublayer']}",
          study=lambda s: "-0.46 -> 1.09 after MLP 31", study_rule=_study_lens),
    Claim("layer_patching", "layer_patching", "One MLP layer stands out at the last position in layer patching.",
          f"the best MLP layer at the last position recovers at least {STANDS_OUT:g} times the next one",
          lambda v: stands_out(v["mlp_last"], [f"MLP {i}" for i in range(len(v["mlp_last"]))]),
          lambda v: f"MLP {max(range(len(v['mlp_last'])), key=v['mlp_last'].__getitem__)} recovers {max(v['mlp_last']):.3f}",
          study=lambda s: f"MLP {s.patched_layer} recovers {s.whole_layer_last:.3f}",
          study_rule=lambda s: stands_out([row[-1] for row in s.patch_maps["mlp_out"]], [f"MLP {i}" for i in range(len(s.patch_maps["mlp_out"]))])),
    Claim("one_neuron", "neuron_patching", "One neuron is about as good as its whole layer.",
          f"the top neuron recovers at least {AS_GOOD_AS_LAYER:g} of the whole layer's recovery and the next at most {RUNNER_UP_SHARE:g} of the top's",
          _one_neuron, lambda v: f"{v['neuron']} {v['top']:.3f}, layer {v['whole']:.3f}, next {v['second']:.3f}",
          study=lambda s: f"{s.neuron} {s.top_neurons[0][1]:.3f}, layer {s.whole_layer_last:.3f}, next {s.top_neurons[1][1]:.3f}",
          study_rule=_study_one_neuron),
    Claim("stable_choice", "held_out", "The neuron is a stable choice that holds on pairs it was not chosen on.",
          f"at least {STABLE:g} of bootstrap resamples of the selection pairs choose it, and it ranks first on held-out pairs",
          _stable, lambda v: f"{v['neuron']}: stability {v['stability']:.2f}; held-out rank {v['evaluation_rank']}, recovery {_interval(v, 'evaluation')}",
          study=lambda s: "chosen on one pair; not checked"),
    Claim("congruence_outlier", "congruence", "The neuron's congruence with the target is an outlier over all neurons.",
          "it ranks first among all neurons and beyond the largest of as many Gaussian draws (95%)",
          lambda v: is_outlier(v["value"], v["mean"], v["std"], v["n"], v["rank"]),
          lambda v: f"{v['value']:.3f}, rank {v['rank']} of {v['n']:,}",
          study=lambda s: f"{s.congruence.top[0][1]:.2f} for ' an' (W_E)"),
    Claim("rising_share", "correlation", "The target's top-1 share rises with the neuron's activation.",
          f"rank correlation of bin and proportion at least {RISING:g} over bins of at least {MIN_BIN_COUNT} tokens, last above first",
          lambda v: rises(v["bin_start"], v["proportion"], v["count"]),
          lambda v: f"{len(v['bin_start'])} bins, largest proportion {max(v['proportion']):.3f}",
          study=lambda s: f"{len(s.an_curve)} bins, largest {max(p for _, p in s.an_curve):.3f}",
          study_rule=lambda s: rises([b for b, _ in s.an_curve], [p for _, p in s.an_curve], None)),
    Claim("under_predicts", "correlation", "The model under-predicts the target.",
          "the target is the top-1 prediction less often than it actually comes next",
          _under, lambda v: f"{v['predicted']:,} top-1 / {v['actual']:,} next",
          study=lambda s: f"{s.an_counts.predicted:,} / {s.an_counts.actual:,}",
          study_rule=lambda s: _under({"predicted": s.an_counts.predicted, "actual": s.an_counts.actual})),
    Claim("though", "though", "A neuron congruent with one token can still predict others: the ' though' neuron's curve is messy.",
          "the shared token's most congruent neuron is its top-1 prediction in under half of the tokens of its best bin (bins of 20+ tokens)",
          _curve_below, lambda v: f"{v['neuron']}: best share {v['best']:.3f}" if v["best"] is not None else v["neuron"],
          study=lambda s: f"{s.though_neuron}: best bin {s.though_best_bin:.2f}",
          study_rule=lambda s: below(s.though_best_bin, 0.5, f"{s.though_neuron}'s best bin")),
    Claim("mutual_curves", "mutual", "The top mutual token-neuron pairs have clean dataset curves.",
          "every shown pair's curve reaches a top-1 share of 0.9 in some bin of 20+ tokens",
          _mutual, lambda v: ", ".join(f"{k} {b:.2f}" if b is not None else f"{k} -" for k, b in v["best"].items()),
          study=lambda s: "stated, no numbers"),
    Claim("hubness", "hubs", "Footnote: many tokens share one most-congruent neuron (hubness).",
          "the largest hub tops more tokens than the fullest neuron would under random assignment (95%)",
          _hubs, lambda v: f"{v['neuron']} tops {v['largest']} tokens",
          study=lambda s: f"{s.hub}, congruence about {s.glitch_tokens[0].gap:.1f}"),
    Claim("ablation_kinds", "ablation", "Reviewers: the neuron matters under every kind of ablation, not only negation.",
          "the drop in the logit difference (share of the clean-corrupted gap) has an interval above 0 for zero, mean, resample and negation",
          _kinds, lambda v: ", ".join(f"{k} {_interval(d, 'mean')}" for k, d in v["kinds"].items()),
          study=lambda s: "negation only"),
    Claim("direct_effect", "effects", "Reviewers: how much of the effect is direct.",
          "the direct effect is at least half of the total effect",
          _direct, lambda v: f"direct ÷ total {v['direct_share']:.3f}",
          study=lambda s: "not measured"),
    Claim("ordinary_text", "ordinary_text", "Reviewers: the neuron matters on ordinary text, not only on the chosen prompts.",
          "mean-ablating it everywhere raises the next-token loss before the target, interval above 0",
          _ordinary, lambda v: f"{interval_cell(v['mean'], v['low'], v['high'])} nats over {v['n']:,} tokens",
          study=lambda s: "top examples only"),
    Claim("random_text", "random_text", "Reviewers: on random text the neuron stays quiet.",
          "at most 1% of uniformly drawn tokens reach the neuron's mean activation before the target in the corpus",
          lambda v: Verdict(HOLDS if v["share"] <= 0.01 else FAILS,
                            f"{v['share']:.2%} of random tokens reach {v['level']:.3f} ({'at most' if v['share'] <= 0.01 else 'more than'} 1%)"),
          lambda v: f"{v['share']:.2%} of {v['tokens']:,} tokens reach {v['level']:.3f}",
          study=lambda s: "not measured"),
    Claim("drives", "drives", "Reviewers: what drives the neuron; one head moves the noun to it.",
          "the top head by patching carries at least a quarter of the neuron's activation gap, interval above it",
          _drives, lambda v: f"{v['head']}: share {v['share']:.3f}",
          study=lambda s: "L26H1 named, not measured"),
    Claim("reading", "reading", "Reviewers: the neuron predicts ' an' rather than encoding a vowel-initial next word.",
          "its activation is higher before the target than before a vowel-sound word without it, and no higher there than before a consonant-sound word",
          _reading, lambda v: f"{v['reading']} reading",
          study=lambda s: "not tested"),
    Claim("other_models", "sweep", "Reviewers: the finding replicates in other models.",
          f"at least one measured model has a stably chosen neuron recovering at least {AS_GOOD_AS_LAYER:g} of its layer's recovery on held-out pairs",
          _sweep, lambda v: f"{v['n_single']} of {v['n_measured']}",
          study=lambda s: "GPT-2 Large only"),
)


def verdict_of(claim: Claim, records: dict[str, dict]) -> Verdict:
    """The claim's verdict from the recorded findings (``{finding: record}``)."""
    record = records.get(claim.finding)
    if record is None:
        return Verdict(NOT_MEASURED, "its page did not record it in this build")
    values = record["findings"][claim.finding]
    if values is None:
        return Verdict(NOT_APPLICABLE, "the page could not measure it on this model")
    if isinstance(values, dict) and "not_applicable" in values:
        return Verdict(NOT_APPLICABLE, values["not_applicable"])
    return claim.rule(values)


def verdict_lines(claims, records: dict[str, dict], study: Study) -> str:
    """Markdown: one line per claim, its verdict on this run and, where the study's numbers
    allow the same rule, on the study."""
    lines = []
    for claim in claims:
        run = verdict_of(claim, records)
        line = f"- **{claim.claim}** This run: *{run.status}* ({run.reason})."
        if claim.study_rule is not None:
            line += f" The study, GPT-2 Large: *{claim.study_rule(study).status}*."
        lines.append(line)
    return "\n".join(lines)


def judged(claim: Claim, records: dict[str, dict]) -> tuple[Verdict, str, dict | None]:
    """The claim's verdict on ``records``, the value it shows, and the record it read."""
    verdict = verdict_of(claim, records)
    record = records.get(claim.finding)
    values = record["findings"][claim.finding] if record else None
    return verdict, claim.shown(values) if verdict.status not in (NOT_MEASURED, NOT_APPLICABLE) else "", record


def scorecard(records: dict[str, dict], study: Study, model_name: str, stored: dict | None = None) -> "pd.DataFrame":
    """One row per claim: criterion, the study's value and verdict, this run's value and
    verdict, and the page that measured it. Records left by a run of another model count as
    not measured. ``stored``: a GPT-2 Large results file of this book
    (:mod:`helpers.book.results`), judged by the same rules in two more columns."""
    import pandas as pd

    mine = {k: r for k, r in records.items() if r["model"] == model_name}
    rows = []
    for claim in CLAIMS:
        run, shown, record = judged(claim, mine)
        study_verdict = claim.study_rule(study) if claim.study_rule else None
        row = {
            "claim": claim.claim, "criterion": claim.criterion,
            "the study, GPT-2 Large": claim.study(study), "study's verdict": study_verdict.status if study_verdict else "no numbers to apply the rule to",
            "this run": shown, "verdict": run.status, "why": run.reason, "page": record["page"] if record else "",
        }
        if stored is not None:
            kept, kept_shown, _ = judged(claim, stored["findings"])
            row.update({"stored": kept_shown, "stored verdict": kept.status})
        rows.append(row)
    return pd.DataFrame(rows)


def scorecard_view(table: "pd.DataFrame", model_name: str, stored_title: str = "") -> "pd.DataFrame":
    """The scorecard as the page shows it: four columns, the rule under each claim, the
    study's verdict under its value, the reason and the measuring page under each verdict;
    with ``stored_title``, a stored GPT-2 Large run's value and verdict after the study's."""
    import html

    import pandas as pd

    def small(text: str) -> str:
        return f"<br><small>{html.escape(text)}</small>" if text else ""

    stored = {stored_title: [f"{html.escape(v)}<br><b>{html.escape(st)}</b>" for v, st in zip(table["stored"], table["stored verdict"])]} if stored_title else {}
    return pd.DataFrame({
        "claim": [f"{html.escape(c)}{small('Rule: ' + r)}" for c, r in zip(table.claim, table.criterion)],
        "the study, GPT-2 Large": [f"{html.escape(v)}{small(st)}" for v, st in zip(table["the study, GPT-2 Large"], table["study's verdict"])],
        **stored,
        f"this run, {model_name}": [html.escape(v) for v in table["this run"]],
        "verdict": [f"<b>{html.escape(v)}</b>{small(w)}" + (f'<br><small><a href="{p}.html">{p}</a></small>' if p else "")
                    for v, w, p in zip(table.verdict, table.why, table.page)],
    })


def scorecard_summary(table: "pd.DataFrame", model_name: str) -> dict:
    """The sentences under the scorecard: how many claims hold, fail, stay undecided or could
    not be decided on this run, and whether the run's weights are trained."""
    from helpers.core.rehearsal import is_rehearsal

    counts = table.verdict.value_counts()
    parts = [f"{counts.get(status, 0)} {status}" for status in (HOLDS, FAILS, UNDECIDED, NOT_APPLICABLE, NEEDS_STUDY_MODEL, NOT_MEASURED)
             if counts.get(status, 0)]
    sentence = f"Of {len(table)} claims on {model_name}: " + ", ".join(parts) + "."
    weights = (
        "These weights are random (the GPT-2 Large-shaped rehearsal): every verdict is an untrained network's and says nothing of GPT-2 Large's learned behaviour."
        if is_rehearsal(model_name) else
        "The verdicts are this model's; the study's column is GPT-2 Large's."
    )
    return dict(summary_sentence=sentence, weights_sentence=weights, n_claims=len(table), n_holds=int(counts.get(HOLDS, 0)))
