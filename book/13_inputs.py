# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What drives the neuron: its inputs, the head that brings the noun, the vowel direction
#
# The earlier pages follow the neuron forward, to the logits. This one looks back: what in the
# residual stream makes the neuron fire on the clean prompt and not on the corrupted one? The
# study stopped at the neuron; its judges asked how the inputs to the layer activate it, and a
# follow-up exploration of the same neuron {cite}`nanda2023anneuron` named leads without
# measuring them: an attention head that attends from `' picked'` to the fruit, candidate
# "vowel" neurons upstream, a linear direction in the token embeddings that tells vowel-initial
# words apart, and an input that builds from about the middle of the model.
#
# Three views answer the question. The neuron's pre-activation is split exactly into the
# contributions of every upstream component, read through the layer norm with its scale
# frozen {cite}`elhage2021framework`. Activation patching of every head, with the neuron's
# activation as the metric, and path patching from each head straight into the neuron
# {cite}`wang2023ioi` {cite}`goldowskydill2023path`, say which head moves the noun. Linear
# probes {cite}`alain2016probes` look for the direction that separates nouns taking `' an'`
# from nouns taking `' a'`. The study is {cite}`miller2023an`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
patch_pairs = 48
direction = "sufficiency"
top_k = 10
probe_folds = 5

# %% tags=["remove-cell"]
from helpers.book.display import glue, note, paper_beside, show, show_attention, show_table
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import drives_findings
from helpers.book.figures.inputs import (
    decomposition_figure, head_grid_figure, positions_figure, probe_figure, readings_figure, top_components_figure,
)
from helpers.book.page import setup_page
from helpers.book.summaries.inputs import (
    attention_summary, decomposition_summary, head_patching_summary, lead_rows, leads_note, position_summary,
    probe_summary, prompts_summary, prompts_table, top_neurons,
)
from helpers.methods.inputs import (
    attention_pattern, candidate_patching, decompose_inputs, head_paths, head_patching, read_pairs, read_prompts, top_head, top_heads,
)
from helpers.methods.probes import embedding_probe, ov_cosine, ov_cosine_null, residual_probe
from helpers.paper import LEADS

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "prompt_set", patch_pairs=patch_pairs, direction=direction)
pairs, patch_set, target = page.pairs, page.prompt_set(patch_pairs), page.target

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## The neuron's input, split exactly
#
# At the last position the neuron reads the residual stream before its MLP, centred and
# divided by the layer norm's scale, through its row of input weights, plus its bias. The
# residual stream is a sum: the token and position embeddings, every head's output and every
# attention bias up to the neuron's layer, every MLP layer before it. With the scale frozen at
# the run's own value, the norm is linear, so each of these writes contributes its own term,
# and the terms add up to the pre-activation the model computes.

# %% tags=["remove-cell"]
decomposition = decompose_inputs(page.model, pairs, page.neuron)
glue(**decomposition_summary(decomposition))

# %% [markdown]
# On {glue:text}`n_pairs` pairs the {glue:text}`n_components` components of
# {glue:text}`neuron`'s input add up to the model's own pre-activation
# {glue:text}`exact_agreement`. The pre-activation is {glue:text}`pre_clean_mean:z.3f` on the
# clean prompts and {glue:text}`pre_corrupted_mean:z.3f` on the corrupted ones on average, a gap
# of {glue:text}`pre_gap_mean:z.3f` ({glue:text}`pre_gap_interval`). {glue:text}`decomposition_phrase` The head that contributes
# most to the gap is {glue:text}`top_dec_head` ({glue:text}`top_dec_head_mean:z.3f`,
# {glue:text}`top_dec_head_interval`); the heads together
# carry {glue:text}`heads_share:z.2f` of it. Adding up the heads and MLPs layer by layer, half of
# the gap is in place by layer {glue:text}`build_layer`.

# %% tags=["hide-input"]
show(decomposition_figure(decomposition, f"{page.neuron}: clean minus corrupted contribution to the pre-activation"))
show(top_components_figure(decomposition, top_k, f"The {top_k} components that differ most, every pair"))

# %% [markdown]
# The MLP layers can also be split per neuron (each neuron's activation times its output
# weights, through the same frozen norm; the layer's output bias is left out). The upstream
# neurons whose contributions differ most between the prompts:

