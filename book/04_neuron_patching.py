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
# # One neuron out of thousands: neuron patching
#
# Layer patching points at an MLP layer whose output, restored at the last position, brings
# back much of the clean prompt's preference for `' an'`. An MLP layer is thousands of
# neurons, each reading the residual stream, passing it through a GELU and writing its own
# fixed vector back. This page restores them **one at a time**: run the corrupted prompt,
# put back a single neuron's activation from the clean run, and measure how much of the logit
# difference returns. The study did this for every neuron of GPT-2 Large's layer 31 and found
# one neuron, L31N892, that on its own recovers about as much as the whole layer.
#
# Nothing here assumes that answer: the layer is the one layer patching ranks first, and
# the neuron is whichever the numbers put on top.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
clean_prompt = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
corrupted_prompt = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"
target = " an"
other = " a"
layer = "auto"
top_k = 10
per_layer = 5

# %% tags=["remove-cell"]
import torch
from IPython.display import display

from helpers.attribution import agreement, attribution_patching
from helpers.display import glue, is_paper_model, page_header, paper_beside, paper_figures, show
from helpers.figures_neurons import (
    attribution_vs_exact,
    neuron_recovery_scatter,
    neuron_table,
    paper_neuron_bars,
    top_neurons_by_layer,
)
from helpers.models import load_model
from helpers.names import Neuron
from helpers.neuron_patching import check_layer, patch_neurons
from helpers.patching import best_layer, layer_patching
from helpers.prompts import make_contrast

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
contrast = make_contrast(model, clean_prompt, corrupted_prompt, target, other)

# %% tags=["remove-input"]
page_header(model, clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt, target=target, other=other, layer=layer)

# %% [markdown]
# ## Which layer
#
# The default layer is the one whose MLP output, patched from the clean run into the
# corrupted run at the last position only, recovers the largest share of the logit
# difference (the layer-patching page's MLP map, last column).

# %% tags=["remove-cell"]
mlp_map = layer_patching(model, contrast, components=("mlp_out",))["mlp_out"]
chosen = best_layer(mlp_map) if layer == "auto" else check_layer(model, int(layer))
glue(
    layer=chosen,
    layer_source="ranked first by layer patching" if layer == "auto" else "given as a parameter",
    layer_mlp_last=mlp_map[chosen, -1].item(),
)

# %% [markdown]
# This run patches MLP layer {glue:text}`layer` ({glue:text}`layer_source`); restoring its
# whole output at the last position recovers {glue:text}`layer_mlp_last:.3f` of the logit
# difference.
#
# ## Every neuron, one at a time
#
# Each point below is one neuron of that layer: its activation from the clean run put back
# into the corrupted run, either at the last position only or at every position (what the
# study's notebook did). The dashed lines patch all the layer's neurons at once, which is the
# same as restoring the layer's MLP output. The values are exact, equal up to float rounding
# to running one full forward pass per neuron (the book's tests check this); they are computed
# by running only the layers after the patched one, only at the positions that change, with
# many neurons side by side in one batch.

# %% tags=["hide-input"]
results = {mode: patch_neurons(model, contrast, chosen, mode) for mode in ("last", "all")}
show(neuron_recovery_scatter(results, f"Patching each neuron of MLP layer {chosen} alone (hover for its name)"))

# %% tags=["remove-cell"]
last, every = results["last"], results["all"]
(first_name, first_value), (second_name, second_value) = every.ranked(2)
glue(
    top_neuron=str(every.top_neuron),
    top_all=first_value,
    top_last=last.recovery[every.top_neuron.index].item(),
    second_neuron=str(second_name),
    second_all=second_value,
    whole_all=every.whole_layer,
    whole_last=last.whole_layer,
    top_last_neuron=str(last.top_neuron),
    same_top="the same neuron" if last.top_neuron == every.top_neuron else f"a different neuron, {last.top_neuron}",
    top_vs_layer="more than" if first_value > every.whole_layer else "less than",
    n_neurons=f"{every.recovery.numel():,}",
    clean_diff=every.clean_diff,
    corrupted_diff=every.corrupted_diff,
)

# %% [markdown]
# Of the layer's {glue:text}`n_neurons` neurons, restored at every position, the top one is
# **{glue:text}`top_neuron`**: on its own it recovers {glue:text}`top_all:.3f` of the logit
# difference (from {glue:text}`corrupted_diff:.3f` on the corrupted prompt towards
# {glue:text}`clean_diff:.3f` on the clean one), {glue:text}`top_vs_layer` the whole layer
# restored at every position ({glue:text}`whole_all:.3f`). The runner-up,
# {glue:text}`second_neuron`, recovers {glue:text}`second_all:.3f`. Restoring only the last
# position gives {glue:text}`top_neuron` {glue:text}`top_last:.3f` against
# {glue:text}`whole_last:.3f` for the whole layer there, and the top neuron at the last
# position is {glue:text}`same_top`.

# %% [markdown]
# ### The top and bottom neurons

# %% tags=["remove-input"]
display(neuron_table(results, top_k).style.hide(axis="index").format(precision=4).set_caption(f"The {top_k} largest recoveries at every position"))
display(neuron_table(results, 5, largest=False).style.hide(axis="index").format(precision=4).set_caption("The 5 smallest"))

