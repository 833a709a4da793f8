"""Prompt sets, ablation and direct/indirect effects against naive references and planted truth.

The references here are the obvious loops: one hooked forward pass per pair, per kind, per
set of neurons. The planted models are small random GPT-2s edited so that the answer is known:
a neuron that reaches the logits only through a later neuron (all indirect), and a last-layer
neuron that writes the target direction (all direct).
"""
import pytest
import torch

from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.core.prompts import logit_diff, make_contrast, make_pairs
from helpers.core.stats import interval, mean_interval
from helpers.methods.ablation import KINDS, Reference, ablate, ablated_loss, corpus_windows, reference_activations
from helpers.methods.effects import direct_logit_attribution, neuron_effects
from helpers.methods.neuron_patching import neuron_patching
from helpers.methods.patching import over_pairs
from helpers.methods.prompt_sets import study_like_pairs, study_like_texts
from helpers.toy.corpus import documents

from support import CLEAN, CORRUPTED, mlp_parameters

FIRE = 6.0


@pytest.fixture(scope="module")
def windows(tiny):
    return corpus_windows(tiny, documents(30, seed=4), 32)


# --- prompt sets -------------------------------------------------------------------------

def test_prompt_set_is_study_like(tiny, pairs):
    assert pairs.clean.shape == pairs.corrupted.shape == (6, pairs.clean.shape[1])
    assert pairs.texts[0] == (CLEAN.replace(" apple", " apple tree and picked"), CORRUPTED.replace(" lemon", " lemon tree and picked"))
    differ = (pairs.clean != pairs.corrupted).sum(1)
    assert differ.tolist() == [1] * 6, "each pair differs in its noun only"
    assert len({c for c, _ in pairs.texts}) == 6
    assert study_like_texts(tiny, 6, seed=2) == list(pairs.texts), "seeded"
    single = pairs.pair(3)
    assert single.clean.shape == (1, pairs.clean.shape[1]) and single.clean_text == pairs.texts[3][0]
    assert single.str_tokens == tiny.to_str_tokens(pairs.clean[3])


