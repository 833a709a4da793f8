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
# # Each token's most congruent neuron
#
# The previous page started from one neuron. Here every token gets its own search: of all the
# model's MLP neurons, which one writes this token most, and by how much does it beat the
# runner-up? A token whose best neuron stands far above the second has, at least through the
# direct path, one neuron of its own, as `' an'` has L31N892 in GPT-2 Large. The study found
# other such pairs, among them a neuron for `' though'` whose dataset curve turned out much
# messier than the `' an'` neuron's, because the same neuron also writes `' however'` and
# similar words.
#
# One pass over every neuron and every token gives each token's top two neurons (the
# neurons-by-vocabulary matrix is computed block by block and never held whole). The pass
# is run three ways: with the real unembedding $W_U$ (the default here), with the embedding
# $W_E$ as the study did, and with the cosine instead of the dot product, which divides out
# the size of each neuron's output weights and of each token's vector.
#
# The search and the `' though'` case are from the study {cite}`miller2023an`; the cosine is
# the usual control for the growing norms of late layers {cite}`gurnee2024universal`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
matrix = "W_U"
shared_token = " though"
n_top = 20
n_hubs = 10
bin_width = 0.2

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import though_findings, hubs_findings
from helpers.book.display import glue, note, paper_beside, show, show_table
from helpers.book.figures.congruence import hub_layers, hub_sizes, top_neuron_gap_bars
from helpers.book.figures.scan import top_prediction_curve_figure
from helpers.book.page import setup_page
from helpers.book.summaries.congruence import (
    curve_names, gaps_paper_rows, gaps_summary, gaps_table, hub_tables_of, hubs_summary, second_token, shared_choice_phrase, shared_curve_summary,
    shared_neuron_summary, though_curve_applies,
)
from helpers.methods.congruence import CACHE, neuron_congruence, other_matrix, search, single_tokens
from helpers.methods.congruence_tables import hub_table, shared_neuron_example, tokens_topped_by, top_neuron_per_token, top_tokens
from helpers.book.summaries.scan import count_rows, counts_comparable
from helpers.scan.statistics import correlation_table
from helpers.scan.store import scan

# %% tags=["remove-input"]
page = setup_page(context, "corpus", matrix=matrix, shared_token=shared_token)
dataset, n_docs = page.dataset, page.corpus["n_docs"]
model, second_matrix = page.model, other_matrix(matrix)
passes = {
    (matrix, "dot"): search(model, matrix, "dot", cache=CACHE),
    (second_matrix, "dot"): search(model, second_matrix, "dot", cache=CACHE),
    (matrix, "cosine"): search(model, matrix, "cosine", cache=CACHE),
}
main = passes[(matrix, "dot")]
table = top_neuron_per_token(main, model)
kept, _ = single_tokens(model, [shared_token])
token_id, shared_neuron = shared_neuron_example(main, model, shared_token if kept else None)

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## Tokens with a neuron of their own
#
# The bars are the tokens with the largest gap between their most congruent neuron and the
# second; hover over a bar to see both neurons and their values.

# %% tags=["remove-input"]
show(top_neuron_gap_bars(table, matrix, "dot", n_top))
show_table(gaps_table(table, n_top))

# %% tags=["remove-cell"]
glue(**gaps_summary(table, matrix, n_top))

# %% [markdown]
# Through {glue:text}`matrix`, the token whose best neuron leads by the most is
# {glue:text}`first_token`: {glue:text}`first_neuron` beats {glue:text}`first_second` by
# {glue:text}`first_gap:z.3f`. The {glue:text}`n_top`-th largest gap is
# {glue:text}`nth_gap:z.3f`, against a median of {glue:text}`median_gap:z.3f` over the whole
# vocabulary: for most tokens several neurons write them about equally, and only a few have
# one that stands out. The top {glue:text}`n_top` come from {glue:text}`n_layers_top`
# different layers.
#
# ## A neuron shared by several tokens: the " though" case

# %% tags=["remove-input"]
shared_top = top_tokens(neuron_congruence(model, shared_neuron, matrix), model, 10)
topped = tokens_topped_by(main, shared_neuron, model)
runner_up = second_token(shared_top, token_id)
choice = shared_choice_phrase(model, shared_token, bool(kept), token_id, shared_neuron)
note(choice)
glue(**shared_neuron_summary(model, shared_neuron, token_id, runner_up, topped, choice))

# %% [markdown]
# {glue:text}`shared_neuron` is the most congruent neuron of {glue:text}`n_topped` token(s):
# {glue:text}`topped_list`. Its own top tokens, read along its row:

# %% tags=["remove-input"]
show_table(shared_top[["token_str", "value"]].rename(columns={"token_str": "token"}))