# %% tags=["remove-cell"]
paper = paper_figures()
paper_top, paper_bottom = paper["patch_L31_neurons_top10"], paper["patch_L31_neurons_bottom5"]
on_paper_model = is_paper_model(model.cfg.model_name)
paper_neuron = Neuron(31, int(paper_top[0][0]))
if on_paper_model:
    verdict = (
        f"matches the study: the top neuron is {paper_neuron}"
        if every.top_neuron == paper_neuron
        else f"does not match the study: the top neuron is {every.top_neuron}, not {paper_neuron}"
    )
else:
    verdict = f"cannot be compared with the study's {paper_neuron}: this run uses {model.cfg.model_name}, not GPT-2 Large"
paper_whole = paper["patch_mlp_out"]["layer_by_pos_normalized"][31][-1]
glue(paper_verdict=verdict, paper_whole=paper_whole)

# %% [markdown]
# ## Beside the original study
#
# The study patched every neuron of GPT-2 Large's layer 31 at every position and listed the
# ten best and five worst. The whole-layer value it compared with,
# {glue:text}`paper_whole:.3f`, is layer 31's MLP output restored at the last position (the
# layer-patching map), so it sits beside this run's last-position whole-layer value.
#
# This run {glue:text}`paper_verdict`.

# %% tags=["remove-input"]
paper_beside(
    model.cfg.model_name,
    [
        ("top neuron, restored at every position", str(paper_neuron), str(every.top_neuron)),
        ("its recovery", paper_top[0][1], round(first_value, 4)),
        ("next best recovery", paper_top[1][1], round(second_value, 4)),
        ("whole MLP layer at the last position", paper_whole, round(last.whole_layer, 4)),
    ],
    paper_method="restored at every position",
)
if on_paper_model and chosen == 31:
    run_values = {int(i): every.recovery[int(i)].item() for i, _ in paper_top + paper_bottom}
    show(paper_neuron_bars(paper_top + paper_bottom, run_values, 31, "The study's top ten and bottom five neurons of layer 31"))

# %% [markdown]
# ## A faster estimate for every layer: attribution patching
#
# Exact patching of one layer is cheap here; exact patching of every neuron of every layer
# is not. Attribution patching replaces each patch by its first-order effect, the change in
# a neuron's activation times the gradient of the logit difference with respect to it, so a
# forward pass on each prompt and one backward pass give an estimate for every neuron in the
# model. It is an approximation: where later layer norms, attention and GELUs bend the path
# between the corrupted and clean activations, the estimate drifts. First, how far it drifts
# on the layer patched exactly above.

# %% tags=["hide-input"]
estimates = {mode: attribution_patching(model, contrast, mode) for mode in ("last", "all")}
show(
    attribution_vs_exact(
        every.recovery, estimates["all"][chosen], chosen, f"Attribution estimate against exact patching, layer {chosen}, every position"
    )
)

# %% tags=["remove-cell"]
stats = {mode: agreement(results[mode].recovery, estimates[mode][chosen], k=top_k) for mode in results}
overall = Neuron.from_flat(int(estimates["all"].flatten().argmax()), model.cfg.d_mlp)
glue(
    r_all=stats["all"]["pearson"],
    rho_all=stats["all"]["spearman"],
    overlap_all=stats["all"]["top_k_overlap"],
    r_last=stats["last"]["pearson"],
    rho_last=stats["last"]["spearman"],
    overlap_last=stats["last"]["top_k_overlap"],
    top_k=top_k,
    estimate_top=estimates["all"][chosen, every.top_neuron.index].item(),
    overall_top=str(overall),
    overall_value=estimates["all"].flatten().max().item(),
    overall_same="the same neuron exact patching put first" if overall == every.top_neuron else f"not {every.top_neuron}, the neuron exact patching put first in layer {chosen}",
)

# %% [markdown]
# Over the neurons of layer {glue:text}`layer` restored at every position, the estimate and
# the exact values have Pearson correlation {glue:text}`r_all:.3f` and rank correlation
# {glue:text}`rho_all:.3f`, and {glue:text}`overlap_all:.0%` of the exact top
# {glue:text}`top_k` are in the estimate's top {glue:text}`top_k`. At the last position only:
# Pearson {glue:text}`r_last:.3f`, rank {glue:text}`rho_last:.3f`, top-{glue:text}`top_k`
# overlap {glue:text}`overlap_last:.0%`. The estimate for {glue:text}`top_neuron` is
# {glue:text}`estimate_top:.3f` against its exact {glue:text}`top_all:.3f`.
#
# ## The whole model at once
#
# Each column is one layer; its points are the neurons with the largest estimated effect
# there (hover for names), restored at every position.

# %% tags=["hide-input"]
show(top_neurons_by_layer(estimates["all"], per_layer, 5, "Attribution estimate: the largest neurons of every layer"))

# %% [markdown]
# The largest estimate in the whole model is {glue:text}`overall_top`
# ({glue:text}`overall_value:.3f`), {glue:text}`overall_same`. Estimates elsewhere are only
# pointers: a neuron they single out deserves an exact patch before any claim is made about
# it.
