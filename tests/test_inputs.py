"""The inputs page's methods against slow references and planted ground truth.

The decomposition must add up to the model's own pre-activation (``hook_pre``) to float
rounding, and each head's term must equal a per-head loop over a full cache. Head patching
must equal one hooked forward pass per head and pair; path patching into the neuron must
equal a hooked run that adds the head's change to the neuron's norm input alone.

The planted model: a small random GPT-2 whose embeddings carry a "vowel" feature ``f`` (added
to every noun taking `` an``, subtracted from every noun taking `` a``), one head (L1H2)
whose output matrix maps what its values read at the noun onto a fresh direction ``g``, and a
neuron (L2N7) that reads ``g``. The decomposition and head patching must rank that head
first, and the embedding probe's direction must have a cosine above :data:`PROBE_COSINE`
with ``f``.
"""
import pytest
import torch

from helpers.core.models import random_model
from helpers.core.names import Head, Neuron
from helpers.core.prompts import make_contrast
from helpers.core.checks import check_head
from helpers.methods.inputs import (
    decompose_inputs, head_paths, head_patching, input_direction, neuron_bias, neuron_input_patching, read_pairs, read_prompts,
    top_head, top_heads, upstream_neurons,
)
from helpers.methods.probes import embedding_probe, fit_probe, ov_cosine, probe_words, residual_probe
from helpers.methods.prompt_sets import study_like_pairs
from helpers.core.english import article_for

from support import mlp_parameters

NEURON = Neuron(2, 5)
PLANTED_HEAD = Head(1, 2)
PLANTED_NEURON = Neuron(2, 7)
PROBE_COSINE = 0.9  # the embedding probe's direction against the planted feature
FIRE = 6.0


def sources(model, tokens, names):
    with torch.no_grad():
        return model.run_with_cache(tokens, names_filter=lambda n: n in names)[1]


# --- the decomposition is exact -----------------------------------------------------------

@pytest.fixture(scope="module")
def biased():
    """``tiny``'s shape with every bias and norm weight drawn at random: a fresh model's zero
    biases hide a dropped bias term (the attention biases, the neuron's own bias)."""
    model = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=11, random_biases=True)
    return model, study_like_pairs(model, 6, seed=2)


@pytest.mark.parametrize("which", ["tiny", "biased"])
@pytest.mark.parametrize("neuron", [Neuron(0, 3), NEURON])
def test_the_parts_sum_to_the_models_pre_activation(request, tiny, pairs, which, neuron):
    model, pairs = (tiny, pairs) if which == "tiny" else request.getfixturevalue("biased")
    dec = decompose_inputs(model, pairs, neuron, max_rows=5)
    pre = f"blocks.{neuron.layer}.mlp.hook_pre"
    clean = sources(model, pairs.clean, {pre})[pre][:, -1, neuron.index]
    torch.testing.assert_close(dec.clean_pre, clean, msg="the decomposition should read the model's own hook_pre")
    torch.testing.assert_close(dec.clean.sum(0), dec.clean_pre, atol=1e-5, rtol=0, msg="clean parts must sum to hook_pre: is b_in the forward's bias?")
    torch.testing.assert_close(dec.corrupted.sum(0), dec.corrupted_pre, atol=1e-5, rtol=0)
    assert dec.clean.shape == (len(dec.labels), pairs.n_pairs)
    assert dec.labels[:3] == ("embed", "pos_embed", "L0H0") and dec.labels[-1] == "b_in"
    if which == "biased":  # each bias term is large enough that leaving it out breaks the sum
        for label in ("b_O", "b_in"):
            assert dec.clean[dec.index(label)].abs().min() > 1e-3, label


