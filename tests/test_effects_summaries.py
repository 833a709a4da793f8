"""The prompt-set pages' glued phrases and sets: each branch of each phrase, on made-up results."""
import math

import pytest
import torch

from helpers.methods.ablation import ablation_sets
from helpers.book.summaries.effects import (
    LAYER_SET, loss_phrase, _negate_phrase, _random_phrase, _split_phrase, ablation_summary, effects_summary, effects_table,
    prompt_set_summary,
)
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.ablation import Ablation
from helpers.methods.effects import NeuronEffects


def test_ablation_sets_hold_the_neuron_its_layer_and_distinct_random_neurons():
    model = random_model(n_layers=2, d_model=16, d_mlp=20, seed=1)
    sets = ablation_sets(model, Neuron(1, 4), 5, seed=3)
    assert list(sets)[:2] == ["L1N4", LAYER_SET] and sets["L1N4"] == [4] and sets[LAYER_SET] == list(range(20))
    randoms = [v[0] for k, v in sets.items() if k not in ("L1N4", LAYER_SET)]
    assert len(set(randoms)) == 5 and 4 not in randoms
    assert ablation_sets(model, Neuron(1, 4), 5, seed=3) == sets and ablation_sets(model, Neuron(1, 4), 5, seed=4) != sets


def test_negation_phrase_follows_the_ratio():
    kinds = ("mean", "negate")
    for negate, words in ((0.5, "overstates it: it removes 2.5 times"), (0.2, "agree here"), (0.1, "understates it")):
        assert words in _negate_phrase(torch.tensor([[[0.2, 0, 0]], [[negate, 0, 0]]]), kinds, 0)


def test_random_loss_and_split_phrases():
    assert "none of the 5 random neurons" in _random_phrase(0.01, 0.3, 5)
    assert "comes close" in _random_phrase(0.2, 0.3, 5)
    assert "last layer" in _split_phrase(1.0, Neuron(3, 1), 0)
    assert "most of the effect is direct" in _split_phrase(0.9, Neuron(1, 1), 4)
    assert "most of the effect is indirect" in _split_phrase(0.1, Neuron(1, 1), 4)
    assert "split" in _split_phrase(0.5, Neuron(1, 1), 4)


def test_the_loss_ratio_comes_only_with_a_denominator_clear_of_zero():
    """The page once divided by an average change whose own interval contained zero ("55 times
    more costly"); now that case gives no ratio, and a clear one comes with its interval."""
    generator = torch.Generator().manual_seed(0)
    before = 0.2 + 0.01 * torch.randn(200, generator=generator)
    clear = 0.01 + 0.001 * torch.randn(5000, generator=generator)
    phrase = loss_phrase(before, clear, " an")
    assert "costs 20 times more" in phrase or "costs 19.9 times more" in phrase or "costs 20.1 times more" in phrase
    low, high = (float(x) for x in phrase.split("95% interval ")[1].split(",")[0].split(" to "))
    assert 19 < low < 20 < high < 21, phrase
    straddles = 0.0002 + 0.01 * torch.randn(5000, generator=generator)
    assert "no ratio between the two is given" in loss_phrase(before, straddles, " an")
    assert "does not show that the model relies on the neuron" in loss_phrase(before - 0.2, clear, " an")
    assert "too few to say" in loss_phrase(before[:3], clear, " an")
    assert "no ' an' to measure" in loss_phrase(torch.zeros(0), clear, " an")


