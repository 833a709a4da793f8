"""The inputs page's numbers and phrases, on hand-built results whose answers are known."""
import pytest
import torch

from helpers.book.summaries.inputs import (
    attention_summary, build_layer, decomposition_summary, head_patching_summary, lead_rows, leads_note, position_summary, probe_summary, rank_by_size,
)
from helpers.core.names import Head, Neuron
from helpers.methods.inputs import InputPatch, InputDecomposition, component_labels
from helpers.methods.probes import Probe
from helpers.paper import LEADS

N_HEADS = 2


def decomposition(diffs: dict[str, list[float]], neuron=Neuron(2, 0), d_mlp=4) -> InputDecomposition:
    """A decomposition whose clean-minus-corrupted rows are ``diffs`` (others zero), corrupted all zero."""
    labels = component_labels(neuron, N_HEADS)
    n_pairs = len(next(iter(diffs.values())))
    clean = torch.zeros(len(labels), n_pairs)
    for name, values in diffs.items():
        clean[labels.index(name)] = torch.tensor(values)
    per_neuron = torch.zeros(neuron.layer, d_mlp, n_pairs)
    per_neuron[1, 3] = 0.5
    return InputDecomposition(neuron, labels, clean, torch.zeros_like(clean), clean.sum(0), torch.zeros(n_pairs),
                              per_neuron, torch.zeros_like(per_neuron), N_HEADS)


def patch(effects: torch.Tensor, gap: float = 2.0) -> InputPatch:
    n_pairs = effects.shape[-1]
    return InputPatch(Neuron(2, 0), "sufficiency", effects, ("layer", "head", "pair"), torch.zeros(n_pairs), torch.full((n_pairs,), gap), "test")


def test_rank_by_size():
    values = torch.tensor([0.1, -3.0, 2.0, 0.0])
    assert [rank_by_size(values, i) for i in range(4)] == [3, 1, 2, 4]


def test_the_top_component_and_where_the_input_builds():
    dec = decomposition({"L0H1": [0.1, 0.1, 0.1], "L2H0": [3.0, 2.8, 3.2], "mlp 1": [0.5, 0.5, 0.5], "b_in": [0.0, 0.0, 0.0]})
    values = decomposition_summary(dec)
    assert values["top_component"] == "L2H0" and values["top_dec_head"] == "L2H0"
    assert values["exact_error"] == 0.0
    assert values["top_share"] == pytest.approx(3.0 / 3.6)
    assert values["decomposition_phrase"].startswith("One component, L2H0, carries most of it")
    assert build_layer(dec) == 2, "0.6 of 3.6 is in place by layer 1; half only at layer 2"
    spread = decomposition({"L0H0": [1.0, 1.0], "L1H1": [1.0, 1.0], "mlp 0": [1.0, 1.0]})
    assert build_layer(spread) == 0, "2 of 3 is in place by layer 0"
    assert decomposition_summary(spread)["decomposition_phrase"].startswith("No single component carries most of it")


def test_head_patching_phrases_say_which_views_agree():
    dec = decomposition({"L1H0": [1.0, 1.0], "L2H1": [0.2, 0.2]})
    effects = torch.zeros(3, N_HEADS, 2)
    effects[1, 0] = 1.5
    direct = torch.zeros(3, N_HEADS, 2)
    direct[1, 0] = 0.3
    values = head_patching_summary(patch(effects), patch(direct), dec)
    assert values["top_head"] == "L1H0" and values["top_head_share"] == pytest.approx(0.75)
    assert values["agreement_phrase"] == "The decomposition and path patching rank the same head first, L1H0."
    assert values["direct_of_effect"] == pytest.approx(0.2)
    assert "the rest goes through components between it and the neuron" in values["direct_phrase"]
    other = torch.zeros(3, N_HEADS, 2)
    other[2, 1] = 1.0
    assert head_patching_summary(patch(effects), patch(other), dec)["agreement_phrase"] == "The decomposition agrees; path patching ranks L2H1 first."
    same_layer = torch.zeros(3, N_HEADS, 2)
    same_layer[2, 1] = 1.0
    assert head_patching_summary(patch(same_layer), patch(same_layer), dec)["direct_phrase"].startswith(
        "L2H1 is in the neuron's own layer, so the direct path is its only path to the neuron (100%")
    assert "not through the components between them" in head_patching_summary(patch(effects), patch(effects), dec)["direct_phrase"]


