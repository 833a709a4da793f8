"""Every method of the book on three architectures, against the model's own hooked forward pass.

Random-weight models built offline from each architecture's configuration (``random_model``):
GPT-2 (learned positions, LayerNorm, GELU; here with a random unembedding bias, so that a
dropped or flipped ``b_U`` term shows), GPT-NeoX (Pythia: rotary on a quarter of each head,
attention and MLP in parallel) and Llama (rotary, RMSNorm, gated SiLU MLP, grouped-query
attention). Biases and norm weights are random too, and the weights are scaled up so that
patching effects are far above float rounding. Each method is compared with the obvious
reference: one hooked forward pass per patch, finite differences for gradients, a Python loop
for the scan.
"""
import pytest
import torch

from helpers.core.models import ARCHITECTURES, random_model
from helpers.core.prompts import logit_diff, make_contrast, make_pairs
from helpers.methods.ablation import KINDS, Reference, ablate
from helpers.methods.attribution import attribution_patching
from helpers.methods.congruence import output_weights, readout, search
from helpers.methods.effects import neuron_effects
from helpers.methods.layer_patching import layer_patching
from helpers.methods.logit_lens import logit_lens
from helpers.methods.neuron_patching import neuron_patching, post_hook
from helpers.methods.patching import runs
from helpers.methods.reference import naive_neuron_patching, naive_scan
from helpers.scan.store import scan

CLEAN = "I climbed up the apple tree and picked"
CORRUPTED = "I climbed up the lemon tree and picked"
LAYER = 1
# how much each architecture's weights are scaled up: a fresh GPT-2's attention barely moves
SCALE = {"gpt2": 16.0, "neox": 8.0, "llama": 8.0}


def build(architecture: str, dtype=torch.float32):
    return random_model(n_layers=3, d_model=32, d_mlp=40, n_heads=4, n_ctx=64, seed=3, architecture=architecture,
                        random_biases=True, unembed_bias=architecture == "gpt2", weight_scale=SCALE[architecture],
                        dtype="float64" if dtype == torch.float64 else "float32")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    return build(request.param)


@pytest.fixture(scope="module")
def contrast(model):
    return make_contrast(model, CLEAN, CORRUPTED)


def diff_of(model, tokens, contrast, hooks=()) -> torch.Tensor:
    with torch.no_grad():
        return logit_diff(model.run_with_hooks(tokens, fwd_hooks=list(hooks)), contrast.target, contrast.other)


def test_the_models_are_what_they_claim(model, contrast):
    cfg = model.cfg
    kind = {"LN": "gpt2" if cfg.positional_embedding_type == "standard" else "neox", "RMS": "llama"}[cfg.normalization_type]
    assert cfg.positional_embedding_type == ("standard" if kind == "gpt2" else "rotary")
    assert cfg.gated_mlp == (kind == "llama") and cfg.parallel_attn_mlp == (kind == "neox")
    assert (model.b_U.abs().max() > 0.5) == (kind == "gpt2")
    clean, corrupted = diff_of(model, contrast.clean, contrast), diff_of(model, contrast.corrupted, contrast)
    assert (clean - corrupted).abs() > 0.05, "the contrast must move the metric well above rounding"


def test_logit_lens_adds_up_to_the_models_logit_difference(model, contrast):
    lens = logit_lens(model, contrast)
    true = diff_of(model, contrast.clean, contrast).item()
    assert lens.logit_diff == pytest.approx(true, abs=1e-4)
    assert float(lens.attribution.sum()) == pytest.approx(true, abs=1e-4)
    assert lens.final_point + lens.unembed_bias == pytest.approx(true, abs=1e-4)
    assert lens.labels == [f"{l}_{w}" for l in range(3) for w in ("pre", "mid")] + ["final_post"]
    assert ("pos_embed" in lens.components) == (model.cfg.positional_embedding_type == "standard")


