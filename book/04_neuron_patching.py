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
# # One neuron out of thousands: neuron patching
#
# Layer patching points at an MLP layer whose output, restored at the last position, brings
# back much of the clean prompt's preference for `' an'`. An MLP layer is thousands of
# neurons, each reading the residual stream, passing it through a GELU and writing its own
# fixed vector back. This page restores them **one at a time**: run the corrupted prompt,
# put back a single neuron's activation from the clean run, and measure how much of the logit
# difference returns. The study did this for every neuron of GPT-2 Large's layer 31 and found
# one neuron, L31N892, that on its own recovers about as much as the whole layer.
#
# Nothing here assumes that answer: the layer is the one layer patching ranks first, and
# the neuron is whichever the numbers put on top. The neuron every later page studies (when
# its `neuron` parameter is `"auto"`) is ranked first on selection pairs that no page measures
# on; this page patches the layer on the study's own pair, as the study did, and then checks
# the choice on held-out pairs.
#
# The study's neuron patching is from {cite}`miller2023an`; attribution patching, at the end
# of the page, is {cite}`nanda2023attribution`, with its failure modes analysed in
# {cite}`kramar2024atp`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
top_k = 10
per_layer = 5
exact_every_layer = True
worst_k = 8

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import held_out_findings, neuron_patching_findings
from helpers.book.display import glue, paper_beside, show, show_table
from helpers.book.figures.neurons import (
    attribution_vs_exact, failure_table, layer_agreement_figure, model_attribution_vs_exact, neuron_recovery_scatter, neuron_table,
    paper_neuron_bars, top_neurons_by_layer,
)
from helpers.book.page import setup_page
from helpers.book.summaries.patching import (
    attribution_summary, exact_scope, failure_mode_summary, held_out_summary, model_attribution_summary, neuron_patching_paper_rows,
    neuron_patching_summary, study_neurons_on_this_run, study_verdict,
)
from helpers.methods.choice import held_out
from helpers.methods.attribution import attribution_patching, failure_modes, model_agreement
from helpers.methods.neuron_patching import model_neuron_patching, neuron_patching

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "prompt_set", exact_every_layer=exact_every_layer)
chosen = page.choice.layer

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## Which layer
#
# By default the layer is the one whose MLP output, patched from the clean run into the
# corrupted run at the last position only, recovers the largest share of the logit
# difference (the layer-patching page's MLP map, last column); the `layer` parameter, or a
# `neuron` parameter naming a neuron, sets it instead.

# %% tags=["hide-input"]
results = {mode: neuron_patching(page.model, page.contrast, chosen, mode) for mode in ("last", "all")}
glue(**neuron_patching_summary(page.choice, results["last"], results["all"]))

# %% [markdown]
# This run patches MLP layer {glue:text}`layer` ({glue:text}`layer_source`); restoring its
# whole output at the last position recovers {glue:text}`layer_mlp_last:z.3f` of the logit
# difference.
#
# ## Every neuron, one at a time
#
# Each point below is one neuron of that layer: its activation from the clean run put back
# into the corrupted run, either at the last position only or at every position (what the
# study's notebook did). The dashed lines patch all the layer's neurons at once, which is the
# same as restoring the layer's MLP output. The values are exact, equal up to float rounding
# to running one full forward pass per neuron (the book's tests check this):
# {glue:text}`engine_phrase`.

# %% tags=["hide-input"]
show(neuron_recovery_scatter(results, f"Patching each neuron of MLP layer {chosen} alone (hover for its name)"))

# %% [markdown]
# Of the layer's {glue:text}`n_neurons` neurons, restored at every position, the top one is
# **{glue:text}`top_neuron`**: on its own it recovers {glue:text}`top_all:z.3f` of the logit
# difference (from {glue:text}`corrupted_diff:z.3f` on the corrupted prompt towards
# {glue:text}`clean_diff:z.3f` on the clean one), {glue:text}`top_vs_layer` the whole layer
# restored at every position ({glue:text}`whole_all:z.3f`). The runner-up,
# {glue:text}`second_neuron`, recovers {glue:text}`second_all:z.3f`. Restoring only the last
# position gives {glue:text}`top_neuron` {glue:text}`top_last:z.3f` against
# {glue:text}`whole_last:z.3f` for the whole layer there, and the top neuron at the last
# position is {glue:text}`same_top`. With `neuron="auto"`, {glue:text}`page_neuron_phrase`.

