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
# # The methods on your own model
#
# Every page of this book calls functions of one package, `helpers`, and each of them takes a
# TransformerLens model {cite}`nanda2022transformerlens` and a prompt pair. This page runs the
# study's pipeline {cite}`miller2023an` in a few visible lines: find the MLP layer that matters,
# the neuron of that layer that matters most, and how much of that neuron's effect goes
# straight to the logits. Copy the cells, change the model and the prompts, and run them.
#
# Install the package where the book's repository is checked out (`pip install .` installs the
# methods only; `pip install ".[book]"` adds what builds the book).

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts): see helpers.book.context
top_k = 8

# %% tags=["remove-cell"]
from helpers.book.display import glue, show_table
from helpers.book.page import setup_page
from helpers.book.summaries.your_model import pipeline_summary, ranked_table

# %% tags=["remove-input"]
page = setup_page(context, top_k=top_k)

# %% [markdown]
# ## A model and a pair of prompts
#
# `load_model` takes a TransformerLens model name (`"gpt2-large"`, `"pythia-410m"`), a local
# HuggingFace folder, or one of the bundled models, and applies the study's weight
# processing. A pair is two prompts of the same length that differ in one word, and the two
# tokens whose logit difference is the metric.

# %% tags=["remove-stderr"]
from helpers.core.models import load_model
from helpers.core.prompts import make_contrast

model = load_model(page.model_name)  # or load_model("gpt2-medium"), load_model("/path/to/folder")
clean, corrupted = page.context["clean_prompt"], page.context["corrupted_prompt"]  # or your own
pair = make_contrast(model, clean, corrupted, target=" an", other=" a")

# %% [markdown]
# ## Which MLP layer, which neuron
#
# Layer patching puts each layer's clean MLP output into the corrupted run and measures the
# share of the logit difference it brings back; neuron patching does the same for every neuron
# of the chosen layer, one at a time and exactly.

# %%
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching

layers = layer_patching(model, pair, components=("mlp_out",))["mlp_out"]
neurons = neuron_patching(model, pair, layers.best_layer(), positions="all")
show_table(ranked_table(neurons, top_k), caption="The neurons of that layer that recover most")

# %% [markdown]
# ## How the neuron acts
#
# The neuron's total effect on the logit difference, and the part that reaches the logits
# directly through its output weights (the rest goes through later layers).

# %%
from helpers.methods.effects import neuron_effects

effects = neuron_effects(model, pair, neurons.top_neuron)

# %% tags=["remove-cell"]
glue(**pipeline_summary(layers, neurons, effects))

# %% [markdown]
# On this model the pair's logit difference is {glue:text}`clean_diff:z.3f` clean and
# {glue:text}`corrupted_diff:z.3f` corrupted. MLP layer {glue:text}`best_layer` recovers
# {glue:text}`layer_recovery:z.3f` of that gap at the last position; its neuron
# {glue:text}`top_neuron` recovers {glue:text}`top_recovery:z.3f` alone (the whole layer, patched at
# every position, {glue:text}`whole_layer:z.3f`). Its total effect on the logit difference is
# {glue:text}`total_effect:z.3f` and its direct effect {glue:text}`direct_effect:z.3f`.
#
# These are one pair's numbers. The other pages measure the same quantities over prompt sets,
# with intervals, choose the neuron on pairs they do not measure on, and compare with the
# study; the API reference lists every function with its arguments.
