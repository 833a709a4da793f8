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
# # Where the answer appears: the logit lens
#
# At the last position of the prompt the residual stream is a running sum: the token and
# position embeddings, then whatever each attention layer and each MLP layer adds. The model
# reads its prediction off the final sum, through the final layer norm and the unembedding.
# The **logit lens** applies the same read-out to every partial sum, before and after each
# sublayer, and asks: if the model had to answer here, how much would it prefer `' an'` over
# `' a'`? A flat curve that suddenly jumps points at the sublayer that wrote the answer in.
#
# The logit lens is nostalgebraist's {cite}`nostalgebraist2020logit`; the study
# {cite}`miller2023an` used it with the final layer norm's scale, as this page does by
# default.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
top_k = 5

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import lens_findings
from helpers.book.display import glue, paper_beside, show
from helpers.book.figures.patching import attribution_figure, logit_lens_figure
from helpers.book.page import setup_page
from helpers.book.summaries.prompt import attribution_summary, lens_paper_rows, lens_summary
from helpers.methods.logit_lens import logit_lens

# %% tags=["remove-input"]
page = setup_page(context, "neuron", top_k=top_k)

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## The logit difference, point by point
#
# Each point reads $\Delta = \text{logit}(\text{' an'}) - \text{logit}(\text{' a'})$ from the
# residual stream at the last position: `L_pre` is the input of block `L` (before its
# attention), `L_mid` sits between its attention and its MLP, and `final_post` is the output
# of the last block. As in the study, every partial sum is divided by the scale of the
# *final* residual stream (the final layer norm's cached scale), which makes the read-out
# linear: each step of the curve is exactly what one sublayer writes in the `' an'` minus `' a'`
# direction. The last point, `logits`, is the model's own logit difference.

# %% tags=["hide-input"]
lens = logit_lens(page.model, page.contrast)
corrupted_lens = logit_lens(page.model, page.contrast, prompt="corrupted")
own_scale = logit_lens(page.model, page.contrast, ln_scale="own")
show(
    logit_lens_figure(
        lens,
        "Logit lens of the clean prompt: logit(' an') - logit(' a') at the last position",
        paper=page.paper.logit_lens if page.on_paper_model else None,
        others={"corrupted prompt": corrupted_lens, "clean, each point's own scale": own_scale},
    )
)

# %% tags=["remove-cell"]
glue(**lens_summary(lens, corrupted_lens))

# %% [markdown]
# The largest single step on the clean prompt comes from **{glue:text}`step_sublayer`**:
# between {glue:text}`step_from` and {glue:text}`step_to` the read-out goes from
# {glue:text}`step_before:z.3f` to {glue:text}`step_after:z.3f`. On the corrupted prompt (the
# dotted curve) the read-out ends at {glue:text}`corrupted_final:z.3f` (logit difference
# {glue:text}`corrupted_true:z.3f`).
#
# The dash-dotted curve, *clean, each point's own scale*, divides each partial sum by its
# *own* scale instead, as if it were the final residual stream. That read-out is no longer a
# sum of sublayer contributions; it agrees with the linear one at the last point, where the
# two scales coincide.
#
# ## The last point is not the logit difference
#
# The read-out above leaves out one term: the unembedding bias, a constant the model adds to
# every logit after the last layer. So the `final_post` point, {glue:text}`final_point:z.3f`,
# differs from the model's logit difference, {glue:text}`true_diff:z.3f`, by exactly
# $b_U[\text{' an'}] - b_U[\text{' a'}]$ = {glue:text}`unembed_bias:z.3f` (the sum matches
# {glue:text}`identity_agreement`). The figure draws that step as the last segment
# rather than letting the curve end at the wrong value.

# %% [markdown]
# ## Which components write the difference directly
#
# Because the read-out is linear, the final point splits into one term per component: the
# token and position embeddings, each attention layer's output and each MLP layer's output
# (each including its own output bias), plus the unembedding bias. These **direct logit
# attributions** sum to the model's logit difference. They count only what a component
# writes straight to the output, not what it does by changing later layers' inputs.

# %% tags=["hide-input"]
show(attribution_figure(lens, "Direct contribution of each component to logit(' an') - logit(' a'), clean prompt"))

# %% tags=["remove-cell"]
glue(**attribution_summary(lens, top_k))

# %% [markdown]
# The {glue:text}`top_k` largest direct contributions towards `' an'` are
# {glue:text}`top_components`; the most negative is {glue:text}`bottom_component`. All of them
# together, with the unembedding bias, add up to {glue:text}`attribution_sum:z.3f`, the
# model's logit difference.

# %% [markdown]
# ## Beside the original study
#
# The study drew the same curve for GPT-2 Large without the unembedding bias: it ends at the
# `final_post` value in the table, while the clean logit difference it reports is the table's
# first row. Its text describes a jump right after the layer 31 MLP.

# %% tags=["remove-input"]
paper_beside(page, lens_paper_rows(page.paper, lens), paper_method="final layer-norm scale, no unembedding bias")

# %% tags=["remove-cell"]
record_findings(page, lens=lens_findings(lens, page.neuron))
