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
# # Congruence: what the neuron writes, read off its weights
#
# Everything so far watched the neuron while the model ran. Its weights say something too.
# When a neuron fires with activation $a$, the MLP adds $a \, w_\text{out}$ to the residual
# stream, where $w_\text{out}$ is the neuron's row of $W_\text{out}$. If nothing later
# changed it, that vector would move the logit of token $t$ by $a \, (w_\text{out} \cdot u_t)$,
# where $u_t$ is the token's column of the unembedding. The study called this dot product the
# neuron's **congruence** with the token.
#
# The study took $u_t$ from the *embedding* matrix $W_E$. After the weight processing every
# page here uses (the final layer norm folded in, the unembedding centred), the matrix that
# actually turns the residual stream into logits is $W_U$, which is no longer $W_E$
# transposed. This page computes both and says which each number uses; the default is $W_U$.
# Congruence ignores the final layer norm's scaling and every layer after the neuron, so it
# is a statement about the neuron's *direct* effect only.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
neuron = "auto"
target = " an"
chosen_tokens = [" an", " any", " had"]
n_random = 5
n_top = 15

# %% tags=["remove-cell"]
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from helpers.congruence import MATRICES, neuron_congruence, single_tokens, token_congruence, top_tokens
from helpers.dataset import neuron_of_interest
from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_congruence import chosen_tokens_bars, neuron_against_tokens, neurons_against_token
from helpers.figures_dataset import token_strings
from helpers.models import load_model, single_token
from helpers.names import show_token

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
main = neuron_of_interest(model, neuron)
target_id = single_token(model, target)
vocab = token_strings(model.tokenizer, range(model.cfg.d_vocab))
rows = {m: neuron_congruence(model, main, m).numpy() for m in MATRICES}
columns = {m: token_congruence(model, target_id, m).numpy() for m in MATRICES}
tops = {m: top_tokens(torch.from_numpy(rows[m]), model, n_top) for m in MATRICES}
kept, dropped = single_tokens(model, chosen_tokens)
special = set(model.tokenizer.all_special_ids)
draw = torch.randperm(model.cfg.d_vocab, generator=torch.Generator().manual_seed(seed)).tolist()
random_ids = [t for t in draw if t not in special and t not in kept.values()][:n_random]

# %% tags=["remove-input"]
page_header(model, neuron=str(main), target=target, chosen_tokens=chosen_tokens)

# %% [markdown]
# ## One neuron against every token
#
# Each point is one token of the vocabulary; its height is the congruence of the neuron's
# output weights with that token's column of $W_U$. The tokens with the largest values are
# labelled, and a few of the most negative.

# %% tags=["remove-input"]
show(neuron_against_tokens(rows["W_U"], vocab, str(main), "W_U"))

# %% tags=["remove-cell"]
def away(z: float) -> str:
    return f"{abs(z):.1f} standard deviations {'above' if z >= 0 else 'below'}"


def stats(values: np.ndarray, token: int) -> dict:
    order = np.argsort(values)[::-1]
    z = float((values[token] - values.mean()) / values.std())
    return {
        "value": float(values[token]),
        "rank": int(np.nonzero(order == token)[0][0]) + 1,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "z": z,
        "away": away(z),
        "top": show_token(vocab[order[0]]),
        "top_value": float(values[order[0]]),
    }


s_u, s_e = stats(rows["W_U"], target_id), stats(rows["W_E"], target_id)
glue(
    neuron=str(main),
    target=show_token(target),
    d_vocab=f"{model.cfg.d_vocab:,}",
    u_value=s_u["value"], u_rank=s_u["rank"], u_mean=s_u["mean"], u_std=s_u["std"], u_away=s_u["away"],
    u_top=s_u["top"], u_top_value=s_u["top_value"],
    e_value=s_e["value"], e_rank=s_e["rank"], e_mean=s_e["mean"], e_std=s_e["std"], e_away=s_e["away"],
    e_top=s_e["top"], e_top_value=s_e["top_value"],
    row_corr=float(np.corrcoef(rows["W_U"], rows["W_E"])[0, 1]),
    n_top=n_top,
)

# %% [markdown]
# With $W_U$, {glue:text}`neuron`'s congruence with {glue:text}`target` is
# {glue:text}`u_value:.3f`, rank {glue:text}`u_rank` of {glue:text}`d_vocab` tokens and
# {glue:text}`u_away` the mean over the vocabulary (mean {glue:text}`u_mean:.3f`, standard
# deviation {glue:text}`u_std:.3f`); the token it writes most is {glue:text}`u_top`
# ({glue:text}`u_top_value:.3f`). With the study's $W_E$ the same neuron gives
# {glue:text}`target` {glue:text}`e_value:.3f` (rank {glue:text}`e_rank`, {glue:text}`e_away`
# a mean of {glue:text}`e_mean:.3f`, standard deviation {glue:text}`e_std:.3f`), and its top
# token is {glue:text}`e_top`. Over the whole vocabulary the two rows correlate at
# {glue:text}`row_corr:.3f`. A neuron found by patching need not write its token directly:
# it can act through later layers, which congruence does not see. A large positive value
# here says the direct path alone pushes the target up whenever the neuron fires positively;
# a value near zero or below says that whatever the neuron does for the target, it does
# mostly some other way.
#
# The top {glue:text}`n_top` tokens under each matrix:

# %% tags=["remove-input"]
side_by_side = pd.concat(
    {f"W_out · {m}": tops[m][["token_str", "value"]].rename(columns={"token_str": "token"}) for m in MATRICES}, axis=1
)
side_by_side.index = range(1, n_top + 1)
display(side_by_side.style.format(precision=3))

