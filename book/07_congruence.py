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
#
# Congruence is the study's term {cite}`miller2023an`; its reviewers recommended $W_U$ over
# $W_E$. Reading a feed-forward layer's output weights through the unembedding is how Geva et
# al. {cite}`geva2022promoting` found that such layers promote concepts in the vocabulary.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
chosen_tokens = [" an", " any", " had"]
n_random = 5
n_top = 15

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import congruence_findings
from helpers.book.display import glue, note, paper_beside, show, show_table
from helpers.book.figures.congruence import chosen_tokens_bars, neuron_against_tokens, neurons_against_token
from helpers.book.figures.scan import token_strings
from helpers.book.page import setup_page
from helpers.book.summaries.congruence import (
    chosen_summary, chosen_values, control_tokens, dropped_phrase, one_neuron_paper_rows, one_neuron_summary, top_tokens_side_by_side,
)
from helpers.core.models import single_token
from helpers.methods.congruence import MATRICES, neuron_congruence, token_congruence
from helpers.methods.congruence_tables import top_tokens

# %% tags=["remove-input"]
page = setup_page(context, "neuron", chosen_tokens=chosen_tokens)
model, main, target = page.model, page.neuron, page.target
target_id = single_token(model, target)
vocab = token_strings(model.tokenizer, range(model.cfg.d_vocab))
rows = {m: neuron_congruence(model, main, m).numpy() for m in MATRICES}
columns = {m: token_congruence(model, target_id, m).numpy() for m in MATRICES}

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## One neuron against every token
#
# Each point is one token of the vocabulary; its height is the congruence of the neuron's
# output weights with that token's column of $W_U$. The tokens with the largest values are
# labelled, and a few of the most negative.

# %% tags=["remove-input"]
show(neuron_against_tokens(rows["W_U"], vocab, str(main), "W_U"))

# %% tags=["remove-cell"]
summary = one_neuron_summary(rows, columns, main, target_id, target, vocab, model.cfg.d_mlp)
glue(n_top=n_top, **summary)

# %% [markdown]
# With $W_U$, {glue:text}`neuron`'s congruence with {glue:text}`target` is
# {glue:text}`u_value:z.3f`, rank {glue:text}`u_rank` of {glue:text}`d_vocab` tokens and
# {glue:text}`u_away` the mean over the vocabulary (mean {glue:text}`u_mean:z.3f`, standard
# deviation {glue:text}`u_std:z.3f`); the token it writes most is {glue:text}`u_top`
# ({glue:text}`u_top_value:z.3f`). With the study's $W_E$ the same neuron gives
# {glue:text}`target` {glue:text}`e_value:z.3f` (rank {glue:text}`e_rank`, {glue:text}`e_away`
# a mean of {glue:text}`e_mean:z.3f`, standard deviation {glue:text}`e_std:z.3f`), and its top
# token is {glue:text}`e_top`. Over the whole vocabulary the two rows correlate at
# {glue:text}`row_corr:z.3f`. A neuron found by patching need not write its token directly:
# it can act through later layers, which congruence does not see. A large positive value
# here says the direct path alone pushes the target up whenever the neuron fires positively;
# a value near zero or below says that whatever the neuron does for the target, it does
# mostly some other way.
#
# The top {glue:text}`n_top` tokens under each matrix:

# %% tags=["remove-input"]
show_table(top_tokens_side_by_side({m: top_tokens(neuron_congruence(model, main, m), model, n_top) for m in MATRICES}), index=True)

# %% [markdown]
# ## Against a few chosen tokens
#
# The study contrasted `' an'` with ordinary tokens such as `' any'` and `' had'`, which a
# neuron about the article should leave alone. Beside the chosen tokens (those that are a
# single token for this model) are {glue:text}`n_random` tokens drawn at random from the
# vocabulary as a control. The dotted lines mark the mean over the vocabulary and one
# standard deviation either side.

# %% tags=["remove-input"]
kept, dropped, random_ids = control_tokens(model, chosen_tokens, n_random, page.seeds.draws)
note(dropped_phrase(dropped))
values = chosen_values(rows["W_U"], kept, random_ids, vocab)
show(chosen_tokens_bars(values, str(main), "W_U", mean=summary["u_mean"], std=summary["u_std"]))

# %% tags=["remove-cell"]
glue(**chosen_summary(values, target, kept, n_random, summary["u_mean"], summary["u_std"]))

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

# %% [markdown]
# Among all {glue:text}`n_neurons` neurons, the one most congruent with {glue:text}`target`
# through $W_U$ is {glue:text}`col_best_u` ({glue:text}`col_best_value_u:z.3f`), followed by
# {glue:text}`col_second_u` ({glue:text}`col_second_value_u:z.3f`); {glue:text}`neuron` ranks
# {glue:text}`col_rank_u`. {glue:text}`col_half_u` neuron(s) reach at least half of the top
# value. Through $W_E$ the top neuron is {glue:text}`col_best_e`
# ({glue:text}`col_best_value_e:z.3f`), then {glue:text}`col_second_e`
# ({glue:text}`col_second_value_e:z.3f`), and {glue:text}`neuron` ranks
# {glue:text}`col_rank_e`.
#
# ## Beside the original study
#
# The study's numbers are for L31N892 in GPT-2 Large, with $W_E$. The table puts this run's
# neuron's $W_E$ value beside each, and its $W_U$ value after it.

# %% tags=["remove-input"]
paper_beside(page, one_neuron_paper_rows(page.paper, model, main, rows, summary), paper_method="W_out · W_E")

# %% tags=["remove-cell"]
record_findings(page, congruence=congruence_findings(columns["W_E"], main, model.cfg.d_mlp))