def test_layer_patching_equals_one_hooked_pass_per_cell(model, contrast):
    ours = layer_patching(model, contrast)
    names = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(contrast.clean)
    clean, corrupted = diff_of(model, contrast.clean, contrast), diff_of(model, contrast.corrupted, contrast)
    for component, hook in names.items():
        for layer in range(3):
            for pos in range(contrast.clean.shape[1]):
                name = f"blocks.{layer}.{hook}"

                def patch(x, hook, name=name, pos=pos):
                    x = x.clone()
                    x[:, pos] = clean_cache[name][:, pos]
                    return x

                patched = diff_of(model, contrast.corrupted, contrast, [(name, patch)])
                expected = ((patched - corrupted) / (clean - corrupted)).item()
                assert ours[component].values[layer, pos].item() == pytest.approx(expected, abs=2e-4), (component, layer, pos)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_neuron_patching_equals_one_hooked_pass_per_neuron(model, contrast, positions):
    ours = neuron_patching(model, contrast, LAYER, positions)
    expected = naive_neuron_patching(model, contrast, LAYER, range(model.cfg.d_mlp), positions)
    torch.testing.assert_close(ours.values, expected, atol=2e-4, rtol=0)
    # GPT-2 blocks run on the fast engine; the others fall back to the model's own forward pass
    assert ours.engine == ("suffix" if model.cfg.normalization_type == "LN" and not model.cfg.parallel_attn_mlp
                           and model.cfg.positional_embedding_type == "standard" else "full")


def test_attribution_equals_finite_differences(model, contrast):
    """The gradient estimate is the first-order term: (f(a + h d) - f(a - h d)) / 2h in float64
    (h = 0.01: Llama's attention takes its softmax in float32, whose rounding a smaller step
    would magnify)."""
    wide = build(_architecture(model), torch.float64)
    estimate = attribution_patching(wide, contrast, positions="all")
    base, donor = runs(contrast, "sufficiency")
    with torch.no_grad():
        _, base_cache = wide.run_with_cache(base, names_filter=post_hook(LAYER))
        _, donor_cache = wide.run_with_cache(donor, names_filter=post_hook(LAYER))
    delta = donor_cache[post_hook(LAYER)] - base_cache[post_hook(LAYER)]
    step = 1e-2
    for index in range(0, wide.cfg.d_mlp, 7):
        def nudge(sign):
            def hook(act, hook):
                act = act.clone()
                act[..., index] += sign * step * delta[..., index]
                return act
            return [(post_hook(LAYER), hook)]
        slope = (diff_of(wide, base, contrast, nudge(1)) - diff_of(wide, base, contrast, nudge(-1))) / (2 * step)
        scaled = slope.item() / (estimate.clean_diff - estimate.corrupted_diff)
        assert estimate.values[LAYER, index].item() == pytest.approx(scaled, abs=1e-4), index


def _architecture(model) -> str:
    return model.cfg.model_name.split()[1]


def test_every_ablation_equals_its_hooked_pass(model):
    pairs = make_pairs(model, [CLEAN], [CORRUPTED])
    d_mlp = model.cfg.d_mlp
    mean, pool = torch.randn(d_mlp), torch.randn(1, d_mlp)
    sets = {"one": [5], "three": [0, 9, 30]}
    result = ablate(model, pairs, LAYER, sets, Reference(LAYER, mean, pool))
    values = {"zero": lambda a, n: torch.zeros_like(a), "mean": lambda a, n: mean[n].expand_as(a),
              "resample": lambda a, n: pool[0, n].expand_as(a), "negate": lambda a, n: -a}
    for s, neurons in enumerate(sets.values()):
        for k, kind in enumerate(KINDS):
            def hook(act, hook, neurons=neurons, kind=kind):
                act = act.clone()
                act[0, :, neurons] = values[kind](act[0, :, neurons], neurons)
                return act
            expected = diff_of(model, pairs.clean, pairs, [(post_hook(LAYER), hook)]).item()
            assert result.ablated_diff[k, s, 0].item() == pytest.approx(expected, abs=2e-4), (kind, s)


