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

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
dataset = "toy"
n_docs = 400
batch_size = 8
matrix = "W_U"
shared_token = " though"
n_top = 20
n_hubs = 10
bin_width = 0.2

# %% tags=["remove-cell"]
import ast
import re

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from helpers.congruence import (
    CACHE, hub_table, hubs, neuron_congruence, paper_neuron, search, shared_neuron_example, single_tokens,
    tokens_topped_by, top_neuron_per_token, top_tokens,
)
from helpers.dataset import correlation_table, scan
from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_congruence import hub_layers, hub_sizes, top_neuron_gap_bars
from helpers.figures_dataset import top_prediction_curve_figure
from helpers.models import load_model
from helpers.names import Neuron, show_token

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
other_matrix = "W_E" if matrix == "W_U" else "W_U"
passes = {
    (matrix, "dot"): search(model, matrix, "dot", cache=CACHE),
    (other_matrix, "dot"): search(model, other_matrix, "dot", cache=CACHE),
    (matrix, "cosine"): search(model, matrix, "cosine", cache=CACHE),
}
main = passes[(matrix, "dot")]
table = top_neuron_per_token(main, model)
kept, _ = single_tokens(model, [shared_token])
token_id, shared_neuron = shared_neuron_example(main, model, shared_token if kept else None)

# %% tags=["remove-input"]
page_header(model, matrix=matrix, shared_token=shared_token, dataset=dataset, n_docs=n_docs)

# %% [markdown]
# ## Tokens with a neuron of their own
#
# The bars are the tokens with the largest gap between their most congruent neuron and the
# second; hover over a bar to see both neurons and their values.

# %% tags=["remove-input"]
show(top_neuron_gap_bars(table, matrix, "dot", n_top))
display(
    table.head(n_top)[["token_str", "neuron", "value", "second_neuron", "second_value", "gap"]]
    .rename(columns={"token_str": "token", "value": "top value", "second_neuron": "runner-up", "second_value": "runner-up value"})
    .style.format(precision=3).hide(axis="index")
)

# %% tags=["remove-cell"]
gaps = table["gap"].to_numpy()
glue(
    matrix=matrix,
    first_token=table["token_str"].iloc[0],
    first_neuron=table["neuron"].iloc[0],
    first_gap=float(gaps[0]),
    first_second=table["second_neuron"].iloc[0],
    nth_gap=float(gaps[min(n_top, len(gaps)) - 1]),
    n_top=n_top,
    median_gap=float(np.median(gaps)),
    n_layers_top=int(table.head(n_top)["neuron"].map(lambda n: Neuron.parse(n).layer).nunique()),
)

# %% [markdown]
# Through {glue:text}`matrix`, the token whose best neuron leads by the most is
# {glue:text}`first_token`: {glue:text}`first_neuron` beats {glue:text}`first_second` by
# {glue:text}`first_gap:.3f`. The {glue:text}`n_top`-th largest gap is
# {glue:text}`nth_gap:.3f`, against a median of {glue:text}`median_gap:.3f` over the whole
# vocabulary: for most tokens several neurons write them about equally, and only a few have
# one that stands out. The top {glue:text}`n_top` come from {glue:text}`n_layers_top`
# different layers.
#
# ## A neuron shared by several tokens: the " though" case

# %% tags=["remove-cell"]
shared_row = neuron_congruence(model, shared_neuron, matrix)
shared_top = top_tokens(shared_row, model, 10)
topped = tokens_topped_by(main, shared_neuron, model)
runner_up = next(int(t) for t in shared_top["token"] if int(t) != token_id)
if kept:
    choice = (
        f"{show_token(shared_token)} is a single token for this model, so it is studied directly: its most "
        f"congruent neuron is {shared_neuron}."
    )
else:
    choice = (
        f"{show_token(shared_token)} is not a single token for this model. Its stand-in is the token with the largest "
        f"gap whose top neuron is also the top neuron of another token: "
        f"{show_token(model.tokenizer.decode([token_id]))}, with {shared_neuron}."
    )
glue(
    choice=choice,
    shared_neuron=str(shared_neuron),
    shared_token=show_token(model.tokenizer.decode([token_id])),
    runner_up=show_token(model.tokenizer.decode([runner_up])),
    n_topped=len(topped),
    topped_list=", ".join(topped["token_str"].head(8)),
)
display(Markdown(choice))

# %% [markdown]
# {glue:text}`shared_neuron` is the most congruent neuron of {glue:text}`n_topped` token(s):
# {glue:text}`topped_list`. Its own top tokens, read along its row:

# %% tags=["remove-input"]
display(shared_top[["token_str", "value"]].rename(columns={"token_str": "token"}).style.format(precision=3).hide(axis="index"))

# %% [markdown]
# ### Its dataset curve
#
# As on the correlation page: over the corpus, how often is the token the model's real
# top-1 prediction, per bin of the neuron's activation? The second curve does the same for
# the neuron's next token, {glue:text}`runner_up`. A neuron that writes several tokens cannot
# make any one of them the top prediction as reliably as a neuron that writes one.

# %% tags=["remove-cell"]
scanned = scan(model, dataset, [shared_neuron], batch_size=batch_size, top_k=20, pseudo=True, n_docs=n_docs, seed=seed, progress=False)
curve, counts = correlation_table(scanned, shared_neuron, token_id, bin_width)
curve_2, counts_2 = correlation_table(scanned, shared_neuron, runner_up, bin_width)
pseudo_curve, pseudo_counts = correlation_table(scanned, shared_neuron, token_id, bin_width, pseudo=True)
paper = paper_figures()
paper_applies = is_paper_model(model.cfg.model_name) and str(shared_neuron) == "L28N1921" and token_id == kept.get(" though")

# %% tags=["remove-input"]
name_1 = f"top-1 = {show_token(model.tokenizer.decode([token_id]))}"
name_2 = f"top-1 = {show_token(model.tokenizer.decode([runner_up]))}"
show(
    top_prediction_curve_figure(
        {name_1: curve, name_2: curve_2},
        str(shared_neuron),
        model.tokenizer.decode([token_id]),
        paper=paper["though_top_pred_proportion"]["bins"] if paper_applies else None,
        paper_label="paper ' though' (GPT-2 Large, pseudo-prediction)",
    )
)

# %% tags=["remove-cell"]
def best_bin(c: pd.DataFrame, min_count: int = 5) -> tuple[float, float]:
    solid = c[c["count"] >= min_count]
    if solid.empty:
        return float("nan"), float("nan")
    row = solid.loc[solid["proportion"].idxmax()]
    return float(row["proportion"]), float(row["bin_start"])


best_p, best_at = best_bin(curve)
glue(
    predicted=f"{counts['predicted']:,}",
    actual=f"{counts['actual']:,}",
    predicted_2=f"{counts_2['predicted']:,}",
    actual_2=f"{counts_2['actual']:,}",
    best_p=best_p,
    best_at=best_at,
    n_scan_tokens=f"{scanned.n_tokens:,}",
    paper_though_best=max(p for _, p in paper["though_top_pred_proportion"]["bins"]),
    paper_hub=paper_neuron(paper["footnote_top_congruence_per_token_top15"][0][2].split(" - ")[0]),
    paper_hub_value=paper["footnote_top_congruence_per_token_top15"][0][1],
)

# %% [markdown]
# Over {glue:text}`n_scan_tokens` tokens, {glue:text}`shared_token` is the real top-1
# prediction {glue:text}`predicted` times and actually comes next {glue:text}`actual` times;
# {glue:text}`runner_up` is predicted {glue:text}`predicted_2` times and comes next
# {glue:text}`actual_2` times. The best bin with at least five tokens reaches a proportion of
# {glue:text}`best_p:.2f` (from activation {glue:text}`best_at:.1f`). The study's `' though'`
# curve peaked at {glue:text}`paper_though_best:.2f` with the pseudo-prediction.
#
# ## Hubs: one neuron on top for many tokens
#
# Count, for every neuron, the tokens whose most congruent neuron it is. In GPT-2 Large the
# study found one neuron, {glue:text}`paper_hub`, on top for a crowd of glitch tokens
# (control characters, fragments that almost never occur in text), with values near
# {glue:text}`paper_hub_value:.1f` in its figure. High-dimensional
# spaces are known for such *hubs*: a few points that are the nearest neighbour of many
# others. If it is a matter of vector size, dividing by the norms (the cosine) should break
# the hubs up.

# %% tags=["remove-input"]
hub_tables = {f"{m}, {meas}": hubs(r) for (m, meas), r in passes.items()}
show(hub_sizes({name: t["n_tokens"].to_numpy() for name, t in hub_tables.items()}))
show(hub_layers(hub_tables, model.cfg.n_layers))
for (m, meas), r in passes.items():
    if m == matrix:
        display(Markdown(f"Largest hubs ({meas}, {m}):"))
        display(hub_table(r, model, n_hubs).style.format(precision=3).hide(axis="index"))