# %% [markdown]
# ### The top and bottom neurons

# %% tags=["remove-input"]
show_table(neuron_table(results, top_k), caption=f"The {top_k} largest recoveries at every position", precision=4)
show_table(neuron_table(results, 5, largest=False), caption="The 5 smallest", precision=4)

# %% [markdown]
# ## Chosen on some pairs, measured on others
#
# A neuron ranked first on the pairs it was picked on is flattered by them. The book's neuron
# is picked on selection pairs (`selection_pairs` study-like pairs; none of them is used
# anywhere else), and here the whole layer is patched again on the page's prompt set, which
# starts with the study's pair and shares no pair with the selection.

# %% tags=["remove-input"]
held = held_out(page.model, page.pairs, page.neuron)
glue(**held_out_summary(page.choice, held))

# %% [markdown]
# {glue:text}`held_out_phrase`

# %% tags=["remove-cell"]
glue(paper_verdict=study_verdict(page.paper, page.on_paper_model, page.model_name, results["all"].top_neuron), paper_whole=page.paper.whole_layer_last)

# %% [markdown]
# ## Beside the original study
#
# The study patched every neuron of GPT-2 Large's layer 31 at every position and listed the
# ten best and five worst. The whole-layer value it compared with,
# {glue:text}`paper_whole:z.3f`, is layer 31's MLP output restored at the last position (the
# layer-patching map), so it sits beside this run's last-position whole-layer value.
#
# This run {glue:text}`paper_verdict`.

# %% tags=["remove-input"]
paper_beside(page, neuron_patching_paper_rows(page.paper, results["last"], results["all"]), paper_method="restored at every position")
study_values = study_neurons_on_this_run(page.paper, results["all"]) if page.on_paper_model else None
if study_values is not None:
    show(paper_neuron_bars(page.paper.top_neurons + page.paper.bottom_neurons, study_values, "The study's top ten and bottom five neurons"))

# %% [markdown]
# ## A faster estimate for every layer: attribution patching
#
# Exact patching of one layer is cheap here; exact patching of every neuron of every layer
# costs far more (every layer's neurons, most of them followed by many layers to recompute).
# Attribution patching replaces each patch by its first-order effect, the change in
# a neuron's activation times the gradient of the logit difference with respect to it, so a
# forward pass on each prompt and one backward pass give an estimate for every neuron in the
# model. It is an approximation: where later layer norms, attention and GELUs bend the path
# between the corrupted and clean activations, the estimate drifts. First, how far it drifts
# on the layer patched exactly above.

# %% tags=["hide-input"]
estimates = {mode: attribution_patching(page.model, page.contrast, mode) for mode in ("last", "all")}
show(attribution_vs_exact(results["all"], estimates["all"], f"Attribution estimate against exact patching, layer {chosen}, every position"))

# %% tags=["remove-cell"]
glue(**attribution_summary(results, estimates, top_k))

# %% [markdown]
# Over the neurons of layer {glue:text}`layer` restored at every position, the estimate and
# the exact values have Pearson correlation {glue:text}`r_all:z.3f` and rank correlation
# {glue:text}`rho_all:z.3f`, and {glue:text}`overlap_all:z.0%` of the exact top
# {glue:text}`top_k` are in the estimate's top {glue:text}`top_k`. At the last position only:
# Pearson {glue:text}`r_last:z.3f`, rank {glue:text}`rho_last:z.3f`, top-{glue:text}`top_k`
# overlap {glue:text}`overlap_last:z.0%`. The estimate for {glue:text}`top_neuron` is
# {glue:text}`estimate_top:z.3f` against its exact {glue:text}`top_all:z.3f`.
#
# ## Every neuron of every layer, exactly
#
# One layer is a small sample of where the estimate is used: its point is to rank neurons
# across the whole model. The same exact engine patches every layer's neurons in turn
# (restored at every position), each layer recomputing only the layers after it, only from
# the first position where the prompts differ, so exact patching can serve as the ground
# truth for the estimate everywhere. Each point below is one neuron, coloured by its layer.

# %% tags=["hide-input"]
exact_model = model_neuron_patching(
    page.model, page.contrast, "all", layers=exact_scope(exact_every_layer, chosen), reuse=[results["all"]], progress=page.progress
)
agreement_stats = model_agreement(exact_model, estimates["all"], top_k)
show(model_attribution_vs_exact(exact_model, estimates["all"], "Attribution estimate against exact patching, every exactly patched neuron"))