def test_the_neurons_bias_is_the_one_the_forward_pass_adds(biased):
    """``neuron_bias`` against the model itself: the pre-activation minus the normalised input
    times ``W_in`` (the processed bias differs from the unprocessed ``b_in`` under random norms)."""
    model, pairs = biased
    layer = NEURON.layer
    names = {f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.mlp.hook_pre"}
    cache = sources(model, pairs.clean, names)
    x = cache[f"blocks.{layer}.hook_resid_mid"][:, -1]
    x = x - x.mean(-1, keepdim=True)
    normalized = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    added = cache[f"blocks.{layer}.mlp.hook_pre"][:, -1, NEURON.index] - normalized @ model.blocks[layer].mlp.W_in[:, NEURON.index]
    torch.testing.assert_close(added, neuron_bias(model, NEURON).expand_as(added), atol=1e-5, rtol=0)
    assert abs(float(neuron_bias(model, NEURON).detach())) > 1e-3


def test_each_head_term_equals_a_loop_over_a_full_cache(tiny, pairs):
    dec = decompose_inputs(tiny, pairs, NEURON)
    L = NEURON.layer
    names = {f"blocks.{l}.attn.hook_z" for l in range(L + 1)} | {f"blocks.{L}.ln2.hook_scale", "blocks.1.hook_mlp_out"}
    cache = sources(tiny, pairs.clean, names)
    w = tiny.blocks[L].mlp.W_in[:, NEURON.index].detach()
    scale = cache[f"blocks.{L}.ln2.hook_scale"][:, -1, 0]
    for i in range(pairs.n_pairs):
        for layer in range(L + 1):
            for h in range(tiny.cfg.n_heads):
                write = cache[f"blocks.{layer}.attn.hook_z"][i, -1, h] @ tiny.W_O[layer, h]
                expected = ((write - write.mean()) @ w) / scale[i]
                assert dec.clean[dec.index(str(Head(layer, h))), i].item() == pytest.approx(expected.item(), abs=1e-5)
        mlp = cache["blocks.1.hook_mlp_out"][i, -1]
        assert dec.clean[dec.index("mlp 1"), i].item() == pytest.approx((((mlp - mlp.mean()) @ w) / scale[i]).item(), abs=1e-5)
    assert dec.clean[dec.index("b_in")].tolist() == pytest.approx([neuron_bias(tiny, NEURON).item()] * pairs.n_pairs)
    # the per-neuron split of an MLP layer adds up to the layer's term less its output bias
    b_out = tiny.blocks[1].mlp.b_out.detach()
    bias_term = ((b_out - b_out.mean()) @ w) / scale
    torch.testing.assert_close(dec.neurons_clean[1].sum(0) + bias_term, dec.clean[dec.index("mlp 1")], atol=1e-5, rtol=0)


# --- head patching and path patching against hooked runs ---------------------------------

def naive_head_patch(model, base, source_cache, neuron, layer, head, position=None):
    """One hooked forward pass: head ``(layer, head)``'s z from the source run, the neuron read."""
    def patch(z, hook):
        z = z.clone()
        where = slice(None) if position is None else position
        z[:, where, head] = source_cache[f"blocks.{layer}.attn.hook_z"][:, where, head]
        return z

    name = f"blocks.{neuron.layer}.mlp.hook_post"
    kept = {}
    with torch.no_grad():
        model.run_with_hooks(base, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch), (name, keeper(kept, neuron))])
    return kept["a"]


def keeper(kept, neuron):
    """A hook that keeps the neuron's last-position value and changes nothing."""
    def hook(x, hook):
        kept["a"] = x[:, -1, neuron.index].clone()
        return x
    return hook