def test_prompt_set_errors_are_one_line(tiny, monkeypatch):
    from helpers.core.english import STUDY_FRAME
    monkeypatch.setattr("helpers.methods.prompt_sets.FRAMES", [STUDY_FRAME.__class__("few", STUDY_FRAME.template, ("apple", "lemon", "pear"))])
    cases = [
        (lambda: make_pairs(tiny, [CLEAN, CLEAN + " now"], [CORRUPTED, CORRUPTED + " now"]), r"pair 1 .* is \d+ and \d+ tokens but pair 0 is \d+"),
        (lambda: make_pairs(tiny, [CLEAN], ["I went up the pear tree and picked a pear. I climbed up the lemon"]), r"differs in 2 positions, more than max_diff_positions=1"),
        (lambda: make_pairs(tiny, CLEAN, CORRUPTED), "make_pairs takes lists"),
        (lambda: make_pairs(tiny, [CLEAN, CLEAN], [CORRUPTED, CLEAN]), r"pair 1 .* does not differ: its clean and corrupted prompts are the same tokens"),
        (lambda: study_like_pairs(tiny, 50), r"only \d+ study-like pairs of 20 tokens \(the first pair.s length\) could be drawn for this tokenizer; ask for n_pairs <= \d+"),
        (lambda: over_pairs(neuron_patching, tiny, make_contrast(tiny, CLEAN, CORRUPTED).__class__(
            clean=torch.zeros(2, 3, dtype=torch.long), corrupted=torch.zeros(2, 4, dtype=torch.long), target=1, other=2,
            str_tokens=[], target_str="", other_str=""), layer=0), "a prompt set is clean and corrupted tokens of one shape"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_batched_patching_equals_the_per_pair_loop(tiny, pairs):
    result = over_pairs(neuron_patching, tiny, pairs, layer=1, positions="all")
    for i in range(pairs.n_pairs):
        single = neuron_patching(tiny, make_contrast(tiny, *pairs.texts[i]), 1, "all")
        torch.testing.assert_close(result.values[i], single.values)
        assert result.clean_diff[i].item() == pytest.approx(single.clean_diff)
    summary = result.summary()
    assert summary.shape == (tiny.cfg.d_mlp, 3)
    torch.testing.assert_close(summary[:, 0], result.values.mean(0).double())


def test_interval_brackets_the_mean_and_shrinks_with_more_pairs():
    generator = torch.Generator().manual_seed(0)
    few, many = torch.randn(20, generator=generator) + 2, torch.randn(1000, generator=generator) + 2
    a, b = interval(few), interval(many)
    assert a.low < a.mean < a.high and b.low < b.mean < b.high
    assert (b.high - b.low) < (a.high - a.low) / 5
    assert b.low < 2 < b.high, "the true mean of 2 lies in the 95% interval of 1,000 draws"
    torch.testing.assert_close(mean_interval(torch.stack([few, few + 1]))[1] - 1, mean_interval(few[None])[0])


# --- ablation ----------------------------------------------------------------------------

def naive_ablation(model, tokens, layer, neurons, value_fn, target, other) -> float:
    """One hooked forward pass on one prompt with ``neurons`` set by ``value_fn(act)``."""
    def hook(act, hook):
        act = act.clone()
        act[0, :, neurons] = value_fn(act[0, :, neurons])
        return act

    with torch.no_grad():
        return logit_diff(model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", hook)]), target, other).item()


def test_every_ablation_equals_its_naive_hooked_reference(tiny, pairs, windows):
    layer, sets = 1, {"one": [5], "layer": list(range(tiny.cfg.d_mlp)), "two": [3, 40]}
    reference = reference_activations(tiny, windows, layer)
    pinned = torch.randn(tiny.cfg.d_mlp)
    # a pool of one repeated vector: resampling from it is setting the neurons to that vector
    fixed = Reference(layer, reference.mean, pinned.expand(7, -1).clone())
    result = ablate(tiny, pairs, layer, sets, fixed, max_rows=5)
    values = {"zero": lambda a: torch.zeros_like(a), "negate": lambda a: -a}
    for i in range(pairs.n_pairs):
        tokens = pairs.clean[i : i + 1]
        for s, neurons in enumerate(sets.values()):
            values["mean"] = lambda a, n=neurons: reference.mean[n].expand_as(a)
            values["resample"] = lambda a, n=neurons: pinned[n].expand_as(a)
            for k, kind in enumerate(KINDS):
                expected = naive_ablation(tiny, tokens, layer, neurons, values[kind], pairs.target, pairs.other)
                assert result.ablated_diff[k, s, i].item() == pytest.approx(expected, abs=1e-4), (kind, s, i)
            with torch.no_grad():
                name = f"blocks.{layer}.mlp.hook_post"
                clean_act = tiny.run_with_cache(pairs.clean[i : i + 1], names_filter=name)[1][name]
            def restore(act, hook, n=neurons, clean_act=clean_act):
                act = act.clone()
                act[0, :, n] = clean_act[0, :, n]
                return act
            with torch.no_grad():
                restored = logit_diff(tiny.run_with_hooks(pairs.corrupted[i : i + 1], fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", restore)]), pairs.target, pairs.other)
            assert result.restored_diff[s, i].item() == pytest.approx(restored.item(), abs=1e-4)
    torch.testing.assert_close(result.necessity, (result.clean_diff - result.ablated_diff) / (result.clean_diff - result.corrupted_diff))


def test_resampling_draws_from_the_pool(tiny, pairs, windows):
    reference = reference_activations(tiny, windows, 0)
    assert reference.pool.shape == (windows.shape[0] * (windows.shape[1] - 1), tiny.cfg.d_mlp)
    torch.testing.assert_close(reference.mean, reference.pool.mean(0))
    a = ablate(tiny, pairs, 0, {"layer": list(range(tiny.cfg.d_mlp))}, reference, kinds=("resample",), seed=0)
    b = ablate(tiny, pairs, 0, {"layer": list(range(tiny.cfg.d_mlp))}, reference, kinds=("resample",), seed=0)
    c = ablate(tiny, pairs, 0, {"layer": list(range(tiny.cfg.d_mlp))}, reference, kinds=("resample",), seed=1)
    assert torch.equal(a.ablated_diff, b.ablated_diff), "seeded"
    assert not torch.equal(a.ablated_diff, c.ablated_diff), "another seed draws other positions"


def test_batched_ablation_equals_one_call_per_pair(tiny, pairs, windows):
    reference = reference_activations(tiny, windows, 2)
    kinds = ("zero", "mean", "negate")
    batched = ablate(tiny, pairs, 2, {"a": [1], "b": [2, 3]}, reference, kinds=kinds)
    for i in range(pairs.n_pairs):
        single = ablate(tiny, pairs.pair(i), 2, {"a": [1], "b": [2, 3]}, reference, kinds=kinds)
        torch.testing.assert_close(batched.ablated_diff[..., i], single.ablated_diff[..., 0], atol=1e-4, rtol=0)
        torch.testing.assert_close(batched.restored_prob[..., i], single.restored_prob[..., 0], atol=1e-5, rtol=0)


def test_ablation_bad_input_is_one_line(tiny, pairs, windows):
    reference = reference_activations(tiny, windows, 1)
    cases = [
        (lambda: ablate(tiny, pairs, 1, {"a": [1]}, reference, kinds=("shuffle",)), "unknown ablation kind 'shuffle': choose from zero, mean, resample, negate"),
        (lambda: reference_activations(tiny, windows[:2], 1), r"has 62 positions; a mean and a resampling pool need at least 256"),
        (lambda: ablate(tiny, pairs, 2, {"a": [1]}, reference), "reference activations are of layer 1, not 2"),
        (lambda: ablate(tiny, pairs, 1, {"a": [999]}, reference), "neuron 999 is out of range"),
        (lambda: ablate(tiny, pairs, 1, {}, reference), "no neurons to ablate"),
        # one pair of equal prompts (a valid null check elsewhere) has no gap to take a share of: -inf/NaN before
        (lambda: ablate(tiny, make_contrast(tiny, CLEAN, CLEAN), 1, {"a": [1]}, reference),
         r"pair\(s\) \[0\] have the same logit difference clean and corrupted: necessity and sufficiency are shares of that gap"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_corpus_loss_change_equals_a_naive_loss(tiny, windows):
    reference = reference_activations(tiny, windows, 1)
    an, a = tiny.to_single_token(" an"), tiny.to_single_token(" a")
    result = ablated_loss(tiny, windows, 1, [4, 9], reference.mean, an, a, batch_size=7)
    def loss(hooks):
        with torch.no_grad():
            logits = tiny.run_with_hooks(windows, fwd_hooks=hooks)
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction="none")
    def hook(act, hook):
        act = act.clone()
        act[..., [4, 9]] = reference.mean[[4, 9]]
        return act
    change = loss([("blocks.1.mlp.hook_post", hook)]) - loss([])
    torch.testing.assert_close(result.change["all"], change, atol=1e-4, rtol=0)
    wants_an = windows[:, 1:].reshape(-1) == an
    assert wants_an.any()
    torch.testing.assert_close(result.change["target"], change[wants_an], atol=1e-4, rtol=0)


# --- direct and indirect effects: planted ground truth -----------------------------------

def centred_unit(v: torch.Tensor) -> torch.Tensor:
    v = v - v.mean()
    return v / v.norm()


def set_neuron(model, neuron: Neuron, read: torch.Tensor, clean_x: torch.Tensor, corrupted_x: torch.Tensor, write: torch.Tensor) -> None:
    """Make ``neuron`` read ``read`` (fire FIRE on the clean input, -FIRE on the corrupted) and write ``write``."""
    separation = (clean_x - corrupted_x) @ read
    w_in = 2 * FIRE * read / separation
    W_in, b_in, W_out = mlp_parameters(model, neuron.layer)
    W_in[:, neuron.index] = w_in
    b_in[neuron.index] = -w_in @ (clean_x + corrupted_x) / 2
    W_out[neuron.index] = write


def normalized_inputs(model, pairs, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    name = f"blocks.{layer}.ln2.hook_normalized"
    with torch.no_grad():
        return (model.run_with_cache(pairs.clean, names_filter=name)[1][name][0, -1],
                model.run_with_cache(pairs.corrupted, names_filter=name)[1][name][0, -1])


@pytest.fixture(scope="module")
def planted_indirect():
    """L1N5 writes a direction orthogonal to the logit difference; L2N7 reads it and writes the target."""
    model = random_model(n_layers=4, d_model=32, d_mlp=48, n_heads=4, seed=5)
    pairs = make_pairs(model, [CLEAN], [CORRUPTED])
    target = centred_unit(model.W_U[:, pairs.target] - model.W_U[:, pairs.other]).detach()
    hidden = torch.randn(32, generator=torch.Generator().manual_seed(1))
    hidden = centred_unit(hidden - (hidden @ target) * target)  # no direct read-out at all
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        size = model.run_with_cache(pairs.corrupted, names_filter=final)[1][final][0, -1].norm()
        # writes small beside the residual stream, so that no norm's scale moves much
        clean_x, corrupted_x = normalized_inputs(model, pairs, 1)
        set_neuron(model, Neuron(1, 5), clean_x - corrupted_x, clean_x, corrupted_x, hidden * 0.1 * size / FIRE)
        # L2N7 fires when L1N5's clean activation is put into the corrupted run, not otherwise
        name, read = "blocks.1.mlp.hook_post", "blocks.2.ln2.hook_normalized"
        clean_act = model.run_with_cache(pairs.clean, names_filter=name)[1][name]
        def restore(act, hook):
            act = act.clone()
            act[..., 5] = clean_act[..., 5]
            return act
        with model.hooks(fwd_hooks=[(name, restore)]):
            restored_x = model.run_with_cache(pairs.corrupted, names_filter=read)[1][read][0, -1]
        corrupted_x = model.run_with_cache(pairs.corrupted, names_filter=read)[1][read][0, -1]
        set_neuron(model, Neuron(2, 7), hidden, restored_x, corrupted_x, target * 0.1 * size / FIRE)
    return model, pairs


def test_a_neuron_read_only_by_a_later_neuron_is_all_indirect(planted_indirect):
    model, pairs = planted_indirect
    effects = neuron_effects(model, pairs, "L1N5")
    total, direct = effects.total[0].item(), effects.direct[0].item()
    assert abs(total) > 0.05, "the planted chain moves the logit difference"
    assert abs(direct) < 1e-4 * abs(total), "its write is orthogonal to the read-out"
    assert effects.components == ("attn 2", "mlp 2", "attn 3", "mlp 3")
    assert effects.paths[:, 0].abs().argmax().item() == 1, "the path through mlp 2 carries it"
    assert effects.paths[1, 0].item() == pytest.approx(total, rel=0.1)
    assert effects.paths[[0, 2, 3], 0].abs().max() < 0.1 * abs(total)
    torch.testing.assert_close(effects.indirect, effects.total - effects.direct)


def test_a_last_layer_neuron_writing_the_target_is_all_direct(planted_indirect):
    model, pairs = planted_indirect
    target = centred_unit(model.W_U[:, pairs.target] - model.W_U[:, pairs.other]).detach()
    with torch.no_grad():
        clean_x, corrupted_x = normalized_inputs(model, pairs, 3)
        final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        size = model.run_with_cache(pairs.corrupted, names_filter=final)[1][final][0, -1].norm()
        # a write of a few percent of the residual's size, so that the final norm's scale barely moves
        write = target * 0.03 * size / FIRE
        set_neuron(model, Neuron(3, 2), clean_x - corrupted_x, clean_x, corrupted_x, write)
    effects = neuron_effects(model, pairs, "L3N2")
    assert effects.components == () and effects.paths.shape == (0, 1)
    assert abs(effects.total[0].item()) > 0.01
    assert effects.direct[0].item() == pytest.approx(effects.total[0].item(), rel=0.05), "only the final norm's rescaling differs"
    # the weights' view: one unit of activation moves the logit difference by W_out[n] @ (W_U[:, an] - W_U[:, a])
    dla = direct_logit_attribution(model, "L3N2")
    assert dla.shape == (model.cfg.d_vocab,)
    assert (dla[pairs.target] - dla[pairs.other]).item() == pytest.approx((write @ (model.W_U[:, pairs.target] - model.W_U[:, pairs.other])).item(), rel=1e-4)


def test_effects_over_a_batch_equal_one_pair_at_a_time(tiny, pairs):
    batched = neuron_effects(tiny, pairs, "L0N3", "necessity")
    for i in range(pairs.n_pairs):
        single = neuron_effects(tiny, pairs.pair(i), "L0N3", "necessity")
        for name in ("total", "direct", "clean_diff", "corrupted_diff"):
            torch.testing.assert_close(getattr(batched, name)[i : i + 1], getattr(single, name), atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.paths[:, i : i + 1], single.paths, atol=1e-5, rtol=0)


def test_total_effect_equals_neuron_patching(tiny, pairs):
    """The total effect is neuron patching at every position, unnormalised."""
    effects = neuron_effects(tiny, pairs, "L1N8")
    for i in range(pairs.n_pairs):
        patched = neuron_patching(tiny, pairs.pair(i), 1, "all", neurons=[8])
        restored = patched.corrupted_diff + patched.values[0].item() * (patched.clean_diff - patched.corrupted_diff)
        assert effects.total[i].item() == pytest.approx(restored - patched.corrupted_diff, abs=1e-4)


def test_effects_bad_input_is_one_line(tiny, pairs):
    for call, message in [
        (lambda: neuron_effects(tiny, pairs, "L9N1"), "L9N1 is out of range"),
        (lambda: neuron_effects(tiny, pairs, "L0N1", "sideways"), "unknown direction 'sideways'"),
        (lambda: neuron_effects(tiny, pairs, "neuron 3"), "is not a neuron name"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_the_final_norm_channel_is_exact():
    """The scale the method computes is the model's own ``ln_final.hook_scale``; with that scale
    held at the base run's, a hooked pass gives ``total - final_norm``; for a last-layer neuron,
    direct and final norm add up to the total (nothing else can carry it)."""
    from helpers.core.hooks import final_resid, mlp_post
    from helpers.methods.effects import final_scale

    tiny = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=2, weight_scale=8.0)
    pairs = study_like_pairs(tiny, 6, seed=2)

    _, cache = tiny.run_with_cache(pairs.corrupted, names_filter=lambda n: n in {"ln_final.hook_scale", final_resid(tiny)})
    torch.testing.assert_close(final_scale(tiny, cache[final_resid(tiny)][:, -1]), cache["ln_final.hook_scale"][:, -1, 0], atol=1e-6, rtol=1e-5)

    effects = neuron_effects(tiny, pairs, "L1N8")
    _, clean = tiny.run_with_cache(pairs.clean, names_filter=mlp_post(1))
    base_scale = cache["ln_final.hook_scale"]

    def set_neuron(act, hook):
        act = act.clone()
        act[..., 8] = clean[mlp_post(1)][..., 8]
        return act

    def hold_scale(scale, hook):
        return base_scale.to(scale.dtype)

    with torch.no_grad():
        held = tiny.run_with_hooks(pairs.corrupted, fwd_hooks=[(mlp_post(1), set_neuron), ("ln_final.hook_scale", hold_scale)])[:, -1]
        base = tiny(pairs.corrupted)[:, -1]
    diff = lambda logits: logits[:, pairs.target] - logits[:, pairs.other]  # noqa: E731
    torch.testing.assert_close(effects.total - effects.final_norm, diff(held) - diff(base), atol=2e-5, rtol=0)
    assert (effects.final_norm.abs() > 0.01 * effects.total.abs()).any(), "the channel is not empty on this model, so the check can fail"

    last = neuron_effects(tiny, pairs, "L2N5")
    assert last.components == ()
    torch.testing.assert_close(last.direct + last.final_norm, last.total, atol=2e-5, rtol=0)
    torch.testing.assert_close(last.rest, torch.zeros_like(last.rest), atol=2e-5, rtol=0)


def test_natural_effects_equal_a_loop_over_positions(windows):
    """At every corpus position followed by ' an' or ' a': the total is one mean-ablated pass
    against one clean pass, read at that position; the direct part is the write added to that
    position's final residual with the final norm's scale held at the clean pass's."""
    from helpers.core.hooks import final_resid, mlp_post
    from helpers.methods.ablation import natural_effects

    model = random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=2, weight_scale=8.0)
    windows = corpus_windows(model, documents(30, seed=4), 32)
    an, a = model.to_single_token(" an"), model.to_single_token(" a")
    value = torch.linspace(-0.1, 0.3, model.cfg.d_mlp)
    neuron = Neuron(1, 7)
    result = natural_effects(model, windows, neuron, value, an, a, batch_size=5)
    rows, positions = torch.nonzero((windows[:, 1:] == an) | (windows[:, 1:] == a), as_tuple=True)
    assert result.total.numel() == rows.numel() > 10 and result.before_target.tolist() == (windows[rows, positions + 1] == an).tolist()

    def ablate(act, hook):
        act = act.clone()
        act[..., 7] = value[7]
        return act

    diff = lambda logits: logits[..., an] - logits[..., a]  # noqa: E731
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(windows, names_filter=lambda n: n in {mlp_post(1), "ln_final.hook_scale"})
        ablated_logits = model.run_with_hooks(windows, fwd_hooks=[(mlp_post(1), ablate)])
    torch.testing.assert_close(result.total, (diff(ablated_logits) - diff(clean_logits))[rows, positions], atol=1e-4, rtol=0)
    for k in range(0, rows.numel(), 7):
        r, p = int(rows[k]), int(positions[k])
        write = (value[7] - cache[mlp_post(1)][r, p, 7]) * model.blocks[1].mlp.W_out[7]

        def add(resid, hook):
            resid = resid.clone()
            resid[0, p] += write
            return resid

        def hold(scale, hook):
            return cache["ln_final.hook_scale"][r : r + 1]

        with torch.no_grad():
            moved = model.run_with_hooks(windows[r : r + 1], fwd_hooks=[(final_resid(model), add), ("ln_final.hook_scale", hold)])
        assert result.direct[k].item() == pytest.approx((diff(moved) - diff(clean_logits[r : r + 1]))[0, p].item(), abs=1e-4)
