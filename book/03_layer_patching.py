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

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
clean_prompt = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
corrupted_prompt = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"
target = " an"
other = " a"
top_k = 8

# %% tags=["remove-cell"]
import torch
from IPython.display import display

from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_patching import patching_heatmaps
from helpers.models import load_model
from helpers.names import show_token
from helpers.patching import COMPONENTS, layer_patching, standouts, top_cells
from helpers.prompts import make_contrast, next_tokens

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
contrast = make_contrast(model, clean_prompt, corrupted_prompt, target, other)
paper = paper_figures()
on_paper_model = is_paper_model(model.cfg.model_name)
paper_maps = {c: paper[f"patch_{c}"]["layer_by_pos_normalized"] for c in COMPONENTS}

# %% tags=["remove-input"]
page_header(model, clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt, target=target, other=other)

# %% tags=["remove-cell"]
clean_diff = next_tokens(model, contrast.clean, contrast.target, contrast.other).logit_diff
corrupted_diff = next_tokens(model, contrast.corrupted, contrast.target, contrast.other).logit_diff
diff_position = contrast.diff_positions[0]
glue(
    clean_diff=clean_diff,
    corrupted_diff=corrupted_diff,
    diff_token=show_token(contrast.str_tokens[diff_position]),
    diff_position=diff_position,
    last_token=show_token(contrast.str_tokens[-1]),
)

# %% [markdown]
# Here $\Delta$ is {glue:text}`clean_diff:.3f` on the clean prompt and
# {glue:text}`corrupted_diff:.3f` on the corrupted one. The prompts differ at position
# {glue:text}`diff_position`, {glue:text}`diff_token`; the prediction is made at the last
# position, {glue:text}`last_token`. Attention only looks back, so every position before the
# differing token is identical in both runs and patching there changes nothing: those cells
# are exactly 0.
#
# ## Sufficiency: clean into corrupted

# %% tags=["hide-input"]
sufficiency = layer_patching(model, contrast, direction="sufficiency")
show(
    patching_heatmaps(
        sufficiency,
        contrast.str_tokens,
        "Clean activation patched into the corrupted run: share of the logit difference recovered",
        paper=paper_maps if on_paper_model else None,
    )
)

# %% [markdown]
# The cells that stand out most, over all three maps:

# %% tags=["remove-input"]
display(top_cells(sufficiency, contrast.str_tokens, top_k).style.format({"value": "{:.3f}"}).hide(axis="index"))


# %% tags=["remove-cell"]
def resid_span(found: dict) -> str:
    """One sentence on where the last position's residual stream crosses the two thresholds."""
    if found["low_layer"] is None:
        return "Patching it recovers less than 0.2 at every layer."
    text = f"Patching it first recovers 0.2 or more at layer {found['low_layer']} ({found['low_value']:.3f})"
    if found["high_layer"] is None:
        return text + " and never reaches 0.9."
    return text + f" and 0.9 or more from layer {found['high_layer']} ({found['high_value']:.3f})."


run = standouts(sufficiency, diff_position)
glue(
    **{f"suf_{k}": v for k, v in run.items() if v is not None},
    suf_resid_span=resid_span(run),
    suf_resid_diff_first=sufficiency["resid_pre"][0, diff_position].item(),
    suf_resid_diff_last=sufficiency["resid_pre"][-1, diff_position].item(),
)

# %% [markdown]
# At the last position, the attention layer whose output recovers most is layer
# {glue:text}`suf_attn_layer` ({glue:text}`suf_attn_value:.3f`) and the MLP layer is layer
# {glue:text}`suf_mlp_layer` ({glue:text}`suf_mlp_value:.3f`); that MLP layer is the one the
# neuron-patching page opens up. At the differing token, layer 0's attention output recovers
# {glue:text}`suf_attn0_diff:.3f` and its MLP output {glue:text}`suf_mlp0_diff:.3f`.
#
# The residual stream at the last position tells when the information reaches the token that
# makes the prediction. {glue:text}`suf_resid_span` The largest rise between two consecutive
# layers is from layer {glue:text}`suf_rise_from` to {glue:text}`suf_rise_to`
# ({glue:text}`suf_rise_before:.3f` to {glue:text}`suf_rise_after:.3f`). At the differing
# token, patching the residual stream recovers {glue:text}`suf_resid_diff_first:.3f` at layer
# 0, where it is the whole difference between the two inputs, and
# {glue:text}`suf_resid_diff_last:.3f` at the last layer. The smaller the second number, the
# more of what the prediction needs from the fruit has been copied to later positions by
# then, where patching the fruit's own position can no longer reach it.
#
# ## Necessity: corrupted into clean

# %% tags=["hide-input"]
necessity = layer_patching(model, contrast, direction="necessity")
show(
    patching_heatmaps(
        necessity,
        contrast.str_tokens,
        "Corrupted activation patched into the clean run: share of the logit difference destroyed",
    )
)

# %% tags=["remove-input"]
display(top_cells(necessity, contrast.str_tokens, top_k).style.format({"value": "{:.3f}"}).hide(axis="index"))

# %% tags=["remove-cell"]
nec = standouts(necessity, diff_position)
glue(**{f"nec_{k}": v for k, v in nec.items() if v is not None})

# %% [markdown]
# In this direction the attention layer that matters most at the last position is layer
# {glue:text}`nec_attn_layer` ({glue:text}`nec_attn_value:.3f` of the clean behaviour
# destroyed) and the MLP layer is layer {glue:text}`nec_mlp_layer`
# ({glue:text}`nec_mlp_value:.3f`). Where the two directions disagree, a component is
# sufficient without being necessary (other paths carry the same information) or the
# reverse.

# %% [markdown]
# ## Beside the original study
#
# The study patched clean activations into the corrupted run (sufficiency) on GPT-2 Large.
# Its stand-outs are found in its published maps by the same rules as this run's.

# %% tags=["remove-cell"]
paper_diff = next(i for i, t in enumerate(paper["patch_resid_pre"]["tokens"]) if "apple" in t)
ref = standouts(paper_maps, paper_diff)

# %% tags=["remove-input"]
paper_beside(
    model.cfg.model_name,
    [
        ("attention 0 at the differing token", round(ref["attn0_diff"], 3), round(run["attn0_diff"], 3)),
        ("MLP 0 at the differing token", round(ref["mlp0_diff"], 3), round(run["mlp0_diff"], 3)),
        ("best attention layer at the last position", ref["attn_layer"], run["attn_layer"]),
        ("  its recovery", round(ref["attn_value"], 3), round(run["attn_value"], 3)),
        ("best MLP layer at the last position", ref["mlp_layer"], run["mlp_layer"]),
        ("  its recovery", round(ref["mlp_value"], 3), round(run["mlp_value"], 3)),
        (
            "residual stream at the last position: largest rise",
            f"layer {ref['rise_from']} -> {ref['rise_to']}",
            f"layer {run['rise_from']} -> {run['rise_to']}",
        ),
        ("  first layer at 0.2 or more", ref["low_layer"], run["low_layer"]),
        ("  first layer at 0.9 or more", ref["high_layer"], run["high_layer"]),
    ],
    paper_method="clean into corrupted",
)
