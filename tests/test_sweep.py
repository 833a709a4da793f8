"""The sweep over models: each number against a slow reference, planted concentration, and
models that cannot be measured marked in the table while the others run."""
import math

import pytest
import torch

from helpers.core.models import ModelUnavailable, random_model
from helpers.core.prompts import logit_diff, make_contrast
from helpers.methods.effects import neuron_effects
from helpers.methods.neuron_patching import post_hook
from helpers.methods.reference import naive_neuron_patching
from helpers.methods.choice import choose_neuron
from helpers.methods.prompt_sets import selection_and_evaluation, study_like_pairs
from helpers.core.names import Neuron
from helpers.methods.sweep import joint_recovery, logit_effect_similarity, neurons_to_half, sweep, sweep_model
from support import CLEAN, CORRUPTED, PLANTED, mlp_parameters, plant

N_PAIRS = 4


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=2, weight_scale=8.0)


@pytest.fixture(scope="module")
def row(model, tmp_path_factory):
    return sweep_model(model, n_pairs=N_PAIRS, max_neurons=None, choice_cache=tmp_path_factory.mktemp("choices"))


def naive_joint(model, pairs, layer, neurons) -> torch.Tensor:
    """One hooked pass per pair with ``neurons`` restored from the clean run at every position."""
    out = []
    for i in range(pairs.n_pairs):
        clean, corrupted = pairs.clean[i : i + 1], pairs.corrupted[i : i + 1]
        with torch.no_grad():
            _, cache = model.run_with_cache(clean, names_filter=post_hook(layer))

            def restore(act, hook):
                act = act.clone()
                act[..., neurons] = cache[post_hook(layer)][..., neurons]
                return act

            c, k = (logit_diff(model(t), pairs.target, pairs.other) for t in (clean, corrupted))
            patched = logit_diff(model.run_with_hooks(corrupted, fwd_hooks=[(post_hook(layer), restore)]), pairs.target, pairs.other)
        out.append(((patched - k) / (c - k)).item())
    return torch.tensor(out)


def test_joint_recovery_equals_one_hooked_pass_per_set_and_pair(model):
    pairs = study_like_pairs(model, N_PAIRS)
    sets = [[0], [3, 17, 40], list(range(48)), []]
    masks = torch.zeros(len(sets), 48)
    for r, neurons in enumerate(sets):
        masks[r, neurons] = 1
    got = joint_recovery(model, pairs, 1, masks, max_rows=5)  # several passes
    for r, neurons in enumerate(sets):
        torch.testing.assert_close(got[r], naive_joint(model, pairs, 1, neurons), atol=2e-4, rtol=0)
    torch.testing.assert_close(got[3], torch.zeros(N_PAIRS), atol=1e-5, rtol=0)  # nothing restored, nothing recovered


def test_neurons_to_half_is_the_first_k_of_the_slow_curve(model):
    pairs = study_like_pairs(model, N_PAIRS)
    order = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    k, whole, curve = neurons_to_half(model, pairs, 2, order, max_neurons=None, chunk=5)
    whole_slow = naive_joint(model, pairs, 2, list(range(48))).mean()
    assert whole == pytest.approx(whole_slow.item(), abs=2e-4)
    slow = torch.stack([naive_joint(model, pairs, 2, order[:n].tolist()).mean() for n in range(1, k + 1)])
    assert slow[-1] >= whole_slow / 2 and (slow[:-1] < whole_slow / 2).all(), "k is the first count that reaches half"
    torch.testing.assert_close(curve, slow.float(), atol=2e-4, rtol=0)
    if k > 1:
        assert neurons_to_half(model, pairs, 2, order, max_neurons=k - 1)[0] is None


@pytest.mark.parametrize("sharing, expected", [(1, 1), (3, 2)])
def test_planted_neurons_set_the_concentration(sharing, expected):
    """One planted neuron carries the layer (k = 1); three neurons sharing its write equally
    need two of them to reach half (one third is short of it, two thirds is past it). The
    write is made small beside the residual stream, so that the final norm keeps it linear."""
    model = random_model(n_layers=4, d_model=32, d_mlp=64, n_heads=4, seed=3)
    contrast = make_contrast(model, CLEAN, CORRUPTED)
    shares = [PLANTED.index + i for i in range(sharing)]
    for index in shares:
        plant(model, contrast, type(PLANTED)(PLANTED.layer, index))
    with torch.no_grad():
        W_out = mlp_parameters(model, PLANTED.layer)[2]
        W_out[shares] /= 20 * sharing
    order = torch.tensor(shares + [i for i in range(64) if i not in shares])
    k, whole, _ = neurons_to_half(model, contrast, PLANTED.layer, order)
    assert whole > 0.5 and k == expected


