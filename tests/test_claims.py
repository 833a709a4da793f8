"""The scorecard's rules on planted numbers, the findings round trip through a notebook, and
the statistics that broke before: tied ranks, a one-token bin, a chance-level outlier."""
import json
import math

import nbformat
import pytest
import torch

from helpers.book import claims
from helpers.book.claims import (
    CLAIMS, FAILS, HOLDS, NOT_APPLICABLE, NOT_MEASURED, UNDECIDED, at_least, is_outlier, outlier_threshold, rises, scorecard,
    scorecard_summary, stands_out, verdict_of,
)
from helpers.book.findings import FINDINGS_MIME, as_json, read_findings
from helpers.core.names import Neuron
from helpers.core.stats import average_ranks, rank_correlation
from helpers.paper import study


def test_at_least_decides_by_the_interval():
    assert at_least(0.9, 0.8, 0.85, 0.95).status == HOLDS
    assert at_least(0.7, 0.8, 0.6, 0.79).status == FAILS
    assert at_least(0.81, 0.8, 0.7, 0.9).status == UNDECIDED, "an interval that contains the threshold decides nothing"
    assert at_least(0.81, 0.8).status == HOLDS and "0.81" in at_least(0.81, 0.8).reason


def test_stands_out_needs_twice_the_next():
    assert stands_out([0.1, 0.5, 0.2], ["a", "b", "c"]).status == HOLDS
    assert stands_out([0.1, 0.5, 0.3], ["a", "b", "c"]).status == FAILS
    assert stands_out([-0.1, -0.5], ["a", "b"]).status == FAILS, "a best value below zero stands out from nothing"
    assert stands_out([1.0], ["a"]).status == NOT_APPLICABLE


def test_the_outlier_null_grows_with_the_number_of_draws():
    """The 95th percentile of the largest of n standard normals: 1.645 for one draw, about
    4.4 for 184,320 (GPT-2 Large's neurons), measured here against sampled maxima."""
    assert outlier_threshold(1) == pytest.approx(1.6449, abs=1e-3)
    generator = torch.Generator().manual_seed(0)
    maxima = torch.randn(4000, 500, generator=generator).max(1).values
    assert float((maxima < outlier_threshold(500)).double().mean()) == pytest.approx(0.95, abs=0.015)
    assert outlier_threshold(184_320) > 4.3


def test_a_chance_level_value_is_not_an_outlier():
    """Rank 1 among 2,048 at z = 3.5 is what the largest of 2,048 random draws reaches."""
    assert is_outlier(3.5, 0.0, 1.0, 2048, rank=1).status == FAILS
    assert is_outlier(8.0, 0.0, 1.0, 2048, rank=1).status == HOLDS
    assert is_outlier(8.0, 0.0, 1.0, 2048, rank=2).status == FAILS
    assert is_outlier(1.0, 1.0, 0.0, 10, rank=1).status == NOT_APPLICABLE


def test_rises_ignores_bins_of_a_few_tokens():
    """The last two bins hold one token each and 0/1 proportions: they decide nothing."""
    starts = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    proportions = [0.1, 0.2, 0.3, 0.4, 0.0, 1.0]
    counts = [500, 400, 300, 100, 1, 1]
    verdict = rises(starts, proportions, counts)
    assert verdict.status == HOLDS and "4 bins" in verdict.reason
    assert rises(starts, [0.4, 0.3, 0.2, 0.1, 0.5, 0.5], counts).status == FAILS
    assert rises(starts, proportions, [5] * 6).status == NOT_APPLICABLE
    assert rises(starts[:4], [0.2] * 4, counts[:4]).status == FAILS


def test_rank_correlation_shares_tied_ranks():
    """Four tied values: average ranks give 12.5 / sqrt(12.5 * 17.5) = 0.845 (worked by hand);
    breaking the tie by position, as page 04 once did, gives 7.5 / 17.5 = 0.429."""
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    x, y = torch.tensor([1.0, 1, 1, 1, 2, 3]), torch.tensor([4.0, 3, 2, 1, 5, 6])
    assert rank_correlation(x, y) == pytest.approx(12.5 / math.sqrt(12.5 * 17.5), abs=1e-12)
    by_position = torch.corrcoef(torch.stack([x.argsort(stable=True).argsort().double(), y.argsort().argsort().double()]))[0, 1]
    assert float(by_position) == pytest.approx(7.5 / 17.5, abs=1e-6)
    assert math.isnan(rank_correlation(torch.ones(5), torch.arange(5.0)))
    with pytest.raises(ValueError, match="at least 2 values"):
        rank_correlation(torch.ones(1), torch.ones(1))


