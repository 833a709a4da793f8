"""Logit lens and direct logit attribution: exact identities and an independent slow reference."""
import tempfile

import pytest
import torch

from helpers.methods.logit_lens import UNEMBED_BIAS, component_kind, logit_lens, logit_lens_of_tokens
from helpers.core.models import BUNDLED_MODELS, process_weights
from helpers.core.prompts import logit_diff, make_contrast

N_LAYERS = 3


def biased_random_model(seed: int = 5):
    """A small random GPT-2 whose biases and layer-norm parameters are random too.

    A fresh GPT-2 has zero biases and unit layer-norm weights, which would make the
    unembedding bias (from folding the final layer norm's bias) exactly zero and the identity
    tests below unable to fail.
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODELS["toy"])
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=N_LAYERS, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        hf_model = GPT2LMHeadModel(config).eval()
        for name, parameter in hf_model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.5)
            elif "ln_" in name:
                parameter.normal_(1.0, 0.2)
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        bridge = TransformerBridge.boot_transformers(folder, hf_model=hf_model, tokenizer=tokenizer, device="cpu", dtype=torch.float32)
    return process_weights(bridge)


@pytest.fixture(scope="module")
def model():
    return biased_random_model()


@pytest.fixture(scope="module")
def contrast(model):
    return make_contrast(model, "I climbed the apple tree and picked", "I climbed the lemon tree and picked")


@pytest.fixture(scope="module")
def lens(model, contrast):
    return logit_lens(model, contrast)


def test_labels_follow_the_study(lens):
    expected = [f"{layer}_{where}" for layer in range(N_LAYERS) for where in ("pre", "mid")] + ["final_post"]
    assert lens.labels == expected
    assert lens.lens.shape == (len(expected),)
    assert lens.components[:2] == ["embed", "pos_embed"] and lens.components[-1] == UNEMBED_BIAS
    assert [component_kind(c) for c in lens.components[2:4]] == ["attention", "MLP"]


@torch.no_grad()
def test_last_point_plus_unembedding_bias_is_the_true_logit_diff(model, contrast, lens):
    true = logit_diff(model(contrast.clean), contrast.target, contrast.other).item()
    bias = (model.b_U[contrast.target] - model.b_U[contrast.other]).item()
    assert lens.logit_diff == pytest.approx(true, abs=1e-6)
    assert lens.unembed_bias == pytest.approx(bias, abs=1e-7)
    assert abs(bias) > 1e-3, "the test model needs a visible unembedding bias"
    torch.testing.assert_close(torch.tensor(lens.final_point + lens.unembed_bias), torch.tensor(true), atol=1e-5, rtol=1e-5)


def test_attributions_sum_to_the_logit_diff(lens):
    torch.testing.assert_close(lens.attribution.sum(), torch.tensor(lens.logit_diff), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens.attribution[:-1].sum(), torch.tensor(lens.final_point), atol=1e-5, rtol=1e-5)


def test_each_step_of_the_lens_is_one_sublayer_attribution(lens):
    attr = dict(zip(lens.components, lens.attribution))
    point = dict(zip(lens.labels, lens.lens))
    torch.testing.assert_close(point["0_pre"], attr["embed"] + attr["pos_embed"], atol=1e-5, rtol=0)
    for layer in range(N_LAYERS):
        after_mlp = point[f"{layer + 1}_pre"] if layer + 1 < N_LAYERS else point["final_post"]
        torch.testing.assert_close(point[f"{layer}_mid"] - point[f"{layer}_pre"], attr[f"{layer}_attn_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(after_mlp - point[f"{layer}_mid"], attr[f"{layer}_mlp_out"], atol=1e-5, rtol=0)


@torch.no_grad()
def test_matches_a_slow_reference_built_without_the_cache(model, contrast, lens):
    """Residual streams from stop_at_layer, the final scale recomputed from the final residual."""
    direction = model.W_U[:, contrast.target] - model.W_U[:, contrast.other]
    pres = [model(contrast.clean, stop_at_layer=layer)[0, -1] for layer in range(N_LAYERS)]
    last_block_input = pres[-1][None, None]
    final_resid = model.blocks[N_LAYERS - 1](last_block_input)[0][0, -1]
    centred_final = final_resid - final_resid.mean()
    scale = (centred_final.pow(2).mean() + model.cfg.eps).sqrt()
    expected = [((r - r.mean()) / scale) @ direction for r in [*pres, final_resid]]
    ours = [lens.lens[lens.labels.index(label)] for label in [f"{layer}_pre" for layer in range(N_LAYERS)] + ["final_post"]]
    torch.testing.assert_close(torch.stack(ours), torch.stack(expected), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_own_scale_reads_each_point_through_the_real_final_layer_norm(model, contrast, lens):
    own = logit_lens(model, contrast, ln_scale="own")
    assert own.labels == lens.labels
    resid = model(contrast.clean, stop_at_layer=1)
    logits = model.unembed(model.ln_final(resid))
    expected = logit_diff(logits, contrast.target, contrast.other) - own.unembed_bias
    torch.testing.assert_close(own.lens[own.labels.index("1_pre")], expected[0], atol=1e-5, rtol=1e-5)
    # At the final point the two scales coincide.
    torch.testing.assert_close(own.lens[-1], lens.lens[-1], atol=1e-5, rtol=1e-5)


def test_biggest_step_is_found_where_a_sublayer_writes_most(lens):
    start, end, before, after = lens.biggest_step()
    steps = lens.lens[1:] - lens.lens[:-1]
    assert after - before == pytest.approx(steps.max().item(), abs=1e-6)
    assert lens.labels.index(end) == lens.labels.index(start) + 1


def test_bad_input(model, contrast):
    with pytest.raises(ValueError, match="unknown ln_scale"):
        logit_lens(model, contrast, ln_scale="mean")
    with pytest.raises(ValueError, match="unknown prompt"):
        logit_lens(model, contrast, prompt="both")
    with pytest.raises(ValueError, match=r"\[1, pos\]"):
        logit_lens_of_tokens(model, contrast.clean.repeat(2, 1), contrast.target, contrast.other)


def test_sublayer_after_names_the_writer():
    from helpers.methods.logit_lens import sublayer_after

    assert sublayer_after("31_mid") == "MLP 31" and sublayer_after("0_pre") == "attention 0"
    with pytest.raises(ValueError, match="no sublayer"):
        sublayer_after("final_post")


def test_every_extra_curve_gets_its_own_dash(model, contrast, lens):
    """The prose names the extra curves by their dash, so two of them must never share one."""
    from helpers.book.figures.patching import logit_lens_figure

    others = {"corrupted prompt": logit_lens(model, contrast, prompt="corrupted"), "own scale": logit_lens(model, contrast, ln_scale="own")}
    fig = logit_lens_figure(lens, "title", others=others)
    dashes = {trace.name: trace.line.dash for trace in fig.data}
    assert dashes["corrupted prompt"] == "dot" and dashes["own scale"] == "dashdot"