# %% [markdown]
# ## Against a few chosen tokens
#
# The study contrasted `' an'` with ordinary tokens such as `' any'` and `' had'`, which a
# neuron about the article should leave alone. Beside the chosen tokens (those that are a
# single token for this model) are {glue:text}`n_random` tokens drawn at random from the
# vocabulary as a control. The dotted lines mark the mean over the vocabulary and one
# standard deviation either side.

# %% tags=["remove-input"]
if dropped:
    display(Markdown(f"*Not single tokens for this model, so left out: {', '.join(show_token(t) for t in dropped)}.*"))
chosen_values = {t: float(rows["W_U"][i]) for t, i in kept.items()}
chosen_values.update({vocab[i]: float(rows["W_U"][i]) for i in random_ids})
show(
    chosen_tokens_bars(
        chosen_values, str(main), "W_U",
        reference={"mean": s_u["mean"], "mean + 1 std": s_u["mean"] + s_u["std"], "mean - 1 std": s_u["mean"] - s_u["std"]},
    )
)

# %% tags=["remove-cell"]
others = {t: v for t, v in chosen_values.items() if t != target}
largest = max(others.items(), key=lambda kv: abs(kv[1] - s_u["mean"]))
glue(
    n_random=n_random,
    chosen_list=", ".join(show_token(t) for t in kept),
    others_list=", ".join(f"{show_token(t)} {v:.3f}" for t, v in others.items()),
    others_largest=show_token(largest[0]),
    others_largest_away=away((largest[1] - s_u["mean"]) / s_u["std"]),
)

# %% [markdown]
# The chosen tokens that exist as single tokens here are {glue:text}`chosen_list`. The others
# on the chart score {glue:text}`others_list`; the farthest from the mean is
# {glue:text}`others_largest`, {glue:text}`others_largest_away` the mean, against
# {glue:text}`u_away` for the target.
#
# ## Every neuron against " an"
#
# Turn the question around: of all the model's neurons, which write the target most? Each
# point below is one neuron, layer after layer (grey lines separate the layers).

# %% tags=["remove-input"]
show(neurons_against_token(columns["W_U"], target, "W_U"))

# %% tags=["remove-cell"]
def neuron_rank(values: np.ndarray) -> dict:
    flat = values.ravel()
    order = np.argsort(flat)[::-1]
    mine = main.flat(model.cfg.d_mlp)
    best, second = order[0], order[1]
    return {
        "rank": int(np.nonzero(order == mine)[0][0]) + 1,
        "value": float(flat[mine]),
        "best": f"L{best // model.cfg.d_mlp}N{best % model.cfg.d_mlp}",
        "best_value": float(flat[best]),
        "second": f"L{second // model.cfg.d_mlp}N{second % model.cfg.d_mlp}",
        "second_value": float(flat[second]),
        "half": int((flat >= flat[order[0]] / 2).sum()),
    }


r_u, r_e = neuron_rank(columns["W_U"]), neuron_rank(columns["W_E"])
glue(
    n_neurons=f"{model.cfg.n_layers * model.cfg.d_mlp:,}",
    col_rank_u=r_u["rank"], col_best_u=r_u["best"], col_best_value_u=r_u["best_value"],
    col_second_u=r_u["second"], col_second_value_u=r_u["second_value"], col_half_u=r_u["half"],
    col_rank_e=r_e["rank"], col_best_e=r_e["best"], col_best_value_e=r_e["best_value"],
    col_second_e=r_e["second"], col_second_value_e=r_e["second_value"],
)

# %% [markdown]
# Among all {glue:text}`n_neurons` neurons, the one most congruent with {glue:text}`target`
# through $W_U$ is {glue:text}`col_best_u` ({glue:text}`col_best_value_u:.3f`), followed by
# {glue:text}`col_second_u` ({glue:text}`col_second_value_u:.3f`); {glue:text}`neuron` ranks
# {glue:text}`col_rank_u`. {glue:text}`col_half_u` neuron(s) reach at least half of the top
# value. Through $W_E$ the top neuron is {glue:text}`col_best_e`
# ({glue:text}`col_best_value_e:.3f`), then {glue:text}`col_second_e`
# ({glue:text}`col_second_value_e:.3f`), and {glue:text}`neuron` ranks
# {glue:text}`col_rank_e`.
#
# ## Beside the original study
#
# The study's numbers are for L31N892 in GPT-2 Large, with $W_E$. On a GPT-2 Large run the
# table puts this run's $W_E$ value beside each, and its $W_U$ value after it.

# %% tags=["remove-input"]
paper = paper_figures()["L31N892_congruence_top"]


def run_value(token_repr: str) -> str:
    import ast

    try:
        t = single_token(model, ast.literal_eval(token_repr))
    except ValueError:
        return "not one token"
    return f"W_E {rows['W_E'][t]:.3f}; W_U {rows['W_U'][t]:.3f}"


beside = [(f"congruence with {tok}", value, run_value(tok)) for tok, value in paper["top"]]
beside += [
    ("mean over the vocabulary", round(paper["mean"], 3), f"W_E {s_e['mean']:.3f}; W_U {s_u['mean']:.3f}"),
    ("standard deviation over the vocabulary", round(paper["std"], 3), f"W_E {s_e['std']:.3f}; W_U {s_u['std']:.3f}"),
    ("minimum over the vocabulary", round(paper["min"], 3), f"W_E {rows['W_E'].min():.3f}; W_U {rows['W_U'].min():.3f}"),
    ("rank of L31N892 among all neurons for ' an'", "first, far above the rest", f"W_E {r_e['rank']}; W_U {r_u['rank']}"),
]
paper_beside(model.cfg.model_name, beside if str(main) == "L31N892" else [], paper_method="W_out · W_E")
