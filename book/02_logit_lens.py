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

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
clean_prompt = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
corrupted_prompt = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"
target = " an"
other = " a"
top_k = 5

# %% tags=["remove-cell"]
import torch

from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_patching import attribution_figure, logit_lens_figure
from helpers.logit_lens import logit_lens, sublayer_after
from helpers.models import load_model
from helpers.prompts import make_contrast

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
contrast = make_contrast(model, clean_prompt, corrupted_prompt, target, other)
paper = paper_figures()
on_paper_model = is_paper_model(model.cfg.model_name)

# %% tags=["remove-input"]
page_header(model, clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt, target=target, other=other)

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
lens = logit_lens(model, contrast)
corrupted_lens = logit_lens(model, contrast, prompt="corrupted")
own_scale = logit_lens(model, contrast, ln_scale="own")
show(
    logit_lens_figure(
        lens,
        "Logit lens of the clean prompt: logit(' an') - logit(' a') at the last position",
        paper=paper["logit_lens"] if on_paper_model else None,
        others={"corrupted prompt": corrupted_lens, "clean, each point's own scale": own_scale},
    )
)

# %% tags=["remove-cell"]
step_from, step_to, step_before, step_after = lens.biggest_step()
glue(
    step_from=step_from,
    step_to=step_to,
    step_before=step_before,
    step_after=step_after,
    step_sublayer=sublayer_after(step_from),
    final_point=lens.final_point,
    unembed_bias=lens.unembed_bias,
    true_diff=lens.logit_diff,
    identity_error=abs(lens.final_point + lens.unembed_bias - lens.logit_diff),
    corrupted_final=corrupted_lens.final_point,
    corrupted_true=corrupted_lens.logit_diff,
)

# %% [markdown]
# The largest single step on the clean prompt comes from **{glue:text}`step_sublayer`**:
# between {glue:text}`step_from` and {glue:text}`step_to` the read-out goes from
# {glue:text}`step_before:.3f` to {glue:text}`step_after:.3f`. On the corrupted prompt the
# curve ends at {glue:text}`corrupted_final:.3f` (logit difference
# {glue:text}`corrupted_true:.3f`).
#
# The dotted curve divides each partial sum by its *own* scale instead, as if it were the
# final residual stream. That read-out is no longer a sum of sublayer contributions; it agrees
# with the linear one at the last point, where the two scales coincide.
#
# ## The last point is not the logit difference
#
# The read-out above leaves out one term: the unembedding bias, a constant the model adds to
# every logit after the last layer. So the `final_post` point, {glue:text}`final_point:.3f`,
# differs from the model's logit difference, {glue:text}`true_diff:.3f`, by exactly
# $b_U[\text{' an'}] - b_U[\text{' a'}]$ = {glue:text}`unembed_bias:.3f` (the sum matches to
# within {glue:text}`identity_error:.1e`). The figure draws that step as the last segment
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
ranked = lens.attribution_frame().sort_values("attribution", ascending=False)
top = ranked.head(top_k)
glue(
    top_components=", ".join(f"{c} ({v:+.3f})" for c, v in zip(top["component"], top["attribution"])),
    bottom_component=f"{ranked.iloc[-1]['component']} ({ranked.iloc[-1]['attribution']:+.3f})",
    attribution_sum=float(lens.attribution.sum()),
    top_k=top_k,
)

# %% [markdown]
# The {glue:text}`top_k` largest direct contributions towards `' an'` are
# {glue:text}`top_components`; the most negative is {glue:text}`bottom_component`. All of them
# together, with the unembedding bias, add up to {glue:text}`attribution_sum:.3f`, the
# model's logit difference.

# %% [markdown]
# ## Beside the original study
#
# The study drew the same curve for GPT-2 Large without the unembedding bias: it ends at the
# `final_post` value in the table, while the clean logit difference it reports is the first
# row. Its text describes a jump right after the layer 31 MLP.

# %% tags=["remove-cell"]
paper_curve = paper["logit_lens"]
paper_labels = list(paper_curve)
paper_steps = [(paper_curve[b] - paper_curve[a], a, b) for a, b in zip(paper_labels, paper_labels[1:])]
_, paper_from, paper_to = max(paper_steps)

# %% tags=["remove-input"]
paper_beside(
    model.cfg.model_name,
    [
        ("clean logit difference", round(paper["logit_lens_annotation"]["y"], 3), round(lens.logit_diff, 3)),
        ("lens at final_post (no unembedding bias)", paper_curve["final_post"], round(lens.final_point, 3)),
        ("largest step: sublayer", sublayer_after(paper_from), sublayer_after(step_from)),
        (
            "largest step: before -> after",
            f"{paper_curve[paper_from]:.3f} -> {paper_curve[paper_to]:.3f}",
            f"{step_before:.3f} -> {step_after:.3f}",
        ),
    ],
    paper_method="final layer-norm scale, no unembedding bias",
)
