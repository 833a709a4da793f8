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
# # Every neuron: a browser of what each one fires on
#
# The book follows one neuron, but its pages name others: the runners-up of neuron patching,
# the neurons most congruent with a token, the hubs. What does any of them do? Neuroscope
# answered that for GPT-2's neurons with the texts where each fires hardest. This page does
# the same for the model that produced the book: one pass over the corpus records every
# neuron of the chosen layers, and the browser below shows any of them on request, with its
# top texts, the distribution of its activation, and the tokens it writes.
#
# The study {cite}`miller2023an` read L31N892's top texts in Neuroscope {cite}`nanda2022neuroscope`;
# here they come from the run's own corpus, for every neuron at once. Dashboards such as
# Neuronpedia {cite}`lin2023neuronpedia` add explanations written by a model
# {cite}`bills2023explain`; studies of many neurons at once {cite}`gurnee2023haystack` found
# that many never fire on ordinary text (dead neurons) and many fire on one token or n-gram
# {cite}`voita2023dead`; the browser gives each neuron's share of tokens it fires on.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
layers = "auto"
n_examples = 20
context_before = 12
context_after = 4

# %% tags=["remove-cell"]
from helpers.book.display import glue, show_table
from helpers.book.neuroscope import (
    census_summary, correlation_summary, neuroscope_summary, publish_neuroscope, show_featured, show_neuron_browser,
)
from helpers.book.page import setup_page
from helpers.scan.correlation import activation_correlations
from helpers.scan.neuron_range import firing_census, pass_documents
from helpers.scan.neuroscope import neuroscope

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "corpus", layers=layers)
result = neuroscope(page.model, page.dataset, page.knobs["layers"], k=n_examples, context=(context_before, context_after), **page.corpus)
documents = pass_documents(result)
correlations = activation_correlations(page.model, documents, result.layers, batch_size=page.corpus["batch_size"], max_tokens=result.params["max_tokens"])
published = publish_neuroscope(result, page.model, page.target, own=page.neuron, documents=documents, correlations=correlations)
census = firing_census(result)
glue(**neuroscope_summary(result, published, page.neuron), **census_summary(census), **correlation_summary(correlations))

# %% [markdown]
# One pass read {glue:text}`ns_docs` documents ({glue:text}`ns_tokens` tokens) and recorded
# all {glue:text}`ns_neurons` neurons of {glue:text}`ns_layers`. Type a neuron's name
# (or follow a link from another page); the address keeps it after `#`, so a neuron can be
# linked to directly. The book's neuron, {glue:text}`ns_neuron`, opens first.

# %% tags=["remove-input"]
show_neuron_browser(published, page.neuron)
show_featured(published)

# %% [markdown]
# ## How to read a neuron
#
# **Top examples.** The {glue:text}`ns_k` tokens where the neuron fires hardest, with **at
# most one per document**: a text that keeps the neuron on for a paragraph takes one line,
# not twenty neighbouring ones. Each line shows the {glue:text}`ns_before` tokens before the
# example and the {glue:text}`ns_after` after it (faded), cut where the model's prompt began
# or ended. Colour is one hue from 0 (no colour, as for a token where the neuron is off) to
# the neuron's largest activation, so only what the neuron responds to stands out.
#
# **Histogram.** The neuron's activation over every token of the corpus, on fixed bins
# {glue:text}`ns_width` wide from {glue:text}`ns_low` to {glue:text}`ns_high` (the first and
# last of the {glue:text}`ns_buckets` buckets hold everything beyond), with counts on a log
# scale: the top examples are the far right tail. The line above it gives how often the
# neuron fires (activation above 0; {glue:text}`ns_rate:z.1%` of tokens for the average neuron
# here) and its mean.
#
# **Direct logit effect.** The tokens whose logits one unit of the neuron's activation raises
# and lowers most directly, `W_out[n] @ W_U`, ignoring the final layer norm and every later
# layer; its entry for the target is the neuron's congruence with it, ranked among all the
# model's neurons, as on the congruence pages. Beside it, the neurons of the same layer whose
# output rows point most the same way (cosine of `W_out` rows), each a link.
#
# **Fires together with.** The neurons whose activations correlate most with its own over the
# {glue:text}`ns_corr_tokens` tokens of the corpus (Pearson's correlation, computed exactly in
# one streaming pass of running sums, compared {glue:text}`ns_corr_scope`). The sums of
# products take {glue:text}`ns_corr_gb:z.2f` GB here; at GPT-2 Large's width one layer takes
# {glue:text}`ns_corr_large_layer_gb:z.2f` GB and all its layers, even each with itself only,
# {glue:text}`ns_corr_large_all_gb:z.1f` GB, so there the browser's layer alone is compared.
#
# **What the top examples sit on.** Under the examples, the tokens they sit on and the tokens
# that come right after them, counted over the top list: for a neuron that predicts a token,
# the second count is where it shows.
#
# **Across its firing range.** Top examples are the tail, and reading a neuron from its tail
# alone can mislead {cite}`bolukbasi2021illusion`. So the pass also draws one token from each
# band of the tokens where the neuron fires (the lower half of them by activation, then the
# 50-80%, 80-95% and 95-99% quantiles and the top 1%, each band rounded to whole histogram
# bins) and keeps the token with its lowest activation. The draw is a pseudo-random key of
# the token's document and position, the smallest key of a band winning, so it is the same in
# every run and however the pass was split between processes. The pass keeps whole windows of
# activations only for the top examples; for these, only the drawn token is coloured.
#
# **Dead and rare neurons.** A neuron that never fires on the corpus has no examples; the
# browser says so instead of listing the largest of its values at or below 0. Such neurons
# are common {cite}`voita2023dead`, and which ones are dead depends on the corpus.

# %% [markdown]
# ## Neurons that never fire here
#
# {glue:text}`ns_census_phrase`

# %% tags=["remove-input"]
show_table(census, caption="Per recorded layer: neurons that never fire (activation above 0) on this corpus, and neurons that fire rarely", precision=4)
#
# ```{note}
# The study showed Neuroscope's top texts for L31N892 and gave no counts, so there is no number
# to put beside this run's. A plain top list (as on the page of the neuron's texts) may hold
# several neighbouring tokens of one text; this browser keeps one example per document. The
# browser's data,
# {glue:text}`ns_files` small files ({glue:text}`ns_megabytes:z.1f` MB in all), is part of the
# book and loaded one group of neurons at a time, so the page stays light whether it is opened
# from disk or served.
# ```