# %% [markdown]
# ### Its dataset curve
#
# As on the correlation page: over the corpus, how often is the token the model's real
# top-1 prediction, per bin of the neuron's activation? The second curve does the same for
# the neuron's second most congruent token, {glue:text}`runner_up`. A neuron that writes
# several tokens cannot make any one of them the top prediction as reliably as a neuron that
# writes one.

# %% tags=["remove-input"]
scanned = scan(model, dataset, [shared_neuron], top_k=20, pseudo=True, **page.corpus)
curve, counts = correlation_table(scanned, shared_neuron, token_id, bin_width)
curve_2, counts_2 = correlation_table(scanned, shared_neuron, runner_up, bin_width)
pseudo_curve, pseudo_counts = correlation_table(scanned, shared_neuron, token_id, bin_width, pseudo=True)
paper_applies = though_curve_applies(page.on_paper_model, page.paper, shared_neuron, token_id, kept)
show(
    top_prediction_curve_figure(
        curve_names(model, {token_id: curve, runner_up: curve_2}),
        str(shared_neuron),
        model.tokenizer.decode([token_id]),
        paper=page.paper.though_curve if paper_applies else None,
        paper_label="paper ' though' (GPT-2 Large, pseudo-prediction)",
    )
)
glue(**shared_curve_summary(counts, counts_2, curve, scanned.n_tokens, page.paper))

# %% [markdown]
# Over {glue:text}`n_scan_tokens` tokens, {glue:text}`shared_token` is the real top-1
# prediction {glue:text}`predicted` times and actually comes next {glue:text}`actual` times;
# {glue:text}`runner_up` is predicted {glue:text}`predicted_2` times and comes next
# {glue:text}`actual_2` times. The best bin with at least five tokens reaches a proportion of
# {glue:text}`best_p:z.2f` (from activation {glue:text}`best_at:z.1f`). The study's `' though'`
# curve peaked at {glue:text}`paper_though_best:z.2f` with the pseudo-prediction.
#
# ## Hubs: one neuron on top for many tokens
#
# Count, for every neuron, the tokens whose most congruent neuron it is. In GPT-2 Large the
# study found one neuron, {glue:text}`paper_hub`, on top for a crowd of glitch tokens
# (control characters, fragments that almost never occur in text), with values near
# {glue:text}`paper_hub_value:z.1f` in its figure. High-dimensional
# spaces are known for such *hubs*: a few points that are the nearest neighbour of many
# others. If it is a matter of vector size, dividing by the norms (the cosine) should break
# the hubs up.

# %% tags=["remove-input"]
hub_tables = hub_tables_of(passes)
show(hub_sizes({name: t["n_tokens"].to_numpy() for name, t in hub_tables.items()}))
show(hub_layers(hub_tables, model.cfg.n_layers))
show_table(hub_table(passes[(matrix, "dot")], model, n_hubs), caption="Largest hubs (dot product)")
show_table(hub_table(passes[(matrix, "cosine")], model, n_hubs), caption="Largest hubs (cosine)")

# %% tags=["remove-cell"]
glue(**hubs_summary(passes, hub_tables, matrix, model.cfg.n_layers))

# %% [markdown]
# With the dot product through {glue:text}`matrix`, the largest hub is
# {glue:text}`hub_dot`, the most congruent neuron of {glue:text}`hub_dot_n` of the
# {glue:text}`d_vocab` tokens (its largest value {glue:text}`hub_dot_value:z.2f`); only
# {glue:text}`distinct_dot` different neurons are on top for any token, and
# {glue:text}`last_dot:z.1%` of the tokens have their top neuron in the last layer. With the
# cosine the largest hub is {glue:text}`hub_cos` with {glue:text}`hub_cos_n` tokens,
# {glue:text}`distinct_cos` neurons are on top for some token, and the last layer holds the
# top neuron of {glue:text}`last_cos:z.1%` of the tokens. The dot product and the cosine
# agree on the top neuron for {glue:text}`same_top:z.1%` of the tokens.
#
# ## Beside the original study
#
# The study's values are for GPT-2 Large with $W_E$; this run's $W_E$ values are shown beside
# them (and its $W_U$ values where noted).

# %% tags=["remove-input"]
counts_beside = count_rows(page.paper.though_counts, counts, pseudo_counts, " though", counts_comparable(dataset, n_docs), dataset, n_docs, scanned.n_tokens) if paper_applies else []
rows = gaps_paper_rows(page.paper, model, passes[("W_E", "dot")], hub_tables["W_E, dot"], counts_beside)
paper_beside(page, rows, paper_method="W_out · W_E")

# %% tags=["remove-cell"]
hubs = hubs_summary(passes, hub_tables, matrix, model.cfg.n_layers)
record_findings(page, though=though_findings(repr(shared_token), shared_neuron, curve, counts),
                hubs=hubs_findings(hubs["hub_dot_n"], hubs["hub_dot"], model.cfg.d_vocab, model.cfg.n_layers * model.cfg.d_mlp))