def test_summaries_read_the_right_cells():
    n_pairs = 4
    clean, corrupted = torch.tensor([2.0, 1.0, 3.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0, -2.0])
    ablated = torch.zeros(2, 2, n_pairs)
    ablated[0, 0] = clean - 0.5 * (clean - corrupted)  # mean-ablating the neuron loses half
    ablated[1, 0] = corrupted  # negating it loses all
    ablated[:, 1] = clean[None]  # the other set loses nothing
    result = Ablation(
        layer=1, kinds=("mean", "negate"), set_names=("L1N2", LAYER_SET), ablated_diff=ablated, ablated_prob=torch.rand(2, 2, n_pairs),
        restored_diff=torch.stack([corrupted + 0.25 * (clean - corrupted), clean]), restored_prob=torch.rand(2, n_pairs),
        clean_diff=clean, corrupted_diff=corrupted, clean_prob=torch.rand(n_pairs), corrupted_prob=torch.rand(n_pairs))
    summary = ablation_summary(result, Neuron(1, 2))
    assert summary["mean_mean"] == 0.5 and summary["negate_mean"] == 1.0 and summary["mean_layer"] == 0.0
    assert summary["restored_mean"] == 0.25 and summary["restored_layer"] == 1.0 and summary["study_restored"] == 0.25
    assert "2.0 times" in summary["negate_phrase"]
    counts = prompt_set_summary(type("P", (), {"n_pairs": n_pairs})(), clean, corrupted)
    assert counts["pairs_right"] == 2 and counts["study_gap"] == 3.0
    assert math.isnan(counts["gap_low"]) and math.isnan(counts["gap_high"]), "too few pairs for an interval"

    effects = NeuronEffects(
        neuron=Neuron(0, 1), direction="sufficiency", total=torch.tensor([1.0, 1.0]), direct=torch.tensor([0.2, 0.2]),
        paths=torch.tensor([[0.9, 0.9], [-0.3, -0.3]]), components=("attn 1", "mlp 1"),
        clean_diff=torch.tensor([2.0, 2.0]), corrupted_diff=torch.tensor([0.0, 0.0]),
        final_norm=torch.tensor([0.05, 0.05]), base_scale=torch.tensor([4.0, 4.0]))
    values = effects_summary(effects)
    assert values["direct_share"] == pytest.approx(0.2) and values["indirect_mean"] == pytest.approx(0.8)
    assert values["rest_mean"] == pytest.approx(0.15) and values["share_mean"] == pytest.approx(0.5)
    assert values["final_norm_mean"] == pytest.approx(0.05)
    assert values["top_amplifier"] == "attn 1" and values["top_canceller"] == "mlp 1"
    assert "cancels it most is mlp 1" in values["paths_phrase"]
    assert effects_summary(NeuronEffects(neuron=Neuron(0, 1), direction="sufficiency", total=torch.tensor([1.0]), direct=torch.tensor([-1e-4]), paths=torch.tensor([[0.8], [-1e-4]]), components=("attn 1", "mlp 1"), clean_diff=torch.tensor([2.0]), corrupted_diff=torch.tensor([0.0]), final_norm=torch.zeros(1), base_scale=torch.ones(1)))["paths_phrase"].startswith("No later component cancels it; the one that amplifies it most is attn 1")



def test_the_direct_ratio_is_read_by_its_size_and_sign_and_the_legend_by_the_figure():
    """direct ÷ total above 1 or below 0 is no share: the phrase says later layers cancel or
    reverse it; a last-layer neuron's legend names no later components."""
    def effects(direct: float, components=("attn 1", "mlp 1")):
        n = len(components)
        return NeuronEffects(
            neuron=Neuron(1, 0), direction="sufficiency", total=torch.tensor([1.0, 1.0]), direct=torch.tensor([direct, direct]),
            paths=torch.full((n, 2), 0.1), components=components, clean_diff=torch.tensor([2.0, 2.0]),
            corrupted_diff=torch.tensor([0.0, 0.0]), final_norm=torch.zeros(2), base_scale=torch.ones(2))

    assert "1.90 times as much as the whole effect" in effects_summary(effects(1.9))["split_phrase"]
    assert "pushes against the total effect" in effects_summary(effects(-0.5))["split_phrase"]
    assert "most of the effect is direct" in effects_summary(effects(0.9))["split_phrase"]
    assert effects_summary(effects(0.9))["paths_legend"].startswith("Blue bars")
    last = effects_summary(effects(0.9, components=()))
    assert "no later components" in last["paths_legend"] and "Blue bars" not in last["paths_legend"]
    table = effects_table([effects(1.9)])
    assert "direct ÷ total" in table.columns and "direct share" not in table.columns

