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
# # Where the difference travels: layer patching
#
# The logit lens shows where the answer is *written* at the last position; it cannot say where
# the information that the fruit is an apple comes from, or how it gets to the last token.
# **Activation patching** asks causally. Take two runs that differ only in the fruit, replace
# one activation of one run (one component, one layer, one position) by its value in the
# other run, and see how far the logit difference
# $\Delta = \text{logit}(\text{' an'}) - \text{logit}(\text{' a'})$ moves. Doing this for every
# layer and every position of three components gives one map each: the residual stream
# entering each block, the attention output and the MLP output.
#
# Two directions, one convention:
#
# * **Sufficiency** (the study's direction): clean activations into the corrupted run. The
#   value is $(\Delta_\text{patched} - \Delta_\text{corrupted}) / (\Delta_\text{clean} -
#   \Delta_\text{corrupted})$: 1 means this one activation restores the clean behaviour.
# * **Necessity**: corrupted activations into the clean run. The value is
#   $(\Delta_\text{clean} - \Delta_\text{patched}) / (\Delta_\text{clean} -
#   \Delta_\text{corrupted})$: 1 means this one activation is enough to destroy it.
#
# Either way the value is the share of the distance from the patched run to the other run
# that the patch covers, so a large value marks an important cell in both maps.
#
# Activation patching goes back to causal tracing {cite}`meng2022locating`; the choice of
# metric and of direction follows the practice set out in {cite}`zhang2023best` and
# {cite}`heimersheim2024patching`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
top_k = 8

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import layer_patching_findings
from helpers.book.display import glue, paper_beside, show, show_table
from helpers.book.figures.patching import patching_heatmaps
from helpers.book.page import setup_page
from helpers.book.summaries.patching import contrast_summary, layer_patching_paper_rows, layer_patching_summary
from helpers.methods.layer_patching import layer_patching, top_cells

# %% tags=["remove-input"]
page = setup_page(context, top_k=top_k)
diff_position = page.contrast.diff_positions[0]

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% tags=["remove-cell"]
sufficiency = layer_patching(page.model, page.contrast, direction="sufficiency")
glue(**contrast_summary(page.contrast, sufficiency["resid_pre"]))

# %% [markdown]
# Here $\Delta$ is {glue:text}`clean_diff:z.3f` on the clean prompt and
# {glue:text}`corrupted_diff:z.3f` on the corrupted one. The prompts differ at position
# {glue:text}`diff_position`, {glue:text}`diff_token`; the prediction is made at the last
# position, {glue:text}`last_token`. Attention only looks back, so every position before the
# differing token is identical in both runs and patching there changes nothing: those cells
# are exactly 0.
#
# ## Sufficiency: clean into corrupted

# %% tags=["hide-input"]
show(
    patching_heatmaps(
        sufficiency,
        page.contrast.str_tokens,
        "Clean activation patched into the corrupted run: share of the logit difference recovered",
        paper=page.paper.patch_maps if page.on_paper_model else None,
    )
)

# %% [markdown]
# The cells that stand out most, over all three maps:

# %% tags=["remove-input"]
show_table(top_cells(sufficiency, page.contrast.str_tokens, top_k))

# %% tags=["remove-cell"]
glue(**layer_patching_summary(sufficiency, diff_position, "suf_"))

# %% [markdown]
# At the last position, the attention layer whose output recovers most is layer
# {glue:text}`suf_attn_layer` ({glue:text}`suf_attn_value:z.3f`) and the MLP layer is layer
# {glue:text}`suf_mlp_layer` ({glue:text}`suf_mlp_value:z.3f`); that MLP layer is the one the
# neuron-patching page opens up. At the differing token, layer 0's attention output recovers
# {glue:text}`suf_attn0_diff:z.3f` and its MLP output {glue:text}`suf_mlp0_diff:z.3f`.
#
# The residual stream at the last position tells when the information reaches the token that
# makes the prediction. {glue:text}`suf_resid_span` The largest rise between two consecutive
# layers is from layer {glue:text}`suf_rise_from` to {glue:text}`suf_rise_to`
# ({glue:text}`suf_rise_before:z.3f` to {glue:text}`suf_rise_after:z.3f`). At the differing
# token, patching the residual stream recovers {glue:text}`suf_resid_diff_first:z.3f` at layer
# 0, where it is the whole difference between the two inputs, and
# {glue:text}`suf_resid_diff_last:z.3f` at the input of the last block. The smaller the second
# number, the more of what the prediction needs from the fruit has been copied to later
# positions by then, where patching the fruit's own position can no longer reach it.
#
# ## Necessity: corrupted into clean

# %% tags=["hide-input"]
necessity = layer_patching(page.model, page.contrast, direction="necessity")
show(
    patching_heatmaps(
        necessity,
        page.contrast.str_tokens,
        "Corrupted activation patched into the clean run: share of the logit difference destroyed",
    )
)

# %% tags=["remove-input"]
show_table(top_cells(necessity, page.contrast.str_tokens, top_k))

# %% tags=["remove-cell"]
glue(**layer_patching_summary(necessity, diff_position, "nec_"))

# %% [markdown]
# In this direction the attention layer that matters most at the last position is layer
# {glue:text}`nec_attn_layer` ({glue:text}`nec_attn_value:z.3f` of the clean behaviour
# destroyed) and the MLP layer is layer {glue:text}`nec_mlp_layer`
# ({glue:text}`nec_mlp_value:z.3f`). Where the two directions disagree, a component is
# sufficient without being necessary (other paths carry the same information) or the
# reverse.

# %% [markdown]
# ## Beside the original study
#
# The study patched clean activations into the corrupted run (sufficiency) on GPT-2 Large.
# Its stand-outs are found in its published maps by the same rules as this run's.

# %% tags=["remove-input"]
paper_beside(page, layer_patching_paper_rows(page.paper, sufficiency, diff_position), paper_method="clean into corrupted")

# %% tags=["remove-cell"]
record_findings(page, layer_patching=layer_patching_findings(sufficiency["mlp_out"]))
