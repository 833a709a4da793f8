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
# $$\text{score} = \big(\text{top-1} - \text{top-2 over neurons, for the token}\big)
# \times \big(\text{top-1} - \text{top-2 over tokens, for the neuron}\big).$$
#
# A high score needs both: the token has one neuron of its own, and the neuron has one token
# of its own. The study's top pair in GPT-2 Large was the token `'i'` with L33N4142. Both
# gaps come out of the same pass over every neuron and every token, run here with $W_U$ by
# default and with $W_E$ as the study did.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
dataset = "toy"
n_docs = 400
batch_size = 8
matrix = "W_U"
n_table = 30
n_curves = 5
bin_width = 0.2

# %% tags=["remove-cell"]
import ast

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from helpers.congruence import CACHE, mutual_exclusive, paper_neuron, search
from helpers.dataset import correlation_table, scan
from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_congruence import mutual_scatter, pair_curves
from helpers.models import load_model
from helpers.names import Neuron, show_token

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
other_matrix = "W_E" if matrix == "W_U" else "W_U"
pairs = {m: mutual_exclusive(search(model, m, "dot", cache=CACHE), model) for m in (matrix, other_matrix)}
main = pairs[matrix]

# %% tags=["remove-input"]
page_header(model, matrix=matrix, n_table=n_table, n_curves=n_curves, dataset=dataset, n_docs=n_docs)

# %% [markdown]
# ## The pairs
#
# Each point is one mutual pair: how far the token's best neuron leads the token's second
# best (across), and how far the neuron's best token leads its second best (up). Both axes
# are logarithmic; the best scores are labelled.

# %% tags=["remove-input"]
show(mutual_scatter(main, matrix, "dot"))
display(
    main.head(n_table)[["token_str", "neuron", "score", "token_gap", "neuron_gap", "value"]]
    .rename(columns={"token_str": "token", "token_gap": "token's gap", "neuron_gap": "neuron's gap", "value": "congruence"})
    .set_axis(range(1, min(n_table, len(main)) + 1)).style.format(precision=3)
)

# %% tags=["remove-cell"]
top_n = lambda t: set(zip(t["token"].head(n_table), t["neuron"].head(n_table)))  # noqa: E731
glue(
    matrix=matrix,
    other_matrix=other_matrix,
    n_pairs=f"{len(main):,}",
    n_pairs_other=f"{len(pairs[other_matrix]):,}",
    d_vocab=f"{model.cfg.d_vocab:,}",
    first_token=main["token_str"].iloc[0],
    first_neuron=main["neuron"].iloc[0],
    first_score=float(main["score"].iloc[0]),
    second_score=float(main["score"].iloc[1]) if len(main) > 1 else float("nan"),
    n_table=n_table,
    overlap=len(top_n(main) & top_n(pairs[other_matrix])),
    median_score=float(main["score"].median()),
)

# %% [markdown]
# With {glue:text}`matrix`, {glue:text}`n_pairs` of the {glue:text}`d_vocab` tokens form a
# mutual pair with their best neuron ({glue:text}`n_pairs_other` with
# {glue:text}`other_matrix`). The top pair is {glue:text}`first_token` with
# {glue:text}`first_neuron`, score {glue:text}`first_score:.3f`, ahead of
# {glue:text}`second_score:.3f` for the second; the median score is
# {glue:text}`median_score:.4f`. Of the top {glue:text}`n_table` pairs,
# {glue:text}`overlap` are also in the top {glue:text}`n_table` with
# {glue:text}`other_matrix`.
#
# ## Do the top pairs predict their token?
#
# For the top {glue:text}`n_curves` pairs, the curve below is the correlation page's
# measurement: over the corpus, the share of positions where the pair's token is the model's
# real top-1 prediction, per bin of the neuron's activation. A neuron that writes one token
# and nothing else should drive a clean curve up towards 1.

# %% tags=["remove-cell"]
chosen = main.head(n_curves)
neurons = list(dict.fromkeys(Neuron.parse(n) for n in chosen["neuron"]))
scanned = scan(model, dataset, neurons, batch_size=batch_size, top_k=20, pseudo=True, n_docs=n_docs, seed=seed, progress=False)
curves, counts = {}, {}
for row in chosen.itertuples():
    name = f"{row.token_str} / {row.neuron}"
    curves[name], counts[name] = correlation_table(scanned, row.neuron, int(row.token), bin_width)
glue(n_curves=len(curves))

# %% tags=["remove-input"]
show(pair_curves(curves))

# %% tags=["remove-cell"]
def summary(curve: pd.DataFrame, c: dict, min_count: int = 5) -> str:
    solid = curve[curve["count"] >= min_count]
    top = f"{solid['proportion'].iloc[-1]:.2f} in its highest bin with {min_count}+ tokens" if len(solid) else "no bin with enough tokens"
    return f"predicted {c['predicted']:,} times, next {c['actual']:,} times, {top}"


glue(curve_summary="; ".join(f"{name}: {summary(curves[name], counts[name])}" for name in curves))

# %% [markdown]
# Per pair: {glue:text}`curve_summary`. The x-axis is each neuron's own activation, so the
# curves share an axis but not a scale of meaning; what matters is whether each rises and how
# close to 1 it gets where its neuron fires hardest.
#
# ## Beside the original study
#
# The study ranked pairs with $W_E$. On a GPT-2 Large run each of its top
# {glue:text}`n_table` pairs is looked up in this run's $W_E$ list (rank and score) and in
# its $W_U$ list.

# %% tags=["remove-input"]
rows = []
if is_paper_model(model.cfg.model_name):
    paper = paper_figures()["top30_mutual_exclusive_congruence"]

    def where(table: pd.DataFrame, token: str, neuron: str) -> str:
        ids = model.tokenizer.encode(ast.literal_eval(token), add_special_tokens=False)
        hit = table[(table["token"] == ids[0]) & (table["neuron"] == neuron)] if len(ids) == 1 else table.iloc[0:0]
        return f"rank {hit.index[0] + 1}, {hit['score'].iloc[0]:.3f}" if len(hit) else "not a mutual pair"

    for rank, (token, neuron_text, score) in enumerate(paper[:n_table], start=1):
        neuron = paper_neuron(neuron_text)
        rows.append((f"{rank}. {token} / {neuron}", score, f"W_E {where(pairs['W_E'], token, neuron)}; W_U {where(pairs['W_U'], token, neuron)}"))
paper_beside(model.cfg.model_name, rows, paper_method="W_out · W_E")