def test_comparison_neurons_come_from_other_layers_one_each():
    from helpers.book.summaries.effects import comparison_phrase
    from helpers.methods.effects import other_layers_effects
    from helpers.methods.prompt_sets import study_like_pairs

    model = random_model(n_layers=4, d_model=16, d_mlp=20, seed=2)
    pairs = study_like_pairs(model, 3)
    assert other_layers_effects(model, pairs, Neuron(1, 0), "sufficiency", 0) == []
    assert "n_compare=0" in comparison_phrase([])
    others = other_layers_effects(model, pairs, Neuron(1, 0), "sufficiency", 2)
    layers = [e.neuron.layer for e in others]
    assert len(layers) == 2 and len(set(layers)) == 2 and 1 not in layers and layers == sorted(layers)
    assert all(e.total.shape == (3,) for e in others)
    assert str(others[0].neuron) in comparison_phrase(others)


def test_ablation_table_averages_the_random_neurons_per_pair():
    from helpers.book.summaries.effects import ablation_table

    n_pairs = 3
    clean, corrupted = torch.tensor([2.0, 2.0, 2.0]), torch.zeros(3)
    lost = torch.tensor([[0.5, 1.0, 0.1, 0.3]])  # [kind, set]: the neuron, the layer, two random neurons
    ablated = (clean - lost[..., None] * 2.0).expand(1, 4, n_pairs)
    result = Ablation(
        layer=0, kinds=("mean",), set_names=("L0N1", LAYER_SET, "L0N2", "L0N3"), ablated_diff=ablated, ablated_prob=torch.full((1, 4, n_pairs), 0.5),
        restored_diff=torch.zeros(4, n_pairs), restored_prob=torch.full((4, n_pairs), 0.25),
        clean_diff=clean, corrupted_diff=corrupted, clean_prob=torch.ones(n_pairs), corrupted_prob=torch.zeros(n_pairs))
    table = ablation_table(result, Neuron(0, 1)).set_index("change")
    assert list(table.columns) == ["L0N1", LAYER_SET, "2 random neurons (mean)"] and list(table.index) == ["mean ablation", "restored: share recovered"]
    assert table.loc["mean ablation"].tolist() == ["0.500 (no interval)", "1.000 (no interval)", "0.200 (no interval)"], "3 pairs: too few for an interval"
    assert ablation_table(result, Neuron(0, 1), "prob").set_index("change").loc["restored into corrupted", "L0N1"] == "0.250 (no interval)"


def test_the_most_indirect_neuron_and_its_phrases():
    from helpers.book.summaries.effects import most_indirect, most_indirect_summary

    def made(index: int, indirect: float) -> NeuronEffects:
        return NeuronEffects(
            neuron=Neuron(0, index), direction="sufficiency", total=torch.tensor([1.0]), direct=torch.tensor([1.0 - indirect]),
            paths=torch.tensor([[indirect]]), components=("mlp 1",), clean_diff=torch.tensor([2.0]), corrupted_diff=torch.tensor([0.0]),
            final_norm=torch.zeros(1), base_scale=torch.ones(1))

    assert most_indirect([]) is None and "n_compare=0" in most_indirect_summary(None)["indirect_paths_phrase"]
    chosen = most_indirect([made(1, 0.2), made(2, -0.7), made(3, 0.5)])
    assert chosen.neuron == Neuron(0, 2)
    phrase = most_indirect_summary(chosen)["indirect_paths_phrase"]
    assert phrase.startswith("Of the neurons compared, L0N2 has the largest indirect effect") and "No later component amplifies it" in phrase


