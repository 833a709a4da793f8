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
# # Ablation done right: is the neuron needed?
#
# Neuron patching asked whether the neuron is *sufficient*: put its clean activation into the
# corrupted run and see how much of the preference for `' an'` comes back. The converse
# question is whether it is *necessary*: take the neuron away from the clean run and see how
# much of that preference is lost. "Taking it away" needs a value to put in its place, and
# the choice decides the answer. The study negated the activation; its reviewers pointed out
# that negation is not removal. This page compares the four choices side by side, on a set
# of study-like prompt pairs rather than one, and then asks what the neuron is for over
# ordinary text.
#
# Mean ablation and resample ablation are standard in circuit work {cite}`wang2023ioi`
# {cite}`chan2022causal`; the comparison of ablations and of patching directions follows
# {cite}`zhang2023best` and {cite}`heimersheim2024patching`; the study is {cite}`miller2023an`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
n_random = 5
reference_docs = 100
window = 64
rank_pairs = 48  # pairs on which every neuron of the layer is patched, both ways, for the neuron's ranks

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import ablation_findings, ordinary_text_findings
from helpers.book.display import glue, paper_beside, show, show_table
from helpers.book.figures.effects import ablation_figure, loss_figure, restoration_figure
from helpers.book.page import setup_page
from helpers.book.summaries.effects import (
    ablation_paper_rows, ablation_summary, ablation_table, beyond_summary, heldout_source, loss_summary, prompt_set_summary, ranks_phrase,
)
from helpers.methods.ablation import ablate, ablated_loss, ablation_sets, natural_effects, reference_activations
from helpers.methods.prompt_sets import unseen_pairs
from helpers.methods.choice import layer_ranks
from helpers.scan.documents import document_windows

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "corpus", "prompt_set", n_random=n_random, reference_docs=reference_docs, window=window, rank_pairs=rank_pairs)
pairs, target, other, dataset = page.pairs, page.target, page.other, page.dataset
windows = document_windows(page.model, dataset, reference_docs, page.seeds.reference, window)
reference = reference_activations(page.model, windows, page.neuron.layer)

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## The prompt set
#
# Every number below is a mean over a set of prompt pairs built like the study's: a first
# sentence that names a noun with its article, then the same frame cut before the article,
# after a noun that takes `' an'` (clean) or `' a'` (corrupted). Pair 0 is the page's own
# pair (the study's, unless the page is given other prompts); the others come from the frames
# and nouns of the bundled corpus generator, kept only where each noun is one token for this
# model and the pair has as many tokens as pair 0.
# Intervals are 95% bootstrap intervals over pairs: they say how much a mean would move over
# other pairs drawn from the same frames and nouns, not over other kinds of text.
#
# The reference corpus for the mean and for resampling is {glue:text}`reference_positions`
# positions of {glue:text}`reference_docs` documents of the {glue:text}`dataset` corpus, none of
# them the prompts.

# %% tags=["remove-input"]
result = ablate(page.model, pairs, page.neuron.layer, ablation_sets(page.model, page.neuron, n_random, page.seeds.draws), reference, seed=page.seeds.draws)
glue(**prompt_set_summary(pairs, result.clean_diff, result.corrupted_diff), **ablation_summary(result, page.neuron),
     reference_positions=reference.pool.shape[0], reference_docs=reference_docs, dataset=dataset,
     ranks_phrase=ranks_phrase(layer_ranks(page.model, page.prompt_set(min(rank_pairs, pairs.n_pairs)), page.neuron)))

# %% [markdown]
# The set has {glue:text}`n_pairs` pairs; the model prefers `' an'` on the clean prompt and
# `' a'` on the corrupted one in {glue:text}`pairs_right` of them. The clean logit difference
# exceeds the corrupted one by {glue:text}`gap_mean:z.3f` on average
# (95% interval {glue:text}`gap_interval`; on pair 0,
# {glue:text}`study_gap:z.3f`). That gap is the unit below: an ablation that loses 1 of it
# makes the clean prompt look like the corrupted one.
#
# ## Four ways to remove a neuron
#
# The neuron is {glue:text}`neuron`. In each panel, each point is one pair's clean prompt with
# the neuron (or the whole layer, or a random neuron of the layer) replaced at every position
# by zero, by its mean over the reference corpus, by its value at a random reference position,
# or by its own negative.

# %% tags=["hide-input"]
show(ablation_figure(result, str(page.neuron), f"Removing {page.neuron} from the clean prompt: share of the logit difference lost"))

# %% [markdown]
# Mean-ablating {glue:text}`neuron` loses {glue:text}`mean_mean:z.3f` of the gap
# ({glue:text}`mean_interval`); resampling it loses
# {glue:text}`resample_mean:z.3f` ({glue:text}`resample_interval`) and zeroing it {glue:text}`zero_mean:z.3f`. Negating it, as
# the study did, loses {glue:text}`negate_mean:z.3f` ({glue:text}`negate_interval`): {glue:text}`negate_phrase`. Mean-ablating the whole layer
# loses {glue:text}`mean_layer:z.3f`, and {glue:text}`random_phrase`.
#
# {glue:text}`kinds_phrase`
#
# The kinds ask different questions. Mean ablation replaces the neuron by what it contributes
# on a typical token, so what is removed is what it says about *this* prompt; resampling does
# the same in expectation, with the noise of one draw per position. Zero is a value a GELU
# neuron rarely outputs, so part of its effect is the model reacting to an input it never
# saw. Negation does not remove the neuron's message, it sends the opposite one: it measures
# how far the model can be pushed, not how much it relies on the neuron.
#
# In probabilities: the clean prompts give `' an'` a mean probability of
# {glue:text}`clean_prob:z.3f` (the corrupted ones {glue:text}`corrupted_prob:z.3f`); with the
# neuron mean-ablated, {glue:text}`mean_prob:z.3f`, and negated, {glue:text}`negate_prob:z.3f`.

