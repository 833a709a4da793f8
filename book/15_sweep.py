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
# # Is there an " an" neuron in every model?
#
# The study found one neuron in one model. A reader's first question is whether that is a
# fact about GPT-2 Large or about language models: does another model, or the same model
# trained again from another seed, also hand the choice between `' an'` and `' a'` to one
# neuron, and does that neuron look the same? This page runs the study's chain of evidence
# on a list of models, the same code for each, and puts one row per model side by side.
#
# For each model: how well it predicts the article (P(`' an'`) on the study's prompt, and
# the share of a prompt set's prompts on the right side); the MLP layer that layer patching
# ranks first and the neuron of it that neuron patching ranks first (the choice every page
# of this book makes); that neuron's recovery over the prompt set; how many neurons of its
# layer, restored together from the most to the least useful, reach half of what the whole
# layer recovers (one: the layer's work sits in one neuron; many: it is spread); the neuron's
# rank among all of the model's neurons by congruence of its output weights with `' an'`
# (page 7); and the share of its effect that is direct (page 12). The study is
# {cite}`miller2023an`; "can the capability be found in other models?" was the first thing
# its readers asked.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
models = "auto"
sweep_pairs = 16
max_neurons = 256
match_docs = 48

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import sweep_findings
from helpers.book.claims import AS_GOOD_AS_LAYER
from helpers.book.display import glue, note, paper_beside, show, show_table
from helpers.book.figures.sweep import concentration_figure, recovery_figure, similarity_figure
from helpers.book.page import quietly, setup_page
from helpers.book.summaries.sweep import matches_phrase, matches_table, neuron_table, sweep_paper_rows, sweep_summary, sweep_table
from helpers.methods.sweep import sweep
from helpers.scan.documents import load_documents
from helpers.scan.matching import ROTATIONS, sweep_matches

# %% tags=["remove-input"]
page = setup_page(context, "corpus", models=models, sweep_pairs=sweep_pairs, max_neurons=max_neurons, match_docs=match_docs)
run = page.context
result = quietly(sweep, page.knobs["models"], sweep_pairs, page.seeds.pairs, page.target, page.other, max_neurons, run["device"], run["dtype"],
                 first=(run["clean_prompt"], run["corrupted_prompt"]))
summary = sweep_summary(result)
glue(n_models=summary["n_models"], n_measured=summary["n_measured"], share_min=summary["share_min"], share_max=summary["share_max"])

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## One row per model
#
# {glue:text}`n_measured` of {glue:text}`n_models` models were measured. Accuracy is the
# share of the prompt set's prompts, clean and corrupted, whose logit difference has the right
# sign; the layer and neuron are the ones patching ranks first. "engine" says how neuron
# patching ran: `suffix` recomputes only the blocks after the layer (GPT-2 blocks), `full` runs
# the model's own forward pass for other architectures (exact, slower).

# %% tags=["remove-input"]
note(summary["missing_phrase"])
show_table(sweep_table(result), caption="How each model does the task")

# %% [markdown]
# Each model's neuron is chosen on 16 selection pairs; beside it, the share of bootstrap
# resamples of those pairs that choose it again (below 90% the choice is marked unstable).
# Every causal number below is a mean over other, held-out pairs (the page's own pair, the
# study's by default, first), recovery with its 95% interval over pairs; "neurons to half"
# stops at the parameter `max_neurons`.

# %% tags=["remove-input"]
show_table(neuron_table(result), caption="Each model's top neuron")

# %% [markdown]
# ## Does every model find a neuron of its own?
#
# The top neuron's recovery (the share of the clean-corrupted gap in the logit difference it
# restores alone, at every position), beside the whole layer's: the closer the two, the more
# of the layer's work is that one neuron's.

# %% tags=["remove-input"]
show(recovery_figure(result, "Top neuron and whole layer: recovery over the prompt set"))

# %% tags=["remove-input"]
note(summary["own_phrase"])

# %% [markdown]
# Across the models the top neuron carries between {glue:text}`share_min:z.2f` and
# {glue:text}`share_max:z.2f` of its layer's recovery.
#
# ## Models of one shape, trained from other seeds
#
# Models of one configuration differ only in their initial weights and the order of their
# batches. If the " an" mechanism were a property of the data and the architecture, each
# seed would build the same neuron; the neurons' logit effects (`W_out[n] @ W_U`, centred
# over the vocabulary) can be compared directly where the models share one tokenizer.

# %% tags=["remove-input"]
show(similarity_figure(result, "How alike the top neurons' logit effects are (cosine)"))

# %% tags=["remove-input"]
note(summary["alike_phrase"])

# %% [markdown]
# Weights can differ while the neurons do the same thing. Gurnee et al. {cite}`gurnee2024universal`
# match neurons of GPT-2 models trained from other seeds by how their activations correlate
# over the same text, and count a match only above what a random rotation of the other
# model's neurons reaches. Here every pair of measured models that share a tokenizer reads the
# same {glue:text}`match_docs` documents; the top neuron of the first is correlated, exactly
# and in one streaming pass, with every neuron of the second and with every direction of
# {glue:text}`n_rotations` random rotations of each of its layers.

# %% tags=["remove-input"]
matches = quietly(sweep_matches, result, list(load_documents(page.dataset, match_docs, page.seeds.corpus)), run["device"], run["dtype"])
glue(match_docs=match_docs, n_rotations=ROTATIONS)
note(matches_phrase(matches))
if len(matches):
    show_table(matches_table(matches), caption="Each model's top neuron matched in the others by the correlation of activations, beside a rotation null and the weights' cosine")

# %% [markdown]
# ## Does the mechanism concentrate as the model grows?
#
# The curve of each model: its layer's neurons restored together, from the one that recovers
# most on its own down, as a share of the whole layer's recovery. A curve that crosses the
# dashed line at one neuron is a one-neuron mechanism, as the study found in GPT-2 Large.

# %% tags=["remove-input"]
show(concentration_figure(result, "How many neurons it takes to reach half of the layer"))

# %% tags=["remove-input"]
note(summary["growth_phrase"])
paper_beside(page, sweep_paper_rows(result, page.paper, run["model_name"]))

# %% [markdown]
# ## Reading the table with care
#
# Each row is one model measured one way: the neuron is the top of one layer, chosen by
# patching on the page's pair; another layer can hold a neuron with a larger effect, and a
# spread mechanism can still have one neuron on top. The bundled models are small GPT-2s
# trained on a generated corpus (their model cards give how they were trained and their
# held-out accuracy), so they show how the methods behave across seeds and sizes, not what
# GPT-2 Large does. The same page runs on the GPT-2 family and Pythia models with the `sweep`
# profile (`make book PROFILE=sweep PAGES=15_sweep`), which needs the HuggingFace hub or
# a local copy of the weights. Rotary models (Pythia, Llama) skip the study's refactoring of
# the attention weights, which rotary embeddings rule out; every other step is the same, and
# for a gated MLP (Llama) the "neuron" is the hidden unit that `W_out` reads,
# `act(gate) * up`.

# %% tags=["remove-cell"]
record_findings(page, sweep=sweep_findings(result, AS_GOOD_AS_LAYER))