# %% tags=["remove-input"]
show_table(top_neurons(decomposition, top_k), caption="Upstream neurons: clean minus corrupted contribution, mean [95% interval] over pairs")

# %% [markdown]
# ## Which head moves the noun
#
# A contribution is not a cause: a head's output might differ between the prompts because of
# what earlier heads did. Activation patching asks the causal question. One head's output is
# taken from the clean run into the corrupted run ({glue:text}`direction`), at every position at
# once, and the neuron's activation at the last position is read; the figure shows the mean
# change over the pairs.

# %% tags=["remove-cell"]
patched = head_patching(page.model, patch_set, page.neuron, "all", direction)
paths = head_paths(page.model, patch_set, page.neuron, direction)
head = top_head(patched)
head_values = head_patching_summary(patched, paths, decomposition)
glue(**head_values, patch_pairs=patch_set.n_pairs)

# %% tags=["hide-input"]
show(head_grid_figure(patched, f"{page.neuron}: change of its activation when one head is patched"))

# %% [markdown]
# Over {glue:text}`patch_pairs` pairs, restoring {glue:text}`top_head` alone moves the neuron's
# activation by {glue:text}`top_head_effect_mean:z.3f` ({glue:text}`top_head_effect_interval`), {glue:text}`top_head_share:z.2f` of the whole gap
# between the runs ({glue:text}`base_act_mean:z.3f` to {glue:text}`source_act_mean:z.3f`).
# {glue:text}`agreement_phrase`
#
# Path patching sends each head's change only into the neuron's own input at the last
# position, every other component keeping its corrupted value: the head's direct path. For
# {glue:text}`top_head` it moves the activation by {glue:text}`top_head_direct_mean:z.3f`
# ({glue:text}`top_head_direct_interval`):
# {glue:text}`direct_phrase`.

# %% tags=["hide-input"]
show(head_grid_figure(paths, f"{page.neuron}: each head's direct path into the neuron's input"))

# %% [markdown]
# On the page's own pair (pair 0 of the set), the `top_k` heads that matter most are patched at one position at a
# time (a head's output at a position is what it wrote there, after reading from wherever it
# attends):

# %% tags=["remove-cell"]
by_position = head_patching(page.model, pairs.pair(0), page.neuron, "each", direction, heads=top_heads(patched, top_k))
glue(**position_summary(by_position, head, page.contrast.str_tokens))

# %% tags=["hide-input"]
show(positions_figure(by_position, page.contrast.str_tokens, top_k, f"{page.neuron}: change of its activation, one head at one position (the page's pair)"))

# %% [markdown]
# Patched at one position at a time, {glue:text}`top_head` moves the neuron most at position
# {glue:text}`position_top`, the token {glue:text}`position_token`
# ({glue:text}`position_effect:z.3f`). Where does it read from? Its attention pattern on the
# study's clean prompt:

# %% tags=["remove-input"]
pattern = attention_pattern(page.model, page.contrast.clean, head)
glue(**attention_summary(pattern, page.contrast.str_tokens, page.contrast.diff_positions[0]))
show_attention(page.contrast.str_tokens, pattern[None], [str(head)])

# %% [markdown]
# From the last position, {glue:text}`top_head` attends most to {glue:text}`attn_top_token`
# (weight {glue:text}`attn_top_weight:z.3f`), and gives the noun {glue:text}`attn_noun_token`
# a weight of {glue:text}`attn_noun_weight:z.3f`.

# %% [markdown]
# ## The vowel direction
#
# Is there a direction in the model that says "the next word starts with a vowel sound"? A
# logistic-regression probe is fitted on the token embeddings of every noun of the corpus
# lists that is one token for this model, labelled by the article it takes: by sound, not by
# letter (`' an hour'`, `' an honest'`, `' a unicorn'`, `' a one'`, `' a european'`). A second
# probe reads the residual stream at the noun's position of the prompt set, before the top
# head's layer. Held-out accuracies are {glue:text}`probe_folds`-fold cross-validated: each
# word is predicted by a probe that saw neither it nor a word of its family (words sharing
# their first four letters, such as hour, hours, hourglass). Beside each accuracy is its chance
# baseline: the same probe refitted on shuffled labels. The labels are the articles the words
# take in the corpus the model read; on the bundled models that is the corpus generator's own
# rule, so a probe that follows them shows what the model learned from its text, not a fact
# about English sounds.