def test_the_study_verdicts_follow_from_its_own_numbers():
    s = study()
    by_key = {c.key: c for c in CLAIMS}
    assert by_key["one_neuron"].study_rule(s).status == HOLDS  # 0.503 against 0.492, next 0.008
    assert by_key["layer_patching"].study_rule(s).status == HOLDS  # MLP 31 0.492, next MLP far below
    assert by_key["lens_jump"].study_rule(s).status == HOLDS  # -0.46 -> 1.09 after MLP 31
    assert by_key["under_predicts"].study_rule(s).status == HOLDS  # 1,471 < 12,389
    assert by_key["rising_share"].study_rule(s).status == HOLDS
    assert by_key["though"].study_rule(s).status == HOLDS  # best bin 0.33 < 0.5


def _record(findings, model="m"):
    return {"model": model, "on_paper_model": False, "findings": as_json(findings), "page": "p", "parameters": {}}


def test_verdicts_on_planted_findings():
    one = next(c for c in CLAIMS if c.key == "one_neuron")
    records = {"neuron_patching": _record({"neuron_patching": {"neuron": Neuron(3, 50), "top": 0.177, "second": 0.155, "whole": 0.448}})}
    assert verdict_of(one, records).status == FAILS
    records = {"neuron_patching": _record({"neuron_patching": {"neuron": "L3N50", "top": 0.45, "second": 0.01, "whole": 0.448}})}
    assert verdict_of(one, records).status == HOLDS
    assert verdict_of(one, {}).status == NOT_MEASURED
    kinds = next(c for c in CLAIMS if c.key == "ablation_kinds")
    planted = {k: {"mean": m, "mean_low": lo, "mean_high": hi, "low": lo} for k, m, lo, hi in
               [("zero", 0.1, 0.09, 0.11), ("mean", 0.1, -0.01, 0.2)]}
    assert verdict_of(kinds, {"ablation": _record({"ablation": {"kinds": planted}})}).status == FAILS


def test_the_scorecard_ignores_findings_of_another_model():
    records = {"prompt": _record({"prompt": {"target": "' an'", "top_clean": "' an'", "p_target_clean": 0.9,
                                             "top_alone": "' a'", "p_target_alone": 0.1}}, model="other")}
    table = scorecard(records, study(), "mine")
    assert set(table.verdict) == {NOT_MEASURED}
    table = scorecard({k: {**r, "model": "mine"} for k, r in records.items()}, study(), "mine")
    assert table.set_index(table.claim.str[:20]).verdict.to_dict()["The study's prompt m"] == HOLDS
    summary = scorecard_summary(table, "mine")
    assert summary["n_claims"] == len(CLAIMS) and summary["n_holds"] == 2
    assert f"Of {len(CLAIMS)} claims" in summary["summary_sentence"]


