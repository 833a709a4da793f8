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
# so the model must commit to a sound it has not written yet. The original study
# {cite}`miller2023an` found that GPT-2 Large does it when the sentence repeats a pattern set up earlier, in the style of the
# indirect-object task: a first sentence picks *a pear* from a pear tree, and a second one
# climbs an *apple* tree. The corrupted prompt swaps the apple for a lemon, which needs `' a'`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
top_k = 10

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import prompt_findings
from helpers.book.display import glue, paper_beside, show, show_tokens
from helpers.book.figures.common import next_token_bars
from helpers.book.page import setup_page
from helpers.book.summaries.prompt import prompt_paper_rows, prompt_summary
from helpers.core.prompts import per_position_logit_diff, prompt_predictions

# %% tags=["remove-input"]
page = setup_page(context, top_k=top_k)

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## What the model predicts
#
# Both prompts have the same number of tokens and differ only in the fruit of the second tree,
# so every later analysis can compare them position by position.

# %% tags=["hide-input"]
predictions = prompt_predictions(page.model, page.contrast, top_k)
show(next_token_bars(predictions, f"Top {top_k} next tokens"))

# %% tags=["remove-cell"]
glue(**prompt_summary(page.contrast, predictions))

# %% [markdown]
# Both prompts are {glue:text}`n_tokens` tokens long including the beginning-of-sequence token,
# and differ only at {glue:text}`diff_position`. On the clean prompt the top prediction is
# {glue:text}`top_clean`, with P(`' an'`) = {glue:text}`p_target_clean:z.1%` and
# P(`' a'`) = {glue:text}`p_other_clean:z.1%`; on the corrupted prompt the top prediction is
# {glue:text}`top_corrupted`, with P(`' an'`) = {glue:text}`p_target_corrupted:z.1%`.
#
# The quantity every later page tracks is the **logit difference**
#
# $$\Delta = \text{logit}(\text{' an'}) - \text{logit}(\text{' a'})$$
#
# at the last position: {glue:text}`ld_clean:z.3f` on the clean prompt and
# {glue:text}`ld_corrupted:z.3f` on the corrupted one. Without the first sentence the model's
# top prediction is {glue:text}`top_alone` and P(`' an'`) is
# {glue:text}`p_target_alone:z.1%`: {glue:text}`first_sentence_role`.

# %% [markdown]
# ## Where along the prompt the model leans towards " an"
#
# Each token of the clean prompt below is coloured by $\Delta$ for the token that would come
# next at that position: blue where the model prefers `' an'`, red where it prefers `' a'`,
# white at 0; the scale under it runs to the largest difference either way.

# %% tags=["hide-input"]
contrast = page.contrast
show_tokens(contrast.str_tokens, per_position_logit_diff(page.model, contrast.clean, contrast.target, contrast.other).tolist(), label="logit(' an') - logit(' a')")

# %% [markdown]
# ## Beside the original study
#
# The study reports, for GPT-2 Large on the same prompt, the probability of `' an'` and the
# clean logit difference; the table sets them beside this run's.

# %% tags=["remove-input"]
paper_beside(page, prompt_paper_rows(page.paper, page.contrast, predictions))

# %% tags=["remove-cell"]
record_findings(page, prompt=prompt_findings(predictions, page.target))