def test_kinds_and_ranks_phrases_report_spread_and_disagreement():
    from helpers.book.summaries.effects import kinds_phrase, ranks_phrase
    from helpers.methods.choice import LayerRanks

    kinds = ("zero", "mean", "resample", "negate")
    text = kinds_phrase([0.11, 0.08, 0.10, 0.24], [0.43, 0.08, 0.2, 0.3], kinds, "L3N50")
    assert "loses from 0.080 (mean) to 0.240 (negate)" in text and "layer from 0.080 (mean) to 0.430 (zero)" in text
    assert "alone loses more" not in text
    seed1 = kinds_phrase([0.229, 0.2, 0.21, 0.4], [0.059, 0.3, 0.1, 0.5], kinds, "L3N476")
    assert "Under zero, resample ablation the neuron alone loses more than its whole layer" in seed1
    agree = ranks_phrase(LayerRanks(Neuron(3, 50), 512, 1, 0.1, 2, 0.17))
    assert "ranks 1 by necessity" in agree and "disagree" not in agree
    assert "The two readings disagree" in ranks_phrase(LayerRanks(Neuron(3, 50), 512, 40, 0.01, 1, 0.17))


def test_layer_ranks_equal_a_loop_over_pairs():
    from helpers.core.models import random_model
    from helpers.methods.choice import layer_ranks
    from helpers.methods.neuron_patching import neuron_patching
    from helpers.methods.prompt_sets import study_like_pairs

    model = random_model(n_layers=2, d_model=16, d_mlp=24, n_heads=2, seed=5, weight_scale=8.0)
    pairs = study_like_pairs(model, 3, seed=1)
    ranks = layer_ranks(model, pairs, Neuron(1, 4))
    for direction, rank, value in (("necessity", ranks.necessity_rank, ranks.necessity_value), ("sufficiency", ranks.sufficiency_rank, ranks.sufficiency_value)):
        means = torch.stack([neuron_patching(model, pairs.pair(i), 1, "all", direction).values for i in range(3)]).mean(0)
        assert value == pytest.approx(float(means[4]), abs=1e-6) and rank == int((means > means[4]).sum()) + 1


def test_beyond_the_templates_compares_by_intervals_and_says_what_they_resample():
    from helpers.book.summaries.effects import beyond_summary
    from helpers.methods.ablation import NaturalEffects

    def made(lost: torch.Tensor, kinds=("mean",), sets=("L0N1",)) -> Ablation:
        n = lost.numel()
        clean, corrupted = torch.full((n,), 2.0), torch.zeros(n)
        ablated = (clean - 2.0 * lost)[None, None].expand(len(kinds), len(sets), n)
        return Ablation(layer=0, kinds=kinds, set_names=sets, ablated_diff=ablated,
                        ablated_prob=torch.full((len(kinds), len(sets), n), 0.5), restored_diff=torch.zeros(len(sets), n),
                        restored_prob=torch.zeros(len(sets), n), clean_diff=clean, corrupted_diff=corrupted, clean_prob=torch.ones(n),
                        corrupted_prob=torch.zeros(n))

    generator = torch.Generator().manual_seed(0)
    templates = made(0.3 + 0.01 * torch.randn(48, generator=generator), kinds=("zero", "mean"), sets=(LAYER_SET, "L0N1"))
    natural = NaturalEffects(total=torch.cat([-0.5 + 0.05 * torch.randn(40, generator=generator), 0.01 * torch.randn(60, generator=generator)]),
                             direct=torch.zeros(100), before_target=torch.arange(100) < 40)
    less = beyond_summary(templates, made(0.1 + 0.01 * torch.randn(30, generator=generator)), natural, Neuron(0, 1), " an", " a")
    assert "matters less than on the templates" in less["unseen_phrase"] and less["natural_target_n"] == 40
    assert less["natural_phrase"].startswith("At natural positions before ' an', removing it lowers the logit difference")
    same = beyond_summary(templates, made(0.3 + 0.01 * torch.randn(30, generator=generator)), natural, Neuron(0, 1), " an", " a")
    assert "not distinguishable" in same["unseen_phrase"]
    few = beyond_summary(templates, made(torch.full((4,), 0.3)), natural, Neuron(0, 1), " an", " a")
    assert "too few for an interval" in few["unseen_phrase"]
