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
# how it behaves elsewhere, and a pattern read into them can be an illusion of the corpus they
# were drawn from {cite}`bolukbasi2021illusion`. The study's reviewers asked for that too: the
# second half of this page shows the neuron on text that was not selected for it.
#
# The study {cite}`miller2023an` showed Neuroscope's examples; the scan here computes them
# from the run's own corpus.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
n_examples = 20
context_before = 24
context_after = 4
random_tokens = 64

# %% tags=["remove-cell"]
from helpers.book.display import glue, note, show, show_table, show_tokens
from helpers.book.figures.scan import activation_distribution, examples_table, show_examples, token_strings
from helpers.book.neuroscope import show_neuron_link
from helpers.book.page import setup_page
from helpers.book.summaries.scan import distribution_summary, examples_summary, scan_summary, unselected_text_headings
from helpers.core.models import single_token
from helpers.scan.forward import random_token_activations
from helpers.scan.statistics import random_document
from helpers.scan.store import scan

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "corpus")
# the same parameters as the correlation page, so both read one scan
result = scan(page.model, page.dataset, [page.neuron], top_k=n_examples, pseudo=True, **page.corpus)
glue(**scan_summary(result, page.choice, page.paper, page.on_paper_model))
show_neuron_link(page.neuron)

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
# ending at the token where it fired, followed by the token that really came next. Every view
# on this page shares one colour scale, stated under each: white at 0, full blue at the top
# activation, red below 0. Hover over a token to read its activation.

# %% tags=["remove-input"]
examples = result.top_examples(page.neuron, before=context_before, after=context_after)
summary = examples_summary(examples, single_token(page.model, page.target), page.target, result.n_tokens)
glue(**summary)
note(summary["examples_heading"])
show_table(examples_table(examples, page.model.tokenizer))
scale = show_examples(examples, page.model.tokenizer, str(page.neuron))

# %% [markdown]
# Of the {glue:text}`top_shown` strongest activations of {glue:text}`neuron`
# (from {glue:text}`top_max:z.2f` down to {glue:text}`top_min:z.2f`), {glue:text}`top_followed`
# sit right before the token `' an'`. Where they do, the neuron fires *before* the article
# is written, on the token whose continuation is `' an'`: it behaves like a prediction of
# the next token, not a reading of the current one.
#
# ## On text not selected for it
#
# Below, one document picked at random from the corpus (not for its activations), then a
# sequence of tokens drawn uniformly from the vocabulary, both coloured by the neuron's
# activation on the top examples' scale. The figure after them is the neuron's activation over every token of the scan,
# and over the random tokens.

# %% tags=["remove-input"]
doc, doc_tokens, doc_acts = random_document(result, page.neuron, seed=page.seeds.draws, max_tokens=4 * context_before)
headings = unselected_text_headings(doc, len(doc_tokens), random_tokens)
note(headings["document"])
show_tokens(token_strings(page.model.tokenizer, doc_tokens), doc_acts.tolist(), label=f"{page.neuron} activation", scale=scale)
noise_tokens, noise_acts = random_token_activations(page.model, page.neuron, random_tokens, seed=page.seeds.draws)
note(headings["random_tokens"])
show_tokens(token_strings(page.model.tokenizer, noise_tokens), noise_acts.tolist(), label=f"{page.neuron} activation", scale=scale)

# %% tags=["remove-input"]
show(activation_distribution({"every corpus token": result.activations(page.neuron).numpy(), "uniformly random tokens": noise_acts.numpy()}, str(page.neuron)))
glue(**distribution_summary(result, page.neuron, doc, doc_acts, noise_acts))

# %% [markdown]
# Over all tokens of the corpus the neuron's median activation is {glue:text}`median_act:z.3f`;
# it is positive at {glue:text}`share_positive:z.1%` of tokens, and {glue:text}`share_above_top:z.3%`
# of tokens reach the weakest of the top examples.
# In the randomly chosen document {glue:text}`random_doc` its largest activation is
# {glue:text}`doc_max:z.2f`; on the random tokens it is {glue:text}`noise_max:z.2f`. The top
# examples are the far tail of this distribution; the next page asks how well that tail
# lines up with the model actually predicting `' an'`.
#
# ```{note}
# The study showed Neuroscope's top 20 texts for L31N892 on pile-10k and observed that the
# neuron fires on tokens followed by `' an'`; it gave no count for them, so there is no
# number to put beside this run's. It did not show the neuron on unselected or random text:
# that half of the page answers a question the study's reviewers asked.
# ```