def test_a_row_agrees_with_the_slow_references(model, row):
    """The neuron is chosen on 16 selection pairs and measured on N_PAIRS others (too few for
    an interval)."""
    r = row.row
    selection, pairs = selection_and_evaluation(model, 16, N_PAIRS)
    choice = choose_neuron(model, selection, cache=None)
    assert (r["neuron"], r["n_selection"], r["stability"]) == (str(choice.neuron), 16, pytest.approx(choice.stability))
    assert r["status"] == "measured" and r["n_pairs"] == N_PAIRS
    neuron = int(r["neuron"].split("N")[1])
    single = torch.stack([naive_neuron_patching(model, pairs.pair(i), r["layer"], [neuron], "all")[0] for i in range(N_PAIRS)])
    assert r["recovery"] == pytest.approx(single.mean().item(), abs=2e-4)
    assert math.isnan(r["recovery_low"]) and math.isnan(r["recovery_high"]), "4 pairs are too few for an interval"
    assert r["rank_in_layer"] == int((row.single > row.single[neuron]).sum()) + 1
    with torch.no_grad():
        study = make_contrast(model)
        p = model(study.clean)[0, -1].softmax(-1)[study.target].item()
        signs = [logit_diff(model(pairs.clean[i : i + 1]), pairs.target, pairs.other) > 0 for i in range(N_PAIRS)]
        signs += [logit_diff(model(pairs.corrupted[i : i + 1]), pairs.target, pairs.other) < 0 for i in range(N_PAIRS)]
    assert r["p_target"] == pytest.approx(p, abs=1e-5)
    assert r["accuracy"] == pytest.approx(sum(bool(s) for s in signs) / (2 * N_PAIRS))
    W = torch.stack([model.blocks[l].mlp.W_out for l in range(3)]).detach()
    dots = (W @ model.W_U[:, study.target].detach()).flatten()
    value = dots[r["layer"] * 48 + neuron]
    assert r["congruence"] == pytest.approx(value.item(), abs=1e-5)
    assert r["congruence_rank"] == int((dots > value).sum()) + 1
    effects = neuron_effects(model, pairs, r["neuron"])
    assert r["direct_share"] == pytest.approx(effects.direct.mean().item() / effects.total.mean().item(), rel=1e-4)
    torch.testing.assert_close(row.logit_effect, (model.blocks[r["layer"]].mlp.W_out[neuron] @ model.W_U).detach())


def loader(models: dict):
    def load(name, device="cpu", dtype="float32"):
        if name not in models:
            raise ModelUnavailable(f"unknown model {name!r}: use one of {', '.join(models)}")
        return models[name]
    return load


def test_the_sweep_marks_what_it_cannot_measure_and_runs_the_rest(model, tmp_path):
    odd = random_model(n_layers=1, d_model=16, n_heads=2, seed=9)
    odd.cfg.normalization_type = "Weird"
    models = {"a": model, "odd": odd, "b": random_model(n_layers=2, d_model=16, n_heads=2, seed=5, weight_scale=8.0)}
    seen = []
    result = sweep(["a", "missing", "odd", "b"], n_pairs=3, load=loader(models), cache=tmp_path / "sweep",
                   choice_cache=tmp_path / "choices", on_model=lambda name, seconds: seen.append(name))
    table = result.table.set_index("model")
    assert list(table.index) == ["a", "missing", "odd", "b"] == seen
    assert table.status.to_dict() == {"a": "measured", "missing": "unavailable", "odd": "unsupported", "b": "measured"}
    assert "unknown model 'missing'" in table.note["missing"]
    assert "a LayerNorm or RMSNorm (it has 'Weird')" in table.note["odd"] and "\n" not in table.note["odd"]
    assert set(result.models) == {"a", "b"}
    similarity = logit_effect_similarity(result)
    assert similarity.loc["a", "a"] == pytest.approx(1.0) and similarity.loc["a", "b"] == similarity.loc["b", "a"]
    from helpers.book.summaries.sweep import sweep_summary, sweep_table

    summary = sweep_summary(result)
    assert (summary["n_models"], summary["n_measured"]) == (4, 2)
    assert "`missing` (unavailable: unknown model 'missing'" in summary["missing_phrase"] and "`odd` (unsupported:" in summary["missing_phrase"]
    shown = sweep_table(result).set_index("model")
    assert shown.accuracy["odd"] == "unsupported (see above)" and shown.neuron["a"] == table.neuron["a"]
    skipped = sweep(["a"], n_pairs=3, target=" elephants", load=loader(models), cache=None, choice_cache=None).table.iloc[0]
    assert skipped.status == "skipped" and "' elephants' is not a single token" in skipped.note


