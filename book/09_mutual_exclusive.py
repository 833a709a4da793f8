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
# # Mutual exclusive congruence: one neuron, one token
#
# A neuron can be a token's best writer while writing many other tokens just as well (the
# hubs of the previous page), and a token can be a neuron's favourite while many neurons
# write it. The study looked for pairs that are exclusive in both directions: the neuron is
# the token's most congruent neuron **and** the token is the neuron's most congruent token.
# Each such pair gets a score, the product of two gaps:
#
# $$\begin{aligned}\text{score} = {} & \big(\text{top-1} - \text{top-2 over neurons, for the token}\big) \\
# {} \times {} & \big(\text{top-1} - \text{top-2 over tokens, for the neuron}\big).\end{aligned}$$
#
# A high score needs both: the token has one neuron of its own, and the neuron has one token
# of its own. The study's top pair in GPT-2 Large was the token `'i'` with L33N4142. Both
# gaps come out of the same pass over every neuron and every token, run here with $W_U$ by
# default and with $W_E$ as the study did.
#
# The score and the top pairs are the study's {cite}`miller2023an`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
matrix = "W_U"
n_table = 30
n_curves = 5
bin_width = 0.2

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import mutual_findings
from helpers.book.display import glue, paper_beside, show, show_table
from helpers.book.figures.congruence import mutual_scatter, pair_curves
from helpers.book.page import setup_page
from helpers.book.summaries.congruence import curves_summary, pair_correlations, pair_neurons, pairs_paper_rows, pairs_summary, pairs_table
from helpers.methods.congruence import CACHE, other_matrix, search
from helpers.methods.congruence_tables import mutual_exclusive
from helpers.scan.store import scan

# %% tags=["remove-input"]
page = setup_page(context, "corpus", matrix=matrix, n_table=n_table, n_curves=n_curves)
model, second_matrix = page.model, other_matrix(matrix)
pairs = {m: mutual_exclusive(search(model, m, "dot", cache=CACHE), model) for m in (matrix, second_matrix)}
main = pairs[matrix]

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## The pairs
#
# Each point is one mutual pair: how far the token's best neuron leads the token's second
# best (across), and how far the neuron's best token leads its second best (up). Both axes
# are logarithmic; the best scores are labelled.

# %% tags=["remove-input"]
show(mutual_scatter(main, matrix, "dot"))
show_table(pairs_table(main, n_table), index=True)

# %% tags=["remove-cell"]
glue(**pairs_summary(pairs, matrix, second_matrix, n_table, model.cfg.d_vocab))

# %% [markdown]
# With {glue:text}`matrix`, {glue:text}`n_pairs` of the {glue:text}`d_vocab` tokens form a
# mutual pair with their best neuron ({glue:text}`n_pairs_other` with
# {glue:text}`other_matrix`). The top pair is {glue:text}`first_token` with
# {glue:text}`first_neuron`, score {glue:text}`first_score:z.3f`, ahead of
# {glue:text}`second_score:z.3f` for the second; the median score is
# {glue:text}`median_score:z.4f`. Of the top {glue:text}`n_table` pairs,
# {glue:text}`overlap` are also in the top {glue:text}`n_table` with
# {glue:text}`other_matrix`.
#
# ## Do the top pairs predict their token?
#
# For the top {glue:text}`n_curves` pairs, the curve below is the correlation page's
# measurement: over the corpus, the share of positions where the pair's token is the model's
# real top-1 prediction, per bin of the neuron's activation. A neuron that writes one token
# and nothing else should drive a clean curve up towards 1.

# %% tags=["remove-input"]
scanned = scan(model, page.dataset, pair_neurons(main, n_curves), top_k=20, pseudo=True, **page.corpus)
curves, counts = pair_correlations(scanned, main, n_curves, bin_width)
show(pair_curves(curves))
glue(**curves_summary(curves, counts))

# %% [markdown]
# Per pair: {glue:text}`curve_summary`. The x-axis is each neuron's own activation, so the
# curves share an axis but not a scale of meaning; what matters is whether each rises and how
# close to 1 it gets where its neuron fires hardest.
#
# ## Beside the original study
#
# The study ranked pairs with $W_E$. Each of its top
# {glue:text}`n_table` pairs is looked up in this run's $W_E$ list (rank and score) and in
# its $W_U$ list.

# %% tags=["remove-input"]
paper_beside(page, pairs_paper_rows(page.paper, model, pairs, n_table), paper_method="W_out · W_E")

# %% tags=["remove-cell"]
record_findings(page, mutual=mutual_findings(curves))