def test_head_patching_equals_one_hooked_pass_per_head(tiny, pairs):
    result = head_patching(tiny, pairs, NEURON, "all", max_rows=7)
    assert result.values.shape == (3, 4, pairs.n_pairs) and result.index_axis_names == ("layer", "head", "pair")
    for i in range(0, pairs.n_pairs, 2):
        cache = sources(tiny, pairs.clean[i : i + 1], {f"blocks.{l}.attn.hook_z" for l in range(3)})
        for layer, head in [(0, 1), (1, 3), (2, 0)]:
            expected = naive_head_patch(tiny, pairs.corrupted[i : i + 1], cache, NEURON, layer, head)
            assert result.values[layer, head, i].item() == pytest.approx(expected.item(), abs=1e-5)
    one = pairs.pair(1)
    by_position = head_patching(tiny, one, NEURON, "each", max_rows=50)
    assert by_position.values.shape == (3, one.clean.shape[1], 4)
    cache = sources(tiny, one.clean, {f"blocks.{l}.attn.hook_z" for l in range(3)})
    for layer, position, head in [(0, 3, 2), (1, 15, 0), (2, 19, 3)]:
        expected = naive_head_patch(tiny, one.corrupted, cache, NEURON, layer, head, position)
        assert by_position.values[layer, position, head].item() == pytest.approx(expected.item(), abs=1e-5)
    chosen = head_patching(tiny, one, NEURON, "each", heads=["L1H0"])
    torch.testing.assert_close(chosen.values[1, :, 0], by_position.values[1, :, 0])
    assert torch.isnan(chosen.values[0]).all()
    # the patch changes nothing when both runs are the same prompt
    same = make_contrast(tiny, pairs.texts[0][0], pairs.texts[0][0])
    assert head_patching(tiny, same, NEURON, "all").effect.abs().max() < 1e-5


def test_path_patching_equals_a_hooked_run_on_the_norm_input(tiny, pairs):
    paths = head_paths(tiny, pairs, NEURON)
    L = NEURON.layer
    z = {f"blocks.{l}.attn.hook_z" for l in range(L + 1)}
    clean, corrupted = sources(tiny, pairs.clean, z), sources(tiny, pairs.corrupted, z)
    for layer, head in [(0, 2), (1, 1), (2, 3)]:
        name = f"blocks.{layer}.attn.hook_z"
        delta = (clean[name][:, -1, head] - corrupted[name][:, -1, head]) @ tiny.W_O[layer, head]

        def add(x, hook, delta=delta):
            x = x.clone()
            x[:, -1] += delta
            return x

        kept = {}
        with torch.no_grad():
            tiny.run_with_hooks(pairs.corrupted, fwd_hooks=[(f"blocks.{L}.ln2.hook_in", add),
                                                           (f"blocks.{L}.mlp.hook_post", keeper(kept, NEURON))])
        torch.testing.assert_close(paths.values[layer, head], kept["a"], atol=1e-5, rtol=0)
    # a head of the neuron's own layer reaches it only directly: path and full patching agree
    patched = head_patching(tiny, pairs, NEURON)
    torch.testing.assert_close(paths.values[L], patched.values[L], atol=1e-5, rtol=0)


def test_readings_of_prompts(tiny, pairs):
    clean, corrupted = read_pairs(tiny, pairs, NEURON, max_rows=4)
    single = read_prompts(tiny, [pairs.texts[2][0], pairs.texts[2][1]], NEURON, pairs.target)
    assert clean.activation[2].item() == pytest.approx(single.activation[0].item(), abs=1e-5)
    assert corrupted.p_target[2].item() == pytest.approx(single.p_target[1].item(), abs=1e-6)
    assert len(clean.prompts) == pairs.n_pairs


# --- planted ground truth -----------------------------------------------------------------