def test_the_page_shows_a_sweep_where_no_model_was_measured(model, tmp_path):
    """Every summary, table and figure of page 15 on a sweep with no measured model (the
    recovery figure stopped with an AttributeError), and a measured row has only known columns."""
    from helpers.book.figures.sweep import concentration_figure, recovery_figure, similarity_figure
    from helpers.book.summaries.findings import sweep_findings
    from helpers.book.summaries.sweep import neuron_table, sweep_paper_rows, sweep_summary, sweep_table
    from helpers.core.models import describe
    from helpers.methods.sweep import MEASURED_COLUMNS
    from helpers.paper import study

    nothing = sweep(["missing", "gone"], n_pairs=3, load=loader({}), cache=None, choice_cache=None)
    assert sweep_summary(nothing)["own_phrase"].startswith("No model was measured")
    assert neuron_table(nothing).empty and len(sweep_table(nothing)) == 2
    for figure in (recovery_figure, similarity_figure, concentration_figure):
        figure(nothing, "title")
    sweep_paper_rows(nothing, study(), "toy")
    assert sweep_findings(nothing, 0.5)["n_measured"] == 0
    row = sweep(["a"], n_pairs=3, load=loader({"a": model}), cache=None, choice_cache=None).table.iloc[0]
    assert set(row.index) == set(describe(model)) | set(MEASURED_COLUMNS)


def test_the_sweep_reuses_each_models_row_and_recomputes_for_other_weights(model, tmp_path, monkeypatch):
    models = {"a": model}
    first = sweep(["a"], n_pairs=3, load=loader(models), cache=tmp_path, choice_cache=tmp_path).table
    import helpers.methods.sweep as module

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(module, "sweep_model", refuse)
    again = sweep(["a"], n_pairs=3, load=loader(models), cache=tmp_path, choice_cache=tmp_path).table
    assert again.equals(first)
    other = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=2, weight_scale=8.0)
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if "mlp" in n).mul_(1.5)  # same name and shape, other weights
    assert sweep(["a"], n_pairs=3, load=loader({"a": other}), cache=tmp_path, choice_cache=tmp_path).table.status[0] == "failed"
    assert sweep(["a"], n_pairs=4, load=loader(models), cache=tmp_path, choice_cache=tmp_path).table.status[0] == "failed"


@pytest.mark.parametrize("architecture", ["neox", "llama"])
def test_the_sweep_measures_rotary_models(architecture, tmp_path):
    other = random_model(n_layers=2, d_model=32, d_mlp=40, n_heads=4, seed=3, architecture=architecture, weight_scale=8.0)
    r = sweep_model(other, n_pairs=3, max_neurons=8, choice_cache=None).row
    assert r["status"] == "measured" and 0 <= r["p_target"] <= 1 and r["d_mlp"] == 40


# --- the page's phrases ------------------------------------------------------------------

def frame(rows):
    import pandas as pd

    base = dict(status="measured", note="", n_neurons=100, neuron="L1N2", layer=1, recovery=0.3, recovery_low=0.2,
                recovery_high=0.4, whole_layer=0.6, congruence_rank=3, direct_share=0.9, max_neurons=8, accuracy=1.0,
                p_target=0.5, d_mlp=50)
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.parametrize("counts, verdict", [
    ([[4], [2], [1]], "concentrates as the model grows"),
    ([[1], [2], [4]], "spreads as the model grows"),
    ([[2], [2], [2]], "neither concentrates nor spreads"),
    ([[2], [1], [3]], "no monotone trend"),
    ([[2], [None], [1]], "trend is not measured"),
    ([[3], [2, 3, 1], [1]], "no effect of size beyond what the seed decides"),
    ([[6, 5], [3, 4], [1]], "concentrates as the model grows"),
])
def test_the_growth_verdict_follows_the_counts(counts, verdict):
    from helpers.book.summaries.sweep import growth_phrase

    shapes = [(2, 64), (4, 128), (6, 128)]
    rows = [dict(model=f"m{i}-{j}", n_layers=l, d_model=d, neurons_to_half=k)
            for i, ((l, d), ks) in enumerate(zip(shapes, counts)) for j, k in enumerate(ks)]
    text = growth_phrase(frame(rows).iloc[::-1])  # the order of the rows does not matter: sizes do
    assert verdict in text
    assert text.index("2 x 64") < text.index("4 x 128") < text.index("6 x 128")
    assert all(f"`{r['model']}`" in text for r in rows)