# %% tags=["remove-cell"]
dot_hubs, cos_hubs = hub_tables[f"{matrix}, dot"], hub_tables[f"{matrix}, cosine"]
same_top = float((passes[(matrix, "dot")].token_neurons[:, 0] == passes[(matrix, "cosine")].token_neurons[:, 0]).float().mean())
last_layer = model.cfg.n_layers - 1


def last_share(t: pd.DataFrame) -> float:
    return float(t.loc[t["layer"] == last_layer, "n_tokens"].sum() / t["n_tokens"].sum())


glue(
    hub_dot=dot_hubs["neuron"].iloc[0],
    hub_dot_n=int(dot_hubs["n_tokens"].iloc[0]),
    hub_dot_value=float(dot_hubs["max_value"].iloc[0]),
    distinct_dot=f"{len(dot_hubs):,}",
    hub_cos=cos_hubs["neuron"].iloc[0],
    hub_cos_n=int(cos_hubs["n_tokens"].iloc[0]),
    distinct_cos=f"{len(cos_hubs):,}",
    last_dot=last_share(dot_hubs),
    last_cos=last_share(cos_hubs),
    same_top=same_top,
    d_vocab=f"{model.cfg.d_vocab:,}",
)

# %% [markdown]
# With the dot product through {glue:text}`matrix`, the largest hub is
# {glue:text}`hub_dot`, the most congruent neuron of {glue:text}`hub_dot_n` of the
# {glue:text}`d_vocab` tokens (its largest value {glue:text}`hub_dot_value:.2f`); only
# {glue:text}`distinct_dot` different neurons are on top for any token, and
# {glue:text}`last_dot:.1%` of the tokens have their top neuron in the last layer. With the
# cosine the largest hub is {glue:text}`hub_cos` with {glue:text}`hub_cos_n` tokens,
# {glue:text}`distinct_cos` neurons are on top for some token, and the last layer holds the
# top neuron of {glue:text}`last_cos:.1%` of the tokens. The dot product and the cosine
# agree on the top neuron for {glue:text}`same_top:.1%` of the tokens.
#
# ## Beside the original study
#
# The study's values are for GPT-2 Large with $W_E$; on a GPT-2 Large run this run's $W_E$
# values are shown beside them (and its $W_U$ values where noted).

# %% tags=["remove-input"]
rows = []
if is_paper_model(model.cfg.model_name):
    e_table = top_neuron_per_token(passes[("W_E", "dot")]).set_index("token")

    def one_token(text: str) -> int | None:
        ids = model.tokenizer.encode(ast.literal_eval(text), add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    for tok, gap, pair in paper["top2_neuron_gap_per_token_top20"]:
        a, b = (paper_neuron(x) for x in pair.split(" - "))
        t = one_token(tok)
        run = "not one token" if t is None else (
            f"{e_table.loc[t, 'gap']:.3f} ({e_table.loc[t, 'neuron']} - {e_table.loc[t, 'second_neuron']})")
        rows.append((f"gap of {tok}", f"{gap} ({a} - {b})", run))
    though = neuron_congruence(model, "L28N1921", "W_E")
    though_u = neuron_congruence(model, "L28N1921", "W_U")
    for tok, value in paper["L28N1921_congruence_top"]["top"][:6]:
        t = one_token(tok)
        rows.append((f"L28N1921 with {tok}", value, "not one token" if t is None else f"W_E {though[t]:.3f}; W_U {though_u[t]:.3f}"))
    predicted, actual = (int(x) for x in re.findall(r"\d+", paper["though_top_pred_proportion"]["annotation"]))
    if paper_applies:
        rows.append(("' though' top-1 predictions / occurrences", f"{predicted} / {actual} (pseudo)",
                     f"{pseudo_counts['predicted']} (pseudo), {counts['predicted']} (real) / {counts['actual']}"))
    foot = paper["footnote_top_congruence_per_token_top15"]
    hub_e = hub_tables["W_E, dot"]
    n_3354 = hub_e.loc[hub_e["neuron"] == "L35N3354", "n_tokens"]
    rows.append(("hub neuron of the glitch tokens", f"{paper_neuron(foot[0][2].split(' - ')[0])}, value {foot[0][1]}",
                 f"largest W_E hub {hub_e['neuron'].iloc[0]} ({hub_e['n_tokens'].iloc[0]} tokens, max {hub_e['max_value'].iloc[0]:.2f}); "
                 f"L35N3354 tops {int(n_3354.iloc[0]) if len(n_3354) else 0} tokens"))
paper_beside(model.cfg.model_name, rows, paper_method="W_out · W_E")
