"""The chunked congruence search against the whole matrix built at once, planted neurons, bad input."""
from __future__ import annotations

import pytest
import torch

from helpers.methods.congruence import (
    as_token,
    neuron_congruence,
    output_weights,
    readout,
    scan,
    search,
    token_congruence,
)
from helpers.methods.congruence_tables import (
    Congruence,
    census,
    census_per_layer,
    hubs,
    mutual_exclusive,
    tokens_topped_by,
    top_neuron_per_token,
)
from helpers.core.models import random_model
from helpers.core.names import Neuron


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=3, d_model=48, d_mlp=96, n_heads=2, n_ctx=16, seed=3)


@pytest.fixture(scope="module")
def weights():
    g = torch.Generator().manual_seed(0)
    W_out = torch.randn(3, 70, 24, generator=g) * torch.linspace(0.5, 2.0, 3)[:, None, None]
    U = torch.randn(24, 301, generator=g)
    return W_out, U


def brute_force(W_out, U, measure="dot", layers=None):
    """The whole neurons x tokens matrix (float64), -inf on rows of layers not scanned."""
    W = W_out.double().reshape(-1, W_out.shape[-1])
    U = U.double()
    if measure == "cosine":
        W = W / W.norm(dim=1, keepdim=True)
        U = U / U.norm(dim=0, keepdim=True)
    M = W @ U
    if layers is not None:
        keep = torch.zeros(W_out.shape[0], dtype=torch.bool)
        keep[layers] = True
        M[~keep.repeat_interleave(W_out.shape[1])] = -torch.inf
    return M


def check_against(result: Congruence, M: torch.Tensor, layers: list[int]) -> None:
    n_neurons, d_vocab = M.shape
    assert result.token_values.shape == (d_vocab, 2) and result.token_neurons.shape == (d_vocab, 2)
    assert result.neuron_values.shape == (n_neurons, 2) and result.neuron_tokens.shape == (n_neurons, 2)
    assert result.power_sums.shape == (n_neurons, 4)
    by_token = M.topk(2, dim=0)
    torch.testing.assert_close(result.token_values.double(), by_token.values.T, rtol=1e-5, atol=1e-5)
    assert torch.equal(result.token_neurons, by_token.indices.T)
    d_mlp = n_neurons // (result.n_layers)
    rows = torch.cat([torch.arange(l * d_mlp, (l + 1) * d_mlp) for l in layers])
    by_neuron = M[rows].topk(2, dim=1)
    torch.testing.assert_close(result.neuron_values[rows].double(), by_neuron.values, rtol=1e-5, atol=1e-5)
    assert torch.equal(result.neuron_tokens[rows], by_neuron.indices)
    powers = torch.stack([(M[rows] ** p).sum(1) for p in range(1, 5)], 1)
    scale = torch.stack([(M[rows].abs() ** p).sum(1) for p in range(1, 5)], 1)
    assert ((result.power_sums[rows] - powers).abs() <= 1e-5 * scale + 1e-9).all()
    others = torch.ones(n_neurons, dtype=torch.bool)
    others[rows] = False
    assert result.neuron_values[others].isnan().all() and (result.neuron_tokens[others] == -1).all()


@pytest.mark.parametrize("measure", ["dot", "cosine"])
@pytest.mark.parametrize("chunks", [(70, 301), (16, 50), (16, 64), (1000, 1000)])
def test_scan_equals_brute_force(weights, measure, chunks):
    W_out, U = weights
    result = scan(W_out, U, measure, neuron_chunk=chunks[0], token_chunk=chunks[1], moments=True)
    check_against(result, brute_force(W_out, U, measure), [0, 1, 2])


@pytest.mark.parametrize("chunks", [(1, 13), (4, 1), (1, 1)])
def test_scan_with_single_row_or_column_blocks(chunks):
    g = torch.Generator().manual_seed(2)
    W_out, U = torch.randn(2, 9, 8, generator=g), torch.randn(8, 40, generator=g)
    for measure in ("dot", "cosine"):
        result = scan(W_out, U, measure, neuron_chunk=chunks[0], token_chunk=chunks[1], moments=True)
        check_against(result, brute_force(W_out, U, measure), [0, 1])


def test_scan_of_some_layers_equals_brute_force(weights):
    W_out, U = weights
    result = scan(W_out, U, "dot", layers=[2, 0], neuron_chunk=16, token_chunk=64, moments=True)
    assert result.layers == [0, 2]  # layers are kept sorted, each once
    check_against(result, brute_force(W_out, U, "dot", layers=[2, 0]), [2, 0])