def test_model_lists():
    from helpers.book.summaries.sweep import sweep_names
    from helpers.core.models import BUNDLED_MODELS

    assert sweep_names("auto", "toy") == list(BUNDLED_MODELS)
    assert sweep_names("auto", "/some/folder") == ["/some/folder"]
    assert sweep_names("gpt2, pythia-160m", "toy") == ["gpt2", "pythia-160m"]
    assert sweep_names(["gpt2"], "toy") == ["gpt2"]
    with pytest.raises(ValueError, match="names no model"):
        sweep_names("gpt2,,", "toy")


def test_each_models_top_neuron_is_matched_in_the_others_by_activation(model, tmp_path):
    """A twin (the same weights under another name) matches the neuron with itself, above the
    rotation null; another model's match is match_neurons' own answer; both are cached."""
    from helpers.scan.matching import match_neurons, sweep_matches
    from helpers.toy.corpus import documents

    other = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=11, weight_scale=8.0)
    models = {"a": model, "twin": model, "b": other}
    result = sweep(["a", "twin", "b"], n_pairs=3, load=loader(models), cache=tmp_path, choice_cache=tmp_path)
    docs = documents(12, seed=4)
    table = sweep_matches(result, docs, load=loader(models), rotations=2, cache=tmp_path)
    assert len(table) == 6 and set(zip(table["model"], table["other model"])) == {(a, b) for a in models for b in models if a != b}
    twin = table[(table["model"] == "a") & (table["other model"] == "twin")].iloc[0]
    assert twin["its best match"] == twin["neuron"] and twin["correlation"] == pytest.approx(1.0, abs=1e-6) and twin["above the null"]
    cross = table[(table["model"] == "a") & (table["other model"] == "b")].iloc[0]
    want = match_neurons(model, other, docs, [cross["neuron"]], rotations=2).of(cross["neuron"])
    assert (cross["its best match"], cross["correlation"], cross["rotation null"]) == (want[0], pytest.approx(want[1]), pytest.approx(want[2]))
    assert cross["logit-effect cosine"] == pytest.approx(logit_effect_similarity(result).loc["a", "b"])
    assert len(list(tmp_path.glob("match-*.safetensors"))) == 3, "one entry per pair of weights: the twin shares the first model's"


def test_the_matches_phrase_follows_the_counts():
    import pandas as pd
    from helpers.book.summaries.sweep import matches_phrase, matches_table

    def frame(above, own):
        return pd.DataFrame({"model": ["a", "b"], "neuron": [Neuron(1, 2), Neuron(0, 3)], "other model": ["b", "a"],
                             "its best match": [Neuron(0, 3) if own else Neuron(0, 9), Neuron(1, 2)], "correlation": [0.9, 0.8],
                             "rotation null": [0.3, 0.85], "above the null": [above, False], "other's top neuron": [Neuron(0, 3), Neuron(1, 2)],
                             "logit-effect cosine": [0.4, 0.4], "tokens": [1000, 1000]})

    assert "in 1 of the 2 pairs" in matches_phrase(frame(True, True)) and "In 2 of the 2 pairs that match is the other model's own" in matches_phrase(frame(True, True))
    assert "no model's top neuron has a counterpart above the null" in matches_phrase(frame(False, False))
    assert "In 1 of the 2 pairs" in matches_phrase(frame(False, False))
    assert matches_table(frame(True, False))["is the other's top neuron"].tolist() == ["no", "yes"]
    unstable = matches_table(frame(True, False).assign(stability=[0.5, 0.95]))["its neuron"].tolist()
    assert unstable == ["unstable: L1N2 in 50% of resamples", "L0N3 (95% of resamples)"], "an unstable choice is marked as on the other tables"
    assert "share a tokenizer" in matches_phrase(pd.DataFrame())
