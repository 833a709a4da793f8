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
# # Direct and indirect effects: how the neuron reaches the logits
#
# A neuron's activation multiplies one fixed vector, its row of `W_out`, and adds it to the
# residual stream. From there it can reach the prediction in two ways. **Directly**: the
# vector sits in the final residual stream, and the unembedding reads it like any other
# write. **Indirectly**: later attention layers and MLPs read the changed residual stream
# and write something of their own, which may add to the neuron's effect or cancel it. The
# study's judges asked for both: the neuron's direct logit attribution `W_out[n] @ W_U`, and
# how much of its effect is direct rather than composed through later layers.
#
# The split uses path patching {cite}`goldowskydill2023path` {cite}`wang2023ioi`: the
# neuron's change is given to one later component's input at a time, everything else held
# at the base run. Later layers that undo an upstream change are the "self-repair" of
# {cite}`mcgrath2023hydra`. The study is {cite}`miller2023an`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
direction = "sufficiency"
top_k = 10
n_compare = 4

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import effects_findings
from helpers.book.display import glue, note, paper_beside, show, show_table
from helpers.book.figures.effects import effects_figure, paths_figure
from helpers.book.page import setup_page
from helpers.book.summaries.effects import (
    comparison_phrase, direct_summary, direct_tokens, effects_paper_rows, effects_summary, effects_table, most_indirect,
    most_indirect_summary,
)
from helpers.methods.effects import direct_logit_attribution, neuron_effects, other_layers_effects

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "prompt_set", direction=direction, n_compare=n_compare)
pairs = page.pairs

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## What the neuron writes: `W_out[n] @ W_U`
#
# One unit of the neuron's activation adds its output vector to the residual stream; read
# straight through the unembedding, that raises some tokens' logits and lowers others'. (With
# the study's weight processing the final norm's weight is folded into `W_U`, and `W_U` is
# centred, so this is the direct effect up to the norm's scale.)

# %% tags=["remove-input"]
dla = direct_logit_attribution(page.model, page.neuron)
effects = neuron_effects(page.model, pairs, page.neuron, direction)
glue(**direct_summary(dla, page.model, pairs.target, pairs.other, float(effects.base_scale.mean())), neuron=str(page.neuron))
show_table(direct_tokens(dla, page.model, top_k), caption=f"{page.neuron}: the tokens whose logits one unit of activation raises and lowers most")

# %% [markdown]
# Of the {glue:text}`dla_vocab` tokens, `' an'` is number {glue:text}`dla_target_rank` among
# those {glue:text}`neuron` raises ({glue:text}`dla_target:z.3f` per unit of activation,
# against a mean of {glue:text}`dla_mean:z.3f` and a standard deviation of
# {glue:text}`dla_std:z.3f` over the vocabulary), and `' a'` number
# {glue:text}`dla_other_rank` ({glue:text}`dla_other:z.3f`): one unit of activation moves
# `W_out[n] @ W_U`'s logit difference by {glue:text}`dla_diff:z.3f`. The final norm divides
# the residual by its scale before the unembedding, {glue:text}`dla_scale:z.2f` on average at
# the last position of the prompts the neuron is changed in, so through the model one unit
# moves the logit difference by about {glue:text}`dla_diff_scaled:z.3f` before any later layer
# has a say. The token it
# raises most is {glue:text}`dla_top`, the one it lowers most {glue:text}`dla_bottom`.
#
# ## Total, direct and indirect, over the prompt set
#
# For each pair, the neuron's activation is changed from its value on the base prompt to its
# value on the other prompt ({glue:text}`direction`: the corrupted prompt with the neuron's
# clean activation, at every position). The **total** effect is how much the logit
# difference moves when the model runs on. The **direct** effect is the neuron's change at
# the last position read through the unembedding, with the final layer norm's scale frozen
# at its value in the base run. The **indirect** effect is the rest.

# %% tags=["remove-input"]
glue(**effects_summary(effects))
show(effects_figure(effects, f"{page.neuron}: change of the logit difference, every pair"))

# %% [markdown]
# Over {glue:text}`n_pairs` pairs the total effect is {glue:text}`total_mean:z.3f`
# ({glue:text}`total_interval`), which is
# {glue:text}`share_mean:z.3f` of each pair's clean-corrupted gap on average. The direct path
# carries {glue:text}`direct_mean:z.3f` ({glue:text}`direct_interval`) and everything else {glue:text}`indirect_mean:z.3f`
# ({glue:text}`indirect_interval`): {glue:text}`split_phrase`. Part of the indirect effect
# goes through no layer at all: the neuron's write changes the final norm's scale, which
# rescales every logit (the channel of Stolfo et al. {cite}`stolfo2024confidence`); that part
# is {glue:text}`final_norm_mean:z.3f` ({glue:text}`final_norm_interval`), measured exactly as
# the logit difference of the changed run read at its own scale minus the same residual read
# at the base run's scale.
#
# ## Which later layers amplify it, and which cancel it
#
# Path patching into each later component: its input gets the neuron's change, its output
# change is read through the frozen final norm like the direct effect.
# {glue:text}`paths_legend`

# %% tags=["hide-input"]
show(paths_figure(effects, f"{page.neuron}: direct path and paths through later components"))

# %% [markdown]
# {glue:text}`paths_phrase`
#
# ## Other neurons for comparison
#
# The same split for a few neurons of other layers: in each layer the neuron that
# attribution patching ranks first (on the page's own pair, at every position), for the
# `n_compare` layers where that estimate is largest. A neuron early in the model can act only
# through the layers after it.

# %% tags=["remove-input"]
others = other_layers_effects(page.model, pairs, page.neuron, direction, n_compare)
note(comparison_phrase(others))
show_table(effects_table([effects, *others]), caption="Mean over pairs [95% interval] of each neuron's effects")
indirect = most_indirect(others)
glue(**most_indirect_summary(indirect))

# %% [markdown]
# {glue:text}`indirect_paths_phrase`

# %% tags=["hide-input"]
if indirect is not None:
    show(paths_figure(indirect, f"{indirect.neuron}: direct path and paths through later components"))

# %% [markdown]
# ## Beside the original study
#
# The study measured only the total effect on its one prompt (neuron patching); it split
# nothing into direct and indirect parts. Pair 0 is the page's own pair (the study's by default).

# %% tags=["remove-input"]
paper_beside(page, effects_paper_rows(page.paper, page.neuron, effects))

# %% tags=["remove-cell"]
record_findings(page, effects=effects_findings(effects))
