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
# # A prompt where the model says " an"
#
# Before asking *how* a model chooses between `' an'` and `' a'`, we need a prompt where it
# clearly chooses `' an'`. That is harder than it sounds: the article comes before the noun,
# so the model must commit to a sound it has not written yet. The original study found that
# GPT-2 Large does it when the sentence repeats a pattern set up earlier, in the style of the
# indirect-object task: a first sentence picks *a pear* from a pear tree, and a second one
# climbs an *apple* tree. The corrupted prompt swaps the apple for a lemon, which needs `' a'`.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
clean_prompt = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
corrupted_prompt = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"
target = " an"
other = " a"
top_k = 10

# %% tags=["remove-cell"]
import torch

from helpers.display import glue, page_header, paper_beside, paper_figures, show, show_tokens
from helpers.figures import next_token_bars
from helpers.models import load_model
from helpers.prompts import make_contrast, next_tokens, per_position_logit_diff

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)

# %% tags=["remove-input"]
page_header(model, clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt, target=target, other=other)

# %% [markdown]
# ## What the model predicts
#
# Both prompts have the same number of tokens and differ only in the fruit of the second tree,
# so every later analysis can compare them position by position.

# %% tags=["hide-input"]
contrast = make_contrast(model, clean_prompt, corrupted_prompt, target, other)
second_sentence = clean_prompt.split(". ", 1)[1]
predictions = {
    "clean": next_tokens(model, contrast.clean, contrast.target, contrast.other, top_k),
    "corrupted": next_tokens(model, contrast.corrupted, contrast.target, contrast.other, top_k),
    "second sentence only": next_tokens(model, model.to_tokens(second_sentence), contrast.target, contrast.other, top_k),
}
show(next_token_bars(predictions, f"Top {top_k} next tokens"))

# %% tags=["remove-cell"]
clean, corrupted, alone = predictions["clean"], predictions["corrupted"], predictions["second sentence only"]
glue(
    n_tokens=contrast.clean.shape[1],
    p_target_clean=clean.target_prob,
    p_other_clean=clean.other_prob,
    p_target_corrupted=corrupted.target_prob,
    p_other_corrupted=corrupted.other_prob,
    ld_clean=clean.logit_diff,
    ld_corrupted=corrupted.logit_diff,
    top_clean=repr(clean.tokens[0]),
    top_corrupted=repr(corrupted.tokens[0]),
    top_alone=repr(alone.tokens[0]),
    p_target_alone=alone.target_prob,
    first_sentence_role=(
        "the first sentence is what sets up the pattern"
        if alone.target_prob < clean.target_prob / 2
        else "on this model the second sentence alone already settles the article, so the first one is not needed"
    ),
    diff_position=", ".join(repr(contrast.str_tokens[p]) for p in contrast.diff_positions),
)

# %% [markdown]
# Both prompts are {glue:text}`n_tokens` tokens long including the beginning-of-sequence token,
# and differ only at {glue:text}`diff_position`. On the clean prompt the top prediction is
# {glue:text}`top_clean`, with P(`' an'`) = {glue:text}`p_target_clean:.1%` and
# P(`' a'`) = {glue:text}`p_other_clean:.1%`; on the corrupted prompt the top prediction is
# {glue:text}`top_corrupted`, with P(`' an'`) = {glue:text}`p_target_corrupted:.1%`.
#
# The quantity every later page tracks is the **logit difference**
#
# $$\Delta = \text{logit}(\text{' an'}) - \text{logit}(\text{' a'})$$
#
# at the last position: {glue:text}`ld_clean:.3f` on the clean prompt and
# {glue:text}`ld_corrupted:.3f` on the corrupted one. Without the first sentence the model's
# top prediction is {glue:text}`top_alone` and P(`' an'`) is
# {glue:text}`p_target_alone:.1%`: {glue:text}`first_sentence_role`.

# %% [markdown]
# ## Where along the prompt the model leans towards " an"
#
# Each token of the clean prompt below is coloured by $\Delta$ for the token that would come
# next at that position: blue where the model prefers `' an'`, red where it prefers `' a'`.

# %% tags=["hide-input"]
position_diff = per_position_logit_diff(model, contrast.clean, contrast.target, contrast.other)
show_tokens(contrast.str_tokens, position_diff.tolist(), label="logit(' an') - logit(' a')")

# %% [markdown]
# ## Beside the original study
#
# The study reports, for GPT-2 Large on the same prompt, P(`' an'`) = 64% and a clean logit
# difference of 0.986.

# %% tags=["remove-input"]
paper_beside(
    model.cfg.model_name,
    [
        ("P(' an') on the clean prompt", 0.64, round(clean.target_prob, 3)),
        ("logit(' an') - logit(' a'), clean", paper_figures()["logit_lens_annotation"]["y"].__round__(3), round(clean.logit_diff, 3)),
        ("prompt length in tokens (with BOS)", 20, contrast.clean.shape[1]),
    ],
)
