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
# # Does the neuron firing mean the model says " an"?
#
# The top examples on the previous page are a handful of tokens picked for being extreme. The
# study asked a broader question of every token in the corpus: when the neuron fires at a
# given strength, how often is `' an'` the model's top prediction? Group the tokens into bins
# of activation and count, in each bin, the positions where `' an'` comes out on top. If the
# neuron is what makes the model say `' an'`, the proportion should climb with the activation.
#
# The study did not read the model's real logits for this. Its "top prediction" was the
# token whose *embedding* best matches the final residual stream (normalised by the final
# layer norm, without the norm's weight and without the unembedding bias). We compute both:
# the model's real top-1 token, and this pseudo-prediction, to see what the shortcut changes.
#
# The measurement and its pseudo-prediction are the study's {cite}`miller2023an`.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context
n_examples = 20
bin_width = 0.2
level = 0.9

# %% tags=["remove-cell"]
from helpers.book.findings import record_findings
from helpers.book.summaries.findings import correlation_findings, random_text_findings, reading_findings
from helpers.book.display import glue, paper_beside, show, show_table
from helpers.book.figures.scan import prediction_counts_figure, top_prediction_curve_figure
from helpers.book.page import setup_page
from helpers.book.summaries.scan import (
    random_text_summary, correlation_paper_rows, correlation_summary, counts_comparable, counts_summary, interval_columns, reading_phrase, study_counts, study_curve_applies,
)
from helpers.core.models import single_token, vocabulary
from helpers.methods.random_text import random_text_activations
from helpers.scan.statistics import activation_by_following, correlation_table, following_classes
from helpers.scan.store import scan

# %% tags=["remove-input"]
page = setup_page(context, "neuron", "corpus", bin_width=bin_width)
target, dataset, n_docs = page.target, page.dataset, page.corpus["n_docs"]
# the same parameters as the max-activating page, so both read one scan
result = scan(page.model, dataset, [page.neuron], top_k=n_examples, pseudo=True, **page.corpus)
target_id = single_token(page.model, target)
real_curve, real_counts = correlation_table(result, page.neuron, target_id, bin_width)
pseudo_curve, pseudo_counts = correlation_table(result, page.neuron, target_id, bin_width, pseudo=True)
paper_applies = study_curve_applies(page.on_paper_model, page.neuron, target, page.paper)

# %% [markdown]
# ```{glue:md} verdicts
# :format: myst
# ```

# %% [markdown]
# ## The proportion per activation bin
#
# Each point is one bin of activation {glue:text}`bin_width` wide; its error bar is a 95%
# Wilson interval, which stays honest in the sparse bins at high activation where a
# proportion rests on a few tokens. The grey bars underneath count the tokens in each bin
# (log scale). On a GPT-2 Large run the paper's curve is drawn dashed; it used the
# pseudo-prediction, so it is to be compared with that curve.

# %% tags=["remove-input"]
show(
    top_prediction_curve_figure(
        {"real top-1 (model's logits)": real_curve, "pseudo-prediction (study's method)": pseudo_curve},
        str(page.neuron),
        target,
        paper=page.paper.an_curve if paper_applies else None,
    )
)

# %% tags=["remove-cell"]
predictions = result.load(["prediction", "pseudo_prediction"])
glue(**correlation_summary(real_curve, pseudo_curve, predictions, level, page.paper, page.neuron, bin_width, result.n_tokens))

# %% [markdown]
# Over {glue:text}`n_tokens` tokens in {glue:text}`n_bins` non-empty bins, the real top-1
# prediction is `' an'` at a proportion of {glue:text}`low_prop_real:z.4f` of the tokens where
# {glue:text}`neuron` is negative, and {glue:text}`high_prop_real:z.2f` of the
# {glue:text}`high_count` tokens where it is at least {glue:text}`high_from`, about half its
# largest activation. `' an'` is the real top-1 prediction at a proportion
# of at least {glue:text}`level` in {glue:text}`real_above`, and the pseudo-prediction in
# {glue:text}`pseudo_above`; in the study's curve that held from an activation of
# {glue:text}`paper_above` on.
#
# ## Predicted versus actual
#
# How often does `' an'` come out as the top prediction, and how often is it really the next
# token?