def test_findings_are_read_back_from_an_executed_notebook(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["an_neuron"] = {"parameters": {"context": {"model_name": "m"}}}
    cell = nbformat.v4.new_code_cell("record_findings(...)")
    record = {"model": "m", "on_paper_model": False, "findings": {"prompt": {"x": 1}}}
    cell.outputs = [nbformat.v4.new_output("display_data", data={FINDINGS_MIME: record})]
    notebook.cells.append(cell)
    nbformat.write(notebook, tmp_path / "01_prompt.ipynb")
    found = read_findings(tmp_path)
    assert found["prompt"]["page"] == "01_prompt" and found["prompt"]["findings"]["prompt"] == {"x": 1}
    assert found["prompt"]["parameters"]["context"]["model_name"] == "m"


def test_as_json_turns_what_pages_hold_into_json():
    value = as_json({"n": Neuron(1, 2), "t": torch.tensor([1.0, float("nan")]), "x": torch.tensor(3).item(), "f": float("inf")})
    assert value == {"n": "L1N2", "t": [1.0, None], "x": 3, "f": None}
    json.dumps(value, allow_nan=False)


def test_every_claim_reads_a_finding_some_page_records():
    """A claim whose finding no page records would say 'not measured' forever."""
    from pathlib import Path

    import ast

    recorded = set()
    for source in (Path(__file__).parents[1] / "book").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "record_findings":
                recorded |= {k.arg for k in node.keywords}
    missing = {c.finding for c in CLAIMS} - recorded
    assert not missing, missing


def test_the_study_is_beside_every_run_labelled_by_model(monkeypatch):
    """Off GPT-2 Large the table is shown too (it once printed only a placeholder line), its
    columns named by model, with a line saying the columns are two models."""
    from types import SimpleNamespace

    from helpers.book import display as display_module
    from helpers.book.results import BESIDE_MIME

    shown = []
    monkeypatch.setattr(display_module, "display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setattr(display_module, "stored_study_results", lambda: None)
    page = SimpleNamespace(on_paper_model=False, model_name="toy", paper=study(), choice=None)
    display_module.paper_beside(page, [("P(' an')", 0.64, 0.91)])
    texts = [getattr(o, "data", "") for o in shown]
    assert any("another model" in t for t in texts) and not any("appear here" in t for t in texts)
    bundle = shown[-1]
    html = bundle["text/html"]
    assert html.index("the study, GPT-2 Large") < html.index("this run, toy") and "0.64" in html and "0.91" in html
    assert bundle[BESIDE_MIME]["rows"] == [["P(' an')", "0.91"]], "this run's cells go out as data for the results file"


def test_the_hub_null_is_the_fullest_of_random_bins():
    """The 95th percentile of the fullest bin when 2,000 items fall into 500 bins at random,
    measured against simulated throws."""
    from helpers.book.claims import poisson_max_threshold

    generator = torch.Generator().manual_seed(0)
    fullest = torch.stack([torch.bincount(torch.randint(0, 500, (2000,), generator=generator), minlength=500).max() for _ in range(400)])
    threshold = poisson_max_threshold(2000, 500)
    assert float((fullest <= threshold).double().mean()) >= 0.93 and float((fullest <= threshold - 1).double().mean()) < 0.95


def test_the_new_rows_decide_on_planted_findings():
    def verdict(key, values):
        claim = next(c for c in CLAIMS if c.key == key)
        return verdict_of(claim, {claim.finding: _record({claim.finding: values})}).status

    assert verdict("hubness", {"largest": 40, "neuron": "L3N1", "d_vocab": 2000, "n_neurons": 500}) == HOLDS
    assert verdict("hubness", {"largest": 9, "neuron": "L3N1", "d_vocab": 2000, "n_neurons": 500}) == FAILS
    assert verdict("mutual_curves", {"best": {"x": 0.95, "y": 0.97}}) == HOLDS
    assert verdict("mutual_curves", {"best": {"x": 0.95, "y": 0.4}}) == FAILS
    assert verdict("mutual_curves", {"best": {"x": None}}) == NOT_APPLICABLE
    assert verdict("though", {"token": "' though'", "neuron": "L1N1", "best": 0.33, "predicted": 2, "actual": 9}) == HOLDS
    assert verdict("drives", {"head": "L3H1", "share": 0.59, "low": 0.5, "high": 0.7}) == HOLDS
    assert verdict("drives", {"head": "L3H1", "share": 0.3, "low": 0.1, "high": 0.5}) == UNDECIDED
    assert verdict("ordinary_text", {"mean": 0.01, "low": 0.005, "high": 0.02, "n": 900}) == HOLDS
    assert verdict("ordinary_text", {"mean": 0.01, "low": None, "high": None, "n": 5}) == NOT_APPLICABLE
    assert verdict("random_text", {"share": 0.004, "level": 2.9, "tokens": 4032}) == HOLDS
    assert verdict("random_text", {"share": 0.05, "level": 2.9, "tokens": 4032}) == FAILS
    assert verdict("reading", {"reading": "article", "before_target": 3, "before_vowel": 0, "before_consonant": 0}) == HOLDS
    assert verdict("reading", {"reading": "both", "before_target": 3, "before_vowel": 1, "before_consonant": 0}) == FAILS
    stable = {"neuron": "L3N50", "stability": 0.98, "n_selection": 16, "n_evaluation": 47, "evaluation": 0.17, "evaluation_low": 0.16,
              "evaluation_high": 0.18, "evaluation_rank": 1, "runner_up": 0.01, "whole": 0.4}
    assert verdict("stable_choice", stable) == HOLDS
    assert verdict("stable_choice", {**stable, "evaluation_rank": 2}) == FAILS
    assert verdict("stable_choice", {**stable, "stability": 0.5}) == FAILS
    assert verdict("stable_choice", {**stable, "stability": None}) == NOT_APPLICABLE


def test_the_shown_values_carry_their_intervals_and_tokens_once_quoted():
    by_key = {c.key: c for c in CLAIMS}
    assert by_key["ordinary_text"].shown({"mean": 0.012, "low": 0.009, "high": 0.015, "n": 969}) == "0.012 [0.009, 0.015] nats over 969 tokens"
    assert by_key["ordinary_text"].shown({"mean": 0.012, "low": None, "high": None, "n": 9}) == "0.012 (no interval) nats over 9 tokens"
    prompt = {"target": "' an'", "top_clean": "' an'", "p_target_clean": 0.9, "top_alone": "' a'", "p_target_alone": 0.1}
    assert by_key["prompt"].shown(prompt) == "P(' an') = 0.900, top-1 ' an'"
