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
# # Scorecard: does each of the study's claims hold here?
#
# The study {cite}`miller2023an` makes a chain of claims about GPT-2 Large, from the prompt to
# one neuron, and its reviewers asked for more. Each row below is one of them, written as a rule
# on numbers. The rule is applied to this run's numbers, recorded by the page that measures
# them, and, where the study published the numbers the rule needs, to the study's own. A claim
# can hold, not hold, stay undecided (its interval straddles the threshold), not apply to this
# model, or need a GPT-2 Large run; a claim whose page did not run in this build says so. When
# the repository keeps a results file of GPT-2 Large measured by this book (`results/`), its
# values and verdicts stand in a column of their own, dated, judged by the same rules.

# %% tags=["parameters"]
context = {}  # the shared parameters (model, prompts, neuron, corpus, prompt set): see helpers.book.context

# %% tags=["remove-cell"]
from helpers.book.claims import scorecard, scorecard_summary, scorecard_view
from helpers.book.display import glue, note, show_table
from helpers.book.findings import read_findings
from helpers.book.page import setup_page
from helpers.book.results import stored_label, stored_study_results

# %% tags=["remove-input"]
page = setup_page(context)

# %% tags=["remove-input"]
stored = stored_study_results()
table = scorecard(read_findings(), page.paper, page.model_name, stored)
summary = scorecard_summary(table, page.model_name)
glue(n_claims=summary["n_claims"], n_holds=summary["n_holds"])
note(summary["summary_sentence"] + " " + summary["weights_sentence"])
show_table(scorecard_view(table, page.model_name, stored_label(stored) if stored else ""),
           caption="The study's claims: the study's values and this run's, each judged by the same rule")

# %% [markdown]
# On this run {glue:text}`n_holds` of the {glue:text}`n_claims` claims hold. The thresholds are named constants in `helpers.book.claims` (for instance, "about as good as
# its whole layer" means at least 0.8 of the layer's recovery), and each rule is tested on
# planted numbers in `tests/test_claims.py`. The study's verdicts use the same rules on the
# values read off its figures; where it gave a claim in words only, its column says so.
