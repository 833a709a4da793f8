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
# # The neuron in the wild: texts that make it fire
#
# Patching found a neuron by asking what it does on one pair of prompts. A neuron that only
# mattered there would be a curiosity; the study's next step was to look at where the neuron
# fires on ordinary text. Following Neuroscope, we run the model once over a whole corpus,
# record the neuron's activation at every token, and read the texts where it fires hardest.
# If the neuron is about `' an'`, those texts should end, again and again, just before an
# `' an'`.
#
# The top examples are chosen *because* the neuron fires on them, so they say nothing about
# how it behaves elsewhere. The study's reviewers asked for that too: the second half of this
# page shows the neuron on text that was not selected for it.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
dataset = "toy"
n_docs = 400
batch_size = 8
neurons = "auto"
target = " an"
n_examples = 20
context_before = 24
context_after = 4
random_tokens = 64

# %% tags=["remove-cell"]
import numpy as np
import torch
from IPython.display import Markdown, display

from helpers.dataset import neuron_of_interest, random_document, random_token_activations, scan
from helpers.display import glue, page_header, show, show_tokens
from helpers.figures_dataset import activation_distribution, examples_table, show_examples, token_strings
from helpers.models import load_model, single_token
from helpers.names import show_token

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
chosen = [neuron_of_interest(model, spec.strip()) for spec in neurons.split(",")]
main = chosen[0]
target_id = single_token(model, target)
# pseudo=True makes this the very scan the correlation page reads (same parameters, same folder)
result = scan(model, dataset, chosen, batch_size=batch_size, top_k=n_examples, pseudo=True, n_docs=n_docs, seed=seed, progress=False)

# %% tags=["remove-input"]
page_header(model, dataset=dataset, n_docs=n_docs, neurons=", ".join(map(str, chosen)), target=target)

# %% tags=["remove-cell"]
if neurons.split(",")[0].strip() != "auto":
    neuron_source = "the neuron given as a parameter"
elif str(main) == "L31N892":
    neuron_source = "the study's neuron"
else:
    neuron_source = "the neuron that neuron patching ranks first on the study prompt"
glue(
    neuron=str(main),
    neuron_source=neuron_source,
    n_docs_read=result.n_docs,
    n_tokens=f"{result.n_tokens:,}",
    n_empty=result.n_empty_docs,
    max_tokens=result.params["max_tokens"],
)

# %% [markdown]
# The neuron on this page is {glue:text}`neuron`, {glue:text}`neuron_source`. The scan read
# {glue:text}`n_docs_read` documents ({glue:text}`n_empty` of them empty and skipped),
# cut into prompts of at most {glue:text}`max_tokens` tokens that each start with the
# beginning-of-sequence token, and recorded the neuron at all {glue:text}`n_tokens` document
# tokens in a single pass.
#
# ## The texts where it fires hardest
#
# The table lists the neuron's top activations; below it, each one is shown as the text
# before it (from the same document), coloured by the neuron's activation at each token and
# ending at the token where it fired, followed by the token that really came next. Hover
# over a token to read its activation.

# %% tags=["remove-input"]
for neuron in chosen:
    examples = result.top_examples(neuron, before=context_before, after=context_after)
    followed = int((examples["next_token"] == target_id).sum())
    display(Markdown(f"### {neuron}: its top {len(examples)} of {result.n_tokens:,} tokens, {followed} followed by {show_token(target)}"))
    display(examples_table(examples, model.tokenizer).style.hide(axis="index").format({"activation": "{:.3f}"}))
    show_examples(examples, model.tokenizer, str(neuron))
    if neuron == main:
        glue(top_followed=followed, top_shown=len(examples), top_max=float(examples["activation"].iloc[0]),
             top_min=float(examples["activation"].iloc[-1]))

# %% [markdown]
# Of the {glue:text}`top_shown` strongest activations of {glue:text}`neuron`
# (from {glue:text}`top_max:.2f` down to {glue:text}`top_min:.2f`), {glue:text}`top_followed`
# sit right before the token `' an'`. Where they do, the neuron fires *before* the article
# is written, on the token whose continuation is `' an'`: it behaves like a prediction of
# the next token, not a reading of the current one.
#
# ## On text not selected for it
#
# Below, one document picked at random from the corpus (not for its activations), then a
# sequence of tokens drawn uniformly from the vocabulary, both coloured by the neuron's
# activation. The figure after them is the neuron's activation over every token of the scan,
# and over the random tokens.

# %% tags=["remove-input"]
random_doc, doc_tokens, doc_acts = random_document(result, main, seed=seed, max_tokens=4 * context_before)
display(Markdown(f"**Document {random_doc}** (its first {len(doc_tokens)} tokens)"))
show_tokens(token_strings(model.tokenizer, doc_tokens), doc_acts.tolist(), label=f"{main} activation")
noise_tokens, noise_acts = random_token_activations(model, main, random_tokens, seed=seed)
display(Markdown(f"**{random_tokens} tokens drawn uniformly from the vocabulary** (after BOS)"))
show_tokens(token_strings(model.tokenizer, noise_tokens), noise_acts.tolist(), label=f"{main} activation")

# %% tags=["remove-input"]
all_acts = result.activations(main).numpy()
show(activation_distribution({"every corpus token": all_acts, "uniformly random tokens": noise_acts.numpy()}, str(main)))

# %% tags=["remove-cell"]
weakest_top = float(result.topk_values[-1, result.column(main)])
glue(
    median_act=float(np.median(all_acts)),
    share_positive=float((all_acts > 0).mean()),
    share_above_top=float((all_acts >= weakest_top).mean()),
    noise_max=float(noise_acts.max()),
    doc_max=float(doc_acts.max()),
    random_doc=random_doc,
)

# %% [markdown]
# Over all tokens of the corpus the neuron's median activation is {glue:text}`median_act:.3f`;
# it is positive at {glue:text}`share_positive:.1%` of tokens, and {glue:text}`share_above_top:.3%`
# of tokens reach the weakest of the top examples.
# In the randomly chosen document {glue:text}`random_doc` its largest activation is
# {glue:text}`doc_max:.2f`; on the random tokens it is {glue:text}`noise_max:.2f`. The top
# examples are the far tail of this distribution; the next page asks how well that tail
# lines up with the model actually predicting `' an'`.
#
# ```{note}
# The study showed Neuroscope's top 20 texts for L31N892 on pile-10k and observed that the
# neuron fires on tokens followed by `' an'`; it gave no count for them, so there is no
# number to put beside this run's. It did not show the neuron on unselected or random text:
# that half of the page answers a question the study's reviewers asked.
# ```