# %% tags=["remove-input"]
show_table(ablation_table(result, page.neuron, "share"), caption="Share of the logit difference lost (ablations) or recovered (restoring): mean over pairs [95% interval]")
show_table(ablation_table(result, page.neuron, "prob"), caption=f"P({target!r}) after each change: mean over pairs [95% interval]")

# %% [markdown]
# ## Sufficiency, for comparison
#
# The other direction puts each set's clean activations into the corrupted run (at every
# position, as the study's neuron patching did). Restoring {glue:text}`neuron` alone
# recovers {glue:text}`restored_mean:z.3f` of the gap ({glue:text}`restored_interval`; on pair 0 {glue:text}`study_restored:z.3f`), the
# whole layer {glue:text}`restored_layer:z.3f`. {glue:text}`ranks_phrase` A neuron can be sufficient without being
# necessary when other components carry the same information, and necessary without being
# sufficient when it needs them to act.

# %% tags=["hide-input"]
show(restoration_figure(result, "Putting clean activations into the corrupted prompt: share recovered"))

# %% [markdown]
# ## What the neuron is for, over ordinary text
#
# The prompt set was built for the question. Over the reference corpus, the neuron is
# mean-ablated at every position and the next-token loss compared with the unablated model,
# token by token, grouped by what the next token really is.

# %% tags=["remove-input"]
loss = ablated_loss(page.model, windows, page.neuron.layer, [page.neuron.index], reference.mean, pairs.target, pairs.other)
loss_values = loss_summary(loss, target, other)
glue(**loss_values)
show(loss_figure(loss.change, {"target": f"next token {target!r}", "other": f"next token {other!r}", "all": "every token"},
                 f"Mean-ablating {page.neuron} over the reference corpus: loss change per token"))

# %% [markdown]
# Where the next token is `' an'` ({glue:text}`loss_an_n` tokens), the loss rises by
# {glue:text}`loss_an_mean:z.4f` nats on average ({glue:text}`loss_an_interval`); where it is `' a'` ({glue:text}`loss_a_n` tokens), it
# changes by {glue:text}`loss_a_mean:z.4f` ({glue:text}`loss_a_interval`); over all {glue:text}`loss_all_n` tokens, by
# {glue:text}`loss_all_mean:z.5f` ({glue:text}`loss_all_interval`). {glue:text}`loss_phrase`
# These intervals resample tokens.
#
# ## Beyond the templates
#
# Every pair above comes from frames the bundled models were trained on, so its intervals
# describe other pairs of those frames, not other text. Two checks reach further. A second
# prompt set is drawn only from frames that no bundled model read in training and that no
# selection set used ({glue:text}`n_unseen` pairs); the neuron is mean-ablated there as above.
# And on held-out documents (source {glue:text}`natural_source`, not the reference corpus), the
# neuron is mean-ablated at every position and the logit difference between `' an'` and
# `' a'` read wherever the next token really is one of them: the total change, and its direct
# part (the neuron's write read through the final norm at that position's scale).

# %% tags=["remove-input"]
unseen = ablate(page.model, unseen_pairs(page.model, page.context["n_pairs"], page.seeds.pairs, target, other,
                                         first=(page.context["clean_prompt"], page.context["corrupted_prompt"])),
                page.neuron.layer, {str(page.neuron): [page.neuron.index]}, reference, kinds=("mean",), seed=page.seeds.draws)
natural_windows = document_windows(page.model, heldout_source(dataset), reference_docs, page.seeds.natural, window)
natural = natural_effects(page.model, natural_windows, page.neuron, reference.mean, pairs.target, pairs.other)
glue(**beyond_summary(result, unseen, natural, page.neuron, target, other), natural_source=heldout_source(dataset))

# %% [markdown]
# On the unseen frames the model prefers `' an'` on the clean prompt and `' a'` on the
# corrupted one in {glue:text}`unseen_right` of {glue:text}`n_unseen` pairs, with a mean gap of
# {glue:text}`unseen_gap` (the unit of the shares below; where it is small or of the wrong
# sign, shares swing). Share of the gap lost by mean ablation: {glue:text}`templates_necessity`
# on the template pairs, {glue:text}`unseen_necessity` on unseen frames (pairs resampled).
# {glue:text}`unseen_phrase`
#
# At natural positions (positions resampled): before `' an'` ({glue:text}`natural_target_n`
# positions) the logit difference changes by {glue:text}`natural_target_total`, of which the
# direct part is {glue:text}`natural_target_direct`; before `' a'`
# ({glue:text}`natural_other_n` positions) by {glue:text}`natural_other_total` (direct
# {glue:text}`natural_other_direct`). {glue:text}`natural_phrase`
#
# ## Beside the original study
#
# The study ablated by negation on its one prompt and reported neuron patching's recovery;
# it gave no mean or resample ablation to compare with. Pair 0 is the page's own pair (the study's by default).

# %% tags=["remove-input"]
paper_beside(page, ablation_paper_rows(page.paper, page.neuron, result))

# %% tags=["remove-cell"]
record_findings(page, ablation=ablation_findings(ablation_summary(result, page.neuron), result.kinds), ordinary_text=ordinary_text_findings(loss_values))