def test_total_and_direct_effects_equal_hooked_passes(model):
    """Total: the neuron's clean activation in the corrupted run. Direct: its change added to the
    final residual alone, with the final norm's scale held at the run's own value."""
    pairs = make_pairs(model, [CLEAN], [CORRUPTED])
    neuron = int(neuron_patching(model, pairs, LAYER, "all").values.abs().argmax())  # the neuron that matters most
    effects = neuron_effects(model, pairs, f"L{LAYER}N{neuron}")
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(pairs.clean, names_filter=post_hook(LAYER))
        _, base_cache = model.run_with_cache(pairs.corrupted, names_filter=lambda n: n in {post_hook(LAYER), "ln_final.hook_scale"})
    change = clean_cache[post_hook(LAYER)][..., neuron] - base_cache[post_hook(LAYER)][..., neuron]

    def set_neuron(act, hook):
        act = act.clone()
        act[..., neuron] = clean_cache[post_hook(LAYER)][..., neuron]
        return act

    def add_write(resid, hook):
        resid = resid.clone()
        resid[:, -1] += change[:, -1, None] * model.blocks[LAYER].mlp.W_out[neuron]
        return resid

    def freeze_scale(scale, hook):
        return base_cache["ln_final.hook_scale"]

    base = diff_of(model, pairs.corrupted, pairs)
    total = diff_of(model, pairs.corrupted, pairs, [(post_hook(LAYER), set_neuron)]) - base
    direct = diff_of(model, pairs.corrupted, pairs, [(final, add_write), ("ln_final.hook_scale", freeze_scale)]) - base
    assert abs(total.item()) > 1e-3 and abs(direct.item()) > 1e-3
    assert effects.total.item() == pytest.approx(total.item(), abs=2e-4)
    assert effects.direct.item() == pytest.approx(direct.item(), abs=2e-4)


def test_scan_equals_a_loop_over_tokens_and_keeps_the_unembedding_bias(model, tmp_path):
    docs = ["I picked an apple and a pear from the old tree.", "An owl ate an egg, a plum and an hour of it."]
    neurons = ["L0N3", "L2N11"]
    got = scan(model, docs, neurons, tmp_path / "scan", batch_size=2, max_tokens=12, progress=False).load()
    ref = naive_scan(model, docs, neurons, 12)
    torch.testing.assert_close(got["activations"], ref["activations"], rtol=1e-4, atol=1e-4)
    top2 = ref["logits"].topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-3
    assert clear.float().mean() > 0.9
    assert torch.equal(got["prediction"].long()[clear], ref["logits"].argmax(-1)[clear])
    if _architecture(model) == "gpt2":
        without_bias = (ref["logits"] - model.b_U.detach()).argmax(-1)
        assert (without_bias != ref["logits"].argmax(-1)).any(), "the bias must decide some top-1, or dropping it could pass"


def test_congruence_matrices_are_the_ones_the_forward_pass_uses(model):
    tokens = model.to_tokens("an apple and a pear")
    names = (post_hook(LAYER), f"blocks.{LAYER}.hook_mlp_out", "unembed.hook_in")
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    b_out = model.blocks[LAYER].mlp.b_out
    mlp_out = cache[post_hook(LAYER)] @ output_weights(model)[LAYER] + (0 if b_out is None else b_out)
    torch.testing.assert_close(mlp_out, cache[f"blocks.{LAYER}.hook_mlp_out"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache["unembed.hook_in"] @ readout(model, "W_U") + model.b_U, logits, rtol=1e-4, atol=1e-4)
    result = search(model, "W_U", "dot", neuron_chunk=16, token_chunk=300)
    dense = output_weights(model).double().reshape(-1, model.cfg.d_model) @ readout(model, "W_U").double()  # [neuron, vocab]
    by_token = dense.topk(2, dim=0)
    torch.testing.assert_close(result.token_values.double(), by_token.values.T, rtol=1e-5, atol=1e-5)
    assert torch.equal(result.token_neurons, by_token.indices.T)