def plant_vowel_circuit(model):
    """Plant the feature in the embeddings, the head that carries it and the neuron that reads it;
    return the feature ``f``."""
    generator = torch.Generator().manual_seed(5)
    d = model.cfg.d_model
    f, g = torch.randn(d, generator=generator), torch.randn(d, generator=generator)
    f, g = f - f.mean(), g - g.mean()
    g = g - (g @ f) / (f @ f) * f
    f, g = f / f.norm(), g / g.norm()
    words = probe_words(model)
    ids = torch.tensor([model.to_tokens(" " + w, prepend_bos=False)[0, 0].item() for w in words])
    sign = torch.tensor([1.0 if article_for(w) == "an" else -1.0 for w in words])
    params = dict(model.named_parameters())
    with torch.no_grad():
        params["transformer.wte._original_component.weight"][ids] += 0.5 * sign[:, None] * f
        contrast = make_contrast(model)
        noun = contrast.diff_positions[0]
        z = f"blocks.{PLANTED_HEAD.layer}.attn.hook_z"
        u = sources(model, contrast.clean, {z})[z][0, noun, PLANTED_HEAD.index] - sources(model, contrast.corrupted, {z})[z][0, noun, PLANTED_HEAD.index]
        d_head = model.cfg.d_head
        rows = slice(PLANTED_HEAD.index * d_head, (PLANTED_HEAD.index + 1) * d_head)
        params[f"transformer.h.{PLANTED_HEAD.layer}._original_component.attn.o._original_component.weight"][rows] = 40 * torch.outer(u / u.norm().pow(2), g)
        read = f"blocks.{PLANTED_NEURON.layer}.ln2.hook_normalized"
        x_clean, x_corrupted = sources(model, contrast.clean, {read})[read][0, -1], sources(model, contrast.corrupted, {read})[read][0, -1]
        w_in = 2 * FIRE * g / ((x_clean - x_corrupted) @ g)
        W_in, b_in, _ = mlp_parameters(model, PLANTED_NEURON.layer)
        W_in[:, PLANTED_NEURON.index] = w_in
        b_in[PLANTED_NEURON.index] = -w_in @ (x_clean + x_corrupted) / 2
    return f


@pytest.fixture(scope="module")
def planted():
    model = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=7)
    feature = plant_vowel_circuit(model)
    return model, feature, study_like_pairs(model, 6, seed=1)


def test_the_planted_neuron_fires_on_the_clean_prompts(planted):
    model, _, pairs = planted
    dec = decompose_inputs(model, pairs, PLANTED_NEURON)
    assert (dec.clean_pre - dec.corrupted_pre).min() > 2, "the planted neuron should tell every pair apart"


def test_decomposition_and_patching_put_the_planted_head_first(planted):
    model, _, pairs = planted
    dec = decompose_inputs(model, pairs, PLANTED_NEURON)
    assert dec.labels[int(dec.diff.mean(1).abs().argmax())] == str(PLANTED_HEAD)
    assert top_head(head_patching(model, pairs, PLANTED_NEURON)) == PLANTED_HEAD
    assert top_head(head_paths(model, pairs, PLANTED_NEURON)) == PLANTED_HEAD


def test_the_probe_finds_the_planted_feature(planted):
    model, feature, pairs = planted
    probe = embedding_probe(model)
    cosine = torch.nn.functional.cosine_similarity(probe.direction, feature, dim=0).item()
    assert cosine > PROBE_COSINE, f"the probe's direction should be the planted feature (cosine {cosine:.3f})"
    assert probe.accuracy > 0.95
    assert probe.correct[probe.misleading].all(), "the feature follows the sound, so misleading letters do not fool the probe"
    residual = residual_probe(model, pairs, PLANTED_HEAD.layer, folds=3)
    assert residual.accuracy >= 0.9
    # the feature sent through the planted head's OV circuit points along the neuron's input
    assert ov_cosine(model, PLANTED_HEAD, feature, PLANTED_NEURON) > 0.5


def test_a_probe_separates_planted_classes_and_holds_out_every_example():
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(20, generator=generator)
    x = torch.randn(60, 20, generator=generator)
    labels = x @ direction > 0
    probe = fit_probe(x, labels, folds=5)
    assert probe.accuracy > 0.85 and probe.heldout.shape == (60,)
    assert torch.nn.functional.cosine_similarity(probe.direction, direction, dim=0) > 0.8
    assert 0.3 < probe.shuffled_accuracy < 0.7, "shuffled labels leave the probe at chance"