# %% tags=["remove-cell"]
embedding = embedding_probe(page.model, folds=probe_folds, seed=page.seeds.folds)
residual = residual_probe(page.model, pairs, head.layer, folds=probe_folds, seed=page.seeds.folds)
glue(**probe_summary(embedding, residual, ov_cosine(page.model, head, embedding.direction, page.neuron),
                     ov_cosine(page.model, head, residual.direction, page.neuron), head, head.layer,
                     ov_cosine_null(page.model, head, page.neuron, seed=page.seeds.draws)))

# %% tags=["hide-input"]
show(probe_figure(embedding, f"Embedding probe: held-out P(' an' class) of {len(embedding.names)} nouns"))

# %% [markdown]
# On the embeddings of {glue:text}`probe_words` nouns ({glue:text}`probe_an` taking `' an'`) the
# probe's held-out accuracy is {glue:text}`embedding_accuracy:z.3f`, against
# {glue:text}`letter_accuracy:z.3f` for the rule "a vowel letter takes `' an'`" and
# {glue:text}`embedding_shuffled:z.3f` with shuffled labels.
# {glue:text}`probe_phrase` (The words whose letter misleads: {glue:text}`misleading_list`.) In
# the residual stream before layer {glue:text}`residual_layer`, at the nouns of the prompt set
# ({glue:text}`residual_examples` prompts, {glue:text}`residual_nouns` distinct nouns, every
# occurrence of a noun in one fold), the held-out accuracy is
# {glue:text}`residual_accuracy:z.3f` (letter rule {glue:text}`residual_letter_accuracy:z.3f`, shuffled
# labels {glue:text}`residual_shuffled:z.3f`).
#
# If {glue:text}`ov_head` carries this direction to the last position and the neuron reads it,
# the probe's direction sent through the head's OV circuit should point along the neuron's
# input weights. The null is the same cosine for random directions sent through the same
# head. {glue:text}`cosine_phrase`
#
# ## More prompts
#
# The follow-up tried four prompts of its own. Beside the prompt set, the model's
# P(`' an'`) next and the neuron's activation at the last position:

# %% tags=["remove-cell"]
extra = read_prompts(page.model, list(LEADS.prompts), page.neuron, pairs.target)
clean_readings, corrupted_readings = read_pairs(page.model, pairs, page.neuron)
readings = prompts_table(extra, clean_readings, corrupted_readings, target)
glue(**prompts_summary(extra, clean_readings, corrupted_readings))

# %% tags=["hide-input"]
show(readings_figure(readings, target, f"{page.neuron}: activation and P({target!r}), every prompt"))

# %% tags=["remove-input"]
show_table(readings.head(len(extra.prompts) + 4), caption="The follow-up's prompts and the first pairs of the prompt set")

# %% [markdown]
# Of the follow-up's prompts, the neuron fires most on {glue:text}`extra_top`
# ({glue:text}`extra_top_act:z.3f`, P(`' an'`) {glue:text}`extra_top_p:z.3f`). Over the prompt
# set its mean activation is {glue:text}`clean_act_mean:z.3f` on the clean prompts
# ({glue:text}`clean_act_interval`) and
# {glue:text}`corrupted_act_mean:z.3f` on the corrupted ones ({glue:text}`corrupted_act_interval`). {glue:text}`correlation_phrase`
#
# ## Beside the study
#
# The follow-up named its leads on GPT-2 Large without measuring them. On a GPT-2 Large run,
# the table gives where this run's decomposition and patching rank them: the head among the
# heads up to the neuron's layer, each candidate neuron among every upstream neuron (by the
# size of its mean clean-minus-corrupted contribution), and the change of the neuron's
# activation when the candidate alone is patched.

# %% tags=["remove-input"]
candidates = candidate_patching(page.model, patch_set, page.neuron, LEADS.vowel_neurons, direction)
note(leads_note(page.neuron, page.paper.neuron))
paper_beside(page, lead_rows(LEADS, decomposition, patched, page.model.cfg.n_layers, page.model.cfg.n_heads, page.model.cfg.d_mlp, candidates),
             "named by the follow-up")

# %% tags=["remove-cell"]
record_findings(page, drives=drives_findings(head_values))
