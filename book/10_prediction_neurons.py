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
# # Prediction and suppression neurons
#
# Congruence ranks tokens for one neuron. A year after the study, Gurnee et al. (2024,
# *Universal Neurons in GPT2*) summarised each neuron's whole row instead: take the cosine
# between the neuron's output weights and every token's unembedding vector, and look at the
# shape of those numbers over the vocabulary. Most neurons give a bell shape. A neuron that
# writes a small set of tokens gives a heavy tail: high **kurtosis** (a Gaussian has 3). The
# sign of the **skew** says which way the tail points: positive for a neuron that pushes its
# tokens up (a *prediction* neuron), negative for one that pushes them down (a
# *suppression* neuron). They found prediction neurons growing in number through the
# second half of GPT-2, and suppression neurons taking over in the last layers.
#
# Here every neuron is classed with thresholds that are parameters of the page: kurtosis
# above `kurtosis_min`, and skew above `skew_min` (prediction) or below `-skew_min`
# (suppression). The moments come from the same chunked pass as the rest of this part,
# run with the cosine and $W_U$.
#
# The census and its thresholds follow {cite}`gurnee2024universal`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
congruent_neuron = "auto"
kurtosis_min = 10.0
skew_min = 0.0

# %% tags=["remove-cell"]
from helpers.book.display import glue, show, show_table
from helpers.book.figures.congruence import census_per_layer_bars, census_scatter
from helpers.book.page import setup_page
from helpers.book.summaries.congruence import census_place, census_summary
from helpers.core.names import show_token
from helpers.methods.congruence import CACHE, search
from helpers.methods.congruence_tables import census, census_per_layer

# %% tags=["remove-input"]
page = setup_page(context, "neuron", congruent_neuron=congruent_neuron, kurtosis_min=kurtosis_min, skew_min=skew_min)
target, congruent = page.target, page.knobs["congruent_neuron"]
model = page.model
table = census(search(model, "W_U", "cosine", cache=CACHE), kurtosis_min, skew_min)
per_layer = census_per_layer(table)

# %% [markdown]
# ## Per layer

# %% tags=["remove-input"]
show(census_per_layer_bars(per_layer))

# %% tags=["remove-input", "hide-output"]
show_table(per_layer, caption="Neurons per layer by kind (the counts drawn above)", precision=0)

# %% tags=["remove-cell"]
glue(**census_summary(table, per_layer, kurtosis_min, skew_min, model.cfg.n_layers))

# %% [markdown]
# With kurtosis above {glue:text}`kurtosis_min` and skew beyond ±{glue:text}`skew_min`,
# {glue:text}`n_pred` of the {glue:text}`n_neurons` neurons are prediction neurons and
# {glue:text}`n_supp` are suppression neurons; the median kurtosis over all neurons is
# {glue:text}`median_kurtosis:z.2f`. {glue:text}`pred_share_second_half:z.0%` of the
# prediction neurons sit in the second half of the layers, with the most
# ({glue:text}`pred_peak_n`) in layer {glue:text}`pred_peak`. Suppression neurons outnumber
# prediction neurons in layer(s): {glue:text}`supp_over`.
#
# ## Every neuron, and where two neurons of this book sit
#
# Each point is a neuron (a random subset of the unclassed ones when there are many). The
# dotted line is the kurtosis threshold. The star is the neuron most congruent with the
# target token through $W_U$ (or the one named by the `congruent_neuron` parameter); the
# diamond is the neuron the other pages study (`neuron`, by default the one neuron patching
# ranks first). They can be the same neuron or two different ones: one is found from the
# weights alone, the other from what the neuron does on the prompts.

# %% tags=["remove-input"]
show(census_scatter(table, kurtosis_min, highlight={"most congruent with the target": str(congruent), "found by patching": str(page.neuron)}))

# %% tags=["remove-cell"]
glue(target=show_token(target), **census_place(table, congruent, "congruent_"), **census_place(table, page.neuron, "patched_"))

# %% [markdown]
# The neuron most congruent with {glue:text}`target`, {glue:text}`congruent_neuron`, has
# skew {glue:text}`congruent_skew:z.2f` and kurtosis {glue:text}`congruent_kurtosis:z.1f`,
# the {glue:text}`congruent_kurtosis_rank`-th highest kurtosis of the
# {glue:text}`congruent_layer_size` neurons in layer {glue:text}`congruent_layer`; with these
# thresholds it is classed **{glue:text}`congruent_class_name`**. The neuron found by
# patching, {glue:text}`patched_neuron`, has skew {glue:text}`patched_skew:z.2f` and kurtosis
# {glue:text}`patched_kurtosis:z.1f` (rank {glue:text}`patched_kurtosis_rank` of
# {glue:text}`patched_layer_size` in layer {glue:text}`patched_layer`) and is classed
# **{glue:text}`patched_class_name`**.
#
# The original study did not compute this census, so this page has no paper values to put
# beside its numbers.