def test_word_families_share_a_fold_and_the_null_is_the_same_cosine_for_random_directions(tiny):
    from helpers.methods.probes import ov_cosine_null, word_families

    groups = word_families(["hour", "hours", "hourglass", "apple", "apples", "pear"]).tolist()
    assert groups[0] == groups[1] == groups[2] and groups[3] == groups[4] and len(set(groups)) == 3
    null = ov_cosine_null(tiny, "L1H0", "L2N3", samples=50, seed=1)
    direction = torch.randn(50, tiny.cfg.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    slow = torch.tensor([ov_cosine(tiny, "L1H0", d, "L2N3") for d in direction])
    torch.testing.assert_close(null, slow, atol=1e-5, rtol=0)


# --- bad input: one line each --------------------------------------------------------------

def test_bad_input_is_one_line(tiny, pairs):
    dec = decompose_inputs(tiny, pairs, NEURON)
    few = torch.tensor([True] * 3 + [False] * 10)
    cases = [
        (lambda: check_head(tiny, "L9H0"), r"head L9H0 does not exist: this model has layers 0-2 and heads 0-3 per layer"),
        (lambda: check_head(tiny, "layer 1 head 2"), r"is not a head name; write it as L<layer>H<index>"),
        (lambda: dec.index("L7H1"), r"'L7H1' is not a component of this decomposition; name one of embed, pos_embed, L0H0-L2H3, b_O, mlp 0-1, b_in"),
        (lambda: fit_probe(torch.randn(13, 4), few), r"the ' an' class has 3 distinct examples, too few to split into 5 folds; the probe needs at least 5 per class"),
        (lambda: head_patching(tiny, pairs, NEURON, "every"), r"unknown positions 'every'"),
        (lambda: head_patching(tiny, pairs, NEURON, "each"), r"this method takes one prompt pair"),
        (lambda: head_patching(tiny, pairs, Neuron(1, 0), heads=["L2H0"]), r"heads must be a non-empty list of heads in layers 0-1"),
        (lambda: residual_probe(tiny, pairs, 5), r"layer 5 is out of range"),
        (lambda: decompose_inputs(tiny, pairs, "L3N0"), r"L3N0 is out of range"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_input_direction_is_the_centred_weights(tiny):
    w = input_direction(tiny, NEURON)
    assert w.mean().abs() < 1e-6
    torch.testing.assert_close(w + tiny.blocks[2].mlp.W_in[:, 5].mean(), tiny.blocks[2].mlp.W_in[:, 5])


def test_patching_upstream_neurons_equals_a_hooked_pass(tiny, pairs):
    sources = [Neuron(0, 4), Neuron(1, 9), Neuron(1, 30)]
    result = neuron_input_patching(tiny, pairs, NEURON, sources)
    assert result.values.shape == (3, pairs.n_pairs) and result.sources == tuple(sources)
    cache = sources_of(tiny, pairs.clean)
    for s, source in enumerate(sources):
        def restore(act, hook, source=source):
            act = act.clone()
            act[:, :, source.index] = cache[f"blocks.{source.layer}.mlp.hook_post"][:, :, source.index]
            return act

        kept = {}
        with torch.no_grad():
            tiny.run_with_hooks(pairs.corrupted, fwd_hooks=[(f"blocks.{source.layer}.mlp.hook_post", restore), (f"blocks.{NEURON.layer}.mlp.hook_post", keeper(kept, NEURON))])
        torch.testing.assert_close(result.values[s], kept["a"], atol=1e-5, rtol=0)
    assert upstream_neurons(tiny, NEURON, ["L0N4", "L2N1", "L9N0", "L1N47"]) == [Neuron(0, 4), Neuron(1, 47)]
    with pytest.raises(ValueError, match=r"sources must be a non-empty list of neurons in layers before L2N5's \(2\); L2N1 given there") as info:
        neuron_input_patching(tiny, pairs, NEURON, ["L2N1"])
    assert "\n" not in str(info.value)


def sources_of(model, tokens):
    return sources(model, tokens, {f"blocks.{l}.mlp.hook_post" for l in range(2)})


def test_top_heads_orders_by_the_mean_effect(tiny, pairs):
    result = head_patching(tiny, pairs, NEURON)
    heads = top_heads(result, 3)
    sizes = [abs(float(result.effect[h.layer, h.index].mean())) for h in heads]
    assert sizes == sorted(sizes, reverse=True) and heads[0] == top_head(result)
    assert sizes[0] == pytest.approx(float(result.effect.mean(-1).abs().max()))