def test_moments_equal_direct_formulas(weights):
    W_out, U = weights
    result = scan(W_out, U, "cosine", neuron_chunk=20, token_chunk=100)
    M = brute_force(W_out, U, "cosine")
    mean = M.mean(1)
    std = M.std(1, correction=0)
    z = (M - mean[:, None]) / std[:, None]
    table = result.moments()
    assert list(table.columns) == ["layer", "index", "mean", "std", "skew", "kurtosis"]
    for column, expected in [("mean", mean), ("std", std), ("skew", (z**3).mean(1)), ("kurtosis", (z**4).mean(1))]:
        torch.testing.assert_close(torch.tensor(table[column].to_numpy()), expected, rtol=1e-4, atol=1e-5)


def test_heavy_tail_neurons_are_classed_by_skew_sign():
    """A neuron aligned with a few tokens is heavy-tailed: + sign predicts, - sign suppresses."""
    g = torch.Generator().manual_seed(1)
    U = torch.randn(256, 2000, generator=g)
    W_out = torch.randn(2, 10, 256, generator=g)
    W_out[1, 3] = U[:, :2].sum(1)
    W_out[1, 7] = -U[:, 5:7].sum(1)
    table = census(scan(W_out, U, "cosine"), kurtosis_min=10)
    classes = dict(zip(table["neuron"], table["class"]))
    assert classes[Neuron(1, 3)] == "prediction" and classes[Neuron(1, 7)] == "suppression"
    assert all(isinstance(n, Neuron) for n in table["neuron"]), "tables hold Neuron objects, never names to parse back"
    assert sum(c != "other" for c in classes.values()) == 2
    per_layer = census_per_layer(table)
    assert per_layer.set_index("layer").loc[1, ["prediction", "suppression"]].tolist() == [1, 1]
    assert per_layer["other"].sum() == 18


def test_census_needs_the_cosine(weights):
    with pytest.raises(ValueError, match="measure='cosine'"):
        census(scan(*weights, "dot", moments=True))


def test_power_sums_are_kept_for_the_cosine_by_default(weights):
    dot, cosine = scan(*weights, "dot"), scan(*weights, "cosine")
    assert dot.power_sums.isnan().all() and not cosine.power_sums.isnan().any()
    with pytest.raises(ValueError, match="moments=True"):
        dot.moments()
    torch.testing.assert_close(dot.token_values, scan(*weights, "dot", moments=True).token_values, rtol=0, atol=0)


def test_mutual_exclusive_equals_slow_reference(weights):
    W_out, U = weights
    # make a few strong pairs so that the list is not empty
    W_out = W_out.clone()
    for flat, token in [(5, 17), (100, 200), (150, 3)]:
        W_out.view(-1, 24)[flat] = 4 * U[:, token]
    result = scan(W_out, U, "dot", neuron_chunk=32, token_chunk=64)
    M = brute_force(W_out, U)
    expected = []
    for t in range(M.shape[1]):
        n = int(M[:, t].argmax())
        if int(M[n].argmax()) == t:
            column, row = M[:, t].sort(descending=True).values, M[n].sort(descending=True).values
            expected.append((t, n, float((column[0] - column[1]) * (row[0] - row[1]))))
    expected.sort(key=lambda x: -x[2])
    table = mutual_exclusive(result)
    assert len(expected) >= 3
    assert table["token"].tolist() == [t for t, _, _ in expected]
    assert table["flat"].tolist() == [n for _, n, _ in expected]
    torch.testing.assert_close(torch.tensor(table["score"].to_numpy()), torch.tensor([s for _, _, s in expected]), rtol=1e-4, atol=1e-5)


def test_top_neuron_per_token_and_hubs_equal_reference(weights):
    W_out, U = weights
    result = scan(W_out, U, "dot", neuron_chunk=32, token_chunk=64)
    M = brute_force(W_out, U)
    table = top_neuron_per_token(result)
    top2 = M.topk(2, dim=0)
    gap = top2.values[0] - top2.values[1]
    assert table["token"].tolist() == gap.argsort(descending=True).tolist()
    assert table["neuron"].iloc[0] == (Neuron.from_flat(int(top2.indices[0, gap.argmax()]), 70))
    counts = torch.bincount(M.argmax(0), minlength=M.shape[0])
    hub_table = hubs(result)
    assert hub_table["n_tokens"].sum() == M.shape[1]
    assert dict(zip(hub_table["flat"], hub_table["n_tokens"])) == {int(i): int(counts[i]) for i in torch.nonzero(counts).flatten()}
    assert hub_table["n_tokens"].is_monotonic_decreasing
    first = hub_table["neuron"].iloc[0]
    assert len(tokens_topped_by(result, first)) == hub_table["n_tokens"].iloc[0]