def test_position_summary():
    effect = torch.zeros(3, 5, N_HEADS)
    effect[1, 2, 0] = 0.8
    effect[1, 4, 0] = 0.2
    result = InputPatch(Neuron(2, 0), "sufficiency", effect, ("layer", "pos", "head"), torch.zeros(1), torch.ones(1), "test")
    values = position_summary(result, Head(1, 0), ["<bos>", " I", " apple", " tree", " picked"])
    assert values["position_top"] == 2 and values["position_token"] == "' apple'" and values["position_share"] == pytest.approx(0.8)


def probe(names, labels, heldout) -> Probe:
    return Probe(torch.ones(3), 0.0, torch.tensor(labels), torch.tensor(heldout), tuple(names), 5)


def test_probe_phrases_count_the_misleading_words():
    embedding = probe(["apple", "hour", "unicorn", "pear"], [True, True, False, False], [0.9, 0.8, 0.2, 0.1])
    values = probe_summary(embedding, embedding, 0.3, 0.4, Head(1, 0), 1)
    assert values["misleading_words"] == 2 and values["misleading_correct"] == 2
    assert values["letter_accuracy"] == 0.5 and values["embedding_accuracy"] == 1.0
    assert values["probe_phrase"] == "It gets all 2 words whose first letter misleads right, so it follows the article each word takes, not its first letter."
    spelling = probe(["apple", "hour", "unicorn", "pear"], [True, True, False, False], [0.9, 0.2, 0.8, 0.1])
    assert "follows the spelling more than the sound" in probe_summary(spelling, spelling, 0, 0, Head(1, 0), 1)["probe_phrase"]
    worse = probe(["apple", "hour", "unicorn", "pear", "egg"], [True, True, False, False, True], [0.1, 0.8, 0.2, 0.9, 0.1])
    assert probe_summary(worse, worse, 0, 0, Head(1, 0), 1)["probe_phrase"].startswith("It does worse than the letter rule over all words, and gets 2 of the 2")
    plain = probe(["apple", "pear"], [True, False], [0.9, 0.1])
    assert "cannot be told apart" in probe_summary(plain, plain, 0, 0, Head(1, 0), 1)["probe_phrase"]


def test_a_cosine_is_beyond_chance_only_past_its_null():
    """Page 13's cosine 0.072 at width 128 was read as a finding; against random directions it
    is at chance."""
    from helpers.book.summaries.inputs import cosine_phrase

    null = torch.randn(4000, generator=torch.Generator().manual_seed(0)) / 128**0.5  # about 0.17 holds 95% of sizes
    assert cosine_phrase(0.072, null).endswith("at chance")
    assert "beyond the" in cosine_phrase(0.63, null) and "beyond the" in cosine_phrase(-0.63, null)
    embedding = probe(["apple", "hour", "unicorn", "pear"], [True, True, False, False], [0.9, 0.8, 0.2, 0.1])
    phrase = probe_summary(embedding, embedding, 0.072, 0.63, Head(1, 0), 1, null)["cosine_phrase"]
    assert phrase.startswith("For the embedding probe the cosine is 0.072, within") and "residual probe it is 0.630, beyond" in phrase