# %% tags=["remove-cell"]
glue(**model_attribution_summary(exact_model, estimates["all"], agreement_stats, page.model.cfg, page.contrast))

# %% [markdown]
# In this run {glue:text}`exact_scope_phrase`. Layer by layer, where an estimate is used to
# pick neurons, the median Pearson correlation between the estimate and the exact values is
# {glue:text}`median_layer_r:z.3f` and the median rank correlation (tied values sharing their
# rank) {glue:text}`median_layer_rho:z.3f`; the estimate tracks the exact values best in layer
# {glue:text}`best_agreement_layer` (Pearson {glue:text}`best_agreement_r:z.3f`) and worst in
# layer {glue:text}`worst_agreement_layer` ({glue:text}`worst_agreement_r:z.3f`).
#
# Pooled over all {glue:text}`n_exact` neurons the correlations are
# {glue:text}`r_model:z.3f` (Pearson) and {glue:text}`rho_model:z.3f` (rank), and
# {glue:text}`overlap_model:z.0%` of the exact top {glue:text}`top_k` are in the estimate's top
# {glue:text}`top_k`; but the ten largest exact values carry {glue:text}`top_ten_carry:z.0%` of
# the exact values' variance, so a pooled correlation says mostly how well those few are
# estimated.

# %% tags=["hide-input"]
show(layer_agreement_figure(agreement_stats, "Agreement of attribution with exact patching, layer by layer"))

# %% [markdown]
# ### Where the estimate fails, and why
#
# {cite}`kramar2024atp` name two ways attribution patching goes wrong. In *attention
# saturation* the patch moves a later attention softmax, whose gradient is small where it is
# saturated, so the first-order estimate misses what the patch does through the attention
# pattern. In *cancellation* the estimate is a sum of contributions along different paths
# (straight to the logits, or through each later layer) that are large and of opposite
# sign, so the small sum that remains is unreliable. Two tests separate them for the
# neurons where the estimate is furthest from the exact value:
#
# - **Freeze the attention.** Patch the neuron exactly, and estimate it, with every later
#   attention pattern held at the corrupted run's. What freezing removes from the gap went
#   through the attention patterns; if it removes at least half, the verdict is attention
#   saturation.
# - **Drop one layer's gradient (GradDrop).** Recompute the estimate with no gradient through
#   one later layer at a time; the change is what the paths through that layer carry. If the
#   largest positive and negative parts (with the direct path) are each larger than the
#   estimate and at least half the gap, the verdict is cancellation.
#
# When neither test explains the gap, what remains is the curvature of the later MLPs'
# activation functions and of the layer norms. In the table, the *frozen* columns hold every
# later attention pattern at the corrupted run's, *gap closed* is the share of the gap that
# freezing removes, and *opposing* is the smaller of the largest positive and the largest
# negative part of the estimate.

# %% tags=["remove-input"]
diagnosis = failure_modes(page.model, page.contrast, exact_model, estimates["all"], worst_k)
failures = failure_mode_summary(diagnosis)
show_table(failure_table(diagnosis), caption=failures["failure_caption"], precision=3)

# %% tags=["remove-cell"]
glue(**failures)

# %% [markdown]
# {glue:text}`failure_sentence`. The furthest is {glue:text}`worst_gap_neuron`: exact
# {glue:text}`worst_gap_exact:z.3f`, estimated {glue:text}`worst_gap_estimate:z.3f`
# ({glue:text}`worst_gap_verdict`).
#
# ## The whole model at once
#
# Each column is one layer; its points are the neurons with the largest estimated effect
# there (hover for names), restored at every position.

# %% tags=["hide-input"]
show(top_neurons_by_layer(estimates["all"], per_layer, 5, "Attribution estimate: the largest neurons of every layer"))

# %% [markdown]
# The largest estimate in the whole model is {glue:text}`overall_top`
# ({glue:text}`overall_value:z.3f`), {glue:text}`overall_same`. Estimates elsewhere are only
# pointers: a neuron they single out deserves an exact patch before any claim is made about
# it.

# %% tags=["remove-cell"]
record_findings(page, neuron_patching=neuron_patching_findings(results["all"], results["last"].whole_layer),
                held_out=held_out_findings(page.choice, held))