# ---------------------------------------------------------------------------------------------
# On a model: the right matrices, the planted neuron, rows on request, bad input, the cache
# ---------------------------------------------------------------------------------------------


def test_model_matrices_are_the_ones_the_forward_pass_uses(model):
    tokens = model.to_tokens("an apple and a pear")
    names = ("blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out", "unembed.hook_in", "hook_embed")
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    W_out = output_weights(model)
    assert W_out.shape == (3, 96, 48)
    mlp_out = cache["blocks.1.mlp.hook_post"] @ W_out[1] + model.blocks[1].mlp.b_out
    torch.testing.assert_close(mlp_out, cache["blocks.1.hook_mlp_out"], rtol=1e-4, atol=1e-5)
    U = readout(model, "W_U")
    assert U.shape == (48, model.cfg.d_vocab)
    torch.testing.assert_close(cache["unembed.hook_in"] @ U + model.b_U, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(readout(model, "W_E").T[tokens[0]], cache["hook_embed"][0])


@pytest.mark.parametrize("matrix", ["W_U", "W_E"])
@pytest.mark.parametrize("measure", ["dot", "cosine"])
def test_search_on_model_equals_brute_force(model, matrix, measure):
    result = search(model, matrix, measure, neuron_chunk=40, token_chunk=500, moments=True)
    assert (result.matrix, result.measure) == (matrix, measure)
    check_against(result, brute_force(output_weights(model), readout(model, matrix), measure), [0, 1, 2])


@pytest.mark.parametrize("matrix", ["W_U", "W_E"])
def test_rows_on_request_equal_brute_force(model, matrix):
    M = brute_force(output_weights(model), readout(model, matrix), "dot")
    Mc = brute_force(output_weights(model), readout(model, matrix), "cosine")
    token = as_token(model, " an")
    torch.testing.assert_close(neuron_congruence(model, "L2N5", matrix).double(), M[2 * 96 + 5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(neuron_congruence(model, Neuron(1, 9), matrix, "cosine").double(), Mc[96 + 9], rtol=1e-5, atol=1e-6)
    column = token_congruence(model, " an", matrix)
    assert column.shape == (3, 96)
    torch.testing.assert_close(column.flatten().double(), M[:, token], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(token_congruence(model, token, matrix, "cosine").flatten().double(), Mc[:, token], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("matrix", ["W_U", "W_E"])
def test_planted_neuron_tops_the_mutual_exclusive_list(model, matrix):
    """W_out row of L1N37 set to the ' an' column of the matrix (scaled): that pair comes first."""
    token = as_token(model, " an")
    direction = readout(model, matrix)[:, token]
    planted = Neuron(1, 37)
    W = model.blocks[planted.layer].mlp.W_out
    original = W[planted.index].detach().clone()
    try:
        with torch.no_grad():
            W[planted.index] = direction / direction.norm() * 3 * W.norm(dim=1).max()
        for measure in ("dot", "cosine"):
            table = mutual_exclusive(search(model, matrix, measure), model)
            assert (table["token"].iloc[0], table["neuron"].iloc[0]) == (token, planted)
            assert table["token_str"].iloc[0] == "' an'"
            assert table["score"].iloc[0] > table["score"].iloc[1]
    finally:
        with torch.no_grad():
            W[planted.index] = original


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_input_gives_one_line_errors(model, weights):
    one_line_error(lambda: search(model, "W_X"), "unknown matrix 'W_X'")
    one_line_error(lambda: search(model, measure="angle"), "unknown measure 'angle'")
    one_line_error(lambda: search(model, layers=[3]), "layer 3 is out of range")
    one_line_error(lambda: search(model, layers=[-1]), "layer -1 is out of range")
    one_line_error(lambda: token_congruence(model, " an apple tree"), "not a single token")
    one_line_error(lambda: token_congruence(model, 10**7), "out of range")
    one_line_error(lambda: neuron_congruence(model, "L3N0"), "out of range")
    one_line_error(lambda: neuron_congruence(model, "L1X3"), "not a neuron name")
    one_line_error(lambda: scan(weights[0], weights[1][:5]), "pass U as")
    one_line_error(lambda: scan(*weights, layers=[0, 0]), "repeat")


def test_cache_writes_once_and_reloads_the_same_pass(model, tmp_path):
    first = search(model, "W_E", "cosine", layers=[0, 2], cache=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    second = search(model, "W_E", "cosine", layers=[0, 2], cache=tmp_path)
    assert list(tmp_path.iterdir()) == files
    for name in ("token_values", "token_neurons", "neuron_values", "neuron_tokens", "power_sums"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=0, equal_nan=True)
    assert second.layers == [0, 2] and second.matrix == "W_E"
    search(model, "W_U", "cosine", layers=[0, 2], cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