def test_two_clusters_are_correlated_within_each_not_pooled():
    """Two clusters with no relation inside either give a pooled r near 1; within each it is near 0."""
    from helpers.book.summaries.inputs import within_groups_phrase

    generator = torch.Generator().manual_seed(0)
    noise = lambda n: torch.randn(n, generator=generator)  # noqa: E731
    clean, corrupted = (5 + noise(40), 0.9 + 0.01 * noise(40)), (noise(40), 0.1 + 0.01 * noise(40))
    pooled = torch.corrcoef(torch.stack([torch.cat([clean[0], corrupted[0]]), torch.cat([clean[1], corrupted[1]])]))[0, 1]
    assert pooled > 0.9
    phrase = within_groups_phrase({"clean": clean, "corrupted": corrupted})
    values = [float(part.split("r = ")[1].split(";")[0].split(" ")[0]) for part in phrase.split("prompts ")[1:]]
    assert len(values) == 2 and all(abs(v) < 0.4 for v in values), phrase
    assert "too few prompts (3)" in within_groups_phrase({"clean": (noise(3), noise(3))})


def test_lead_rows_say_when_a_lead_cannot_be_ranked():
    dec = decomposition({"L1H1": [1.0, 1.0], "L0H0": [2.0, 2.0]})
    effects = torch.zeros(3, N_HEADS, 2)
    rows = lead_rows(LEADS, dec, patch(effects), n_layers=3, n_heads=N_HEADS, d_mlp=4)
    assert rows[0][2] == "not in this model"
    assert all(value == "not in this model" for _, _, value in rows[1:-1])
    assert rows[-1][1] == "builds from about layer 16"
    early = decomposition({"L1H1": [1.0, 1.0]}, neuron=Neuron(20, 0))
    rows = lead_rows(LEADS, early, patch(torch.zeros(21, N_HEADS, 2)), n_layers=36, n_heads=N_HEADS, d_mlp=4)
    assert rows[0][2] == "after L20N0's layer: cannot reach it"


def test_lead_rows_rank_the_head_and_the_neurons():
    n_heads, d_mlp = 2, 8
    neuron = Neuron(27, 0)
    labels = component_labels(neuron, n_heads)
    clean = torch.zeros(len(labels), 2)
    clean[labels.index("L26H1")] = 5.0
    clean[labels.index("L3H0")] = 9.0
    per_neuron = torch.zeros(27, d_mlp, 2)
    dec = InputDecomposition(neuron, labels, clean, torch.zeros_like(clean), clean.sum(0), torch.zeros(2), per_neuron, per_neuron.clone(), n_heads)
    effects = torch.zeros(28, n_heads, 2)
    effects[26, 1] = 1.0
    from dataclasses import replace
    leads = replace(LEADS, vowel_neurons=(Neuron(0, 7), Neuron(30, 1)))
    rows = lead_rows(leads, dec, patch(effects), n_layers=36, n_heads=n_heads, d_mlp=d_mlp)
    assert rows[0][2] == 2 and rows[1][2] == 1
    assert rows[2][2] == 1 and rows[3][2] == f"not upstream of {neuron}"
    patched = InputPatch(neuron, "sufficiency", torch.tensor([[0.5, 0.7]]), ("neuron", "pair"), torch.zeros(2), torch.ones(2), "test", (Neuron(0, 7),))
    rows = lead_rows(leads, dec, patch(effects), n_layers=36, n_heads=n_heads, d_mlp=d_mlp, neuron_patch=patched)
    assert rows[3] == (f"L0N7: patched alone, mean change of {neuron}'s activation", "candidate vowel neuron", 0.6)


def test_leads_note():
    assert "is the study's L31N892" in leads_note(Neuron(31, 892), Neuron(31, 892))
    assert "another neuron" in leads_note(Neuron(3, 50), Neuron(31, 892))


def test_attention_summary_reads_the_last_query():
    pattern = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.1, 0.7, 0.2]])
    values = attention_summary(pattern, ["<bos>", " apple", " picked"], 1)
    assert values["attn_top_token"] == "' apple'" and values["attn_top_weight"] == pytest.approx(0.7)
    assert values["attn_noun_weight"] == pytest.approx(0.7) and values["attn_top_position"] == 1