# %% tags=["remove-input"]
show(
    prediction_counts_figure(
        {
            "top-1 (real logits)": real_counts["predicted"],
            "top-1 (pseudo-prediction)": pseudo_counts["predicted"],
            "actually next": real_counts["actual"],
        },
        target,
        paper=study_counts(page.paper.an_counts) if paper_applies and counts_comparable(dataset, n_docs) else None,
    )
)

# %% tags=["remove-cell"]
glue(**counts_summary(real_counts, pseudo_counts, page.paper))

# %% [markdown]
# `' an'` is the model's real top-1 prediction at {glue:text}`predicted_real` positions and
# the pseudo-prediction at {glue:text}`predicted_pseudo`, while it is actually the next
# token at {glue:text}`actual` positions ({glue:text}`both_real` of which the model got
# right as its top-1). Predicted over actual is {glue:text}`ratio_real:z.2f` with the real
# logits and {glue:text}`ratio_pseudo:z.2f` with the pseudo-prediction; the study's ratio,
# with the pseudo-prediction on pile-10k, was {glue:text}`paper_ratio:z.2f`. A ratio well
# below 1 does not by itself mean the model is wrong: `' an'` can be likely without being
# the single most likely token.
#
# ## What the pseudo-prediction changes
#
# The pseudo-prediction and the real top-1 agree at {glue:text}`agreement:z.1%` of all
# positions. Where they differ, it is because the processed unembedding is not the
# transposed embedding:
# the final layer norm's weight is folded into the unembedding, the unembedding has its own
# bias, and where a model ties the two matrices (GPT-2 does) it ties them before that processing. Both curves are
# on the figure above, so where they part is visible bin by bin.

# %% [markdown]
# ## Article or vowel?
#
# The neuron's top examples come before `' an'`, which come before words that start with a
# vowel sound. So the data could also say "the next word starts with a vowel sound" rather
# than "the next token is `' an'`". The two readings part where a vowel-sound word comes
# without the article (`the apple`, `eat onions`): the article reading expects the neuron to
# stay low there, the vowel reading expects it high. Below, every scanned token is grouped
# by what actually comes next, and again by what the model predicts next (mean activation,
# 95% interval over tokens; none for a class of fewer than 20 tokens).

# %% tags=["remove-input"]
by_following = activation_by_following(result, page.neuron, following_classes(vocabulary(page.model), target_id, single_token(page.model, page.other)))
glue(reading_phrase=reading_phrase(by_following["next"], target))
show_table(interval_columns(by_following["next"]), caption=f"{page.neuron}'s activation by the token that comes next")
show_table(interval_columns(by_following["predicted"]), caption=f"{page.neuron}'s activation by the model's top-1 prediction")

# %% [markdown]
# {glue:text}`reading_phrase`
#
# ### On random text
#
# The same neuron on sequences of tokens drawn uniformly from the vocabulary, where no article
# is ever due.

# %% tags=["remove-cell"]
random_acts = random_text_activations(page.model, page.neuron, seed=page.seeds.draws)
random_values = random_text_summary(random_acts, by_following["next"], target)
glue(**random_values)

# %% [markdown]
# Over {glue:text}`random_tokens` random tokens its mean activation is
# {glue:text}`random_mean:z.3f`. {glue:text}`random_phrase`

# %% [markdown]
# ## Beside the original study

# %% tags=["remove-input"]
paper_beside(
    page,
    correlation_paper_rows(page.paper, real_curve, pseudo_curve, real_counts, pseudo_counts, level, dataset, n_docs, result.n_tokens),
    paper_method="pseudo-prediction, pile-10k, 0.2-wide bins",
)

# %% tags=["remove-cell"]
record_findings(page, correlation=correlation_findings(real_curve, real_counts), reading=reading_findings(by_following["next"]),
                random_text=random_text_findings(random_values))
