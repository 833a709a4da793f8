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
# # Prediction and suppression neurons
#
# Congruence ranks tokens for one neuron. A year after the study, Gurnee et al. (2024,
# *Universal Neurons in GPT2*) summarised each neuron's whole row instead: take the cosine
# between the neuron's output weights and every token's unembedding vector, and look at the
# shape of those numbers over the vocabulary. Most neurons give a bell shape. A neuron that
# writes a small set of tokens gives a heavy tail: high **kurtosis** (a Gaussian has 3). The
# sign of the **skew** says which way the tail points: positive for a neuron that pushes its
# tokens up (a *prediction* neuron), negative for one that pushes them down (a
# *suppression* neuron). They found prediction neurons growing in number through the
# second half of GPT-2, and suppression neurons taking over in the last layers.
#
# Here every neuron is classed with thresholds that are parameters of the page: kurtosis
# above `kurtosis_min`, and skew above `skew_min` (prediction) or below `-skew_min`
# (suppression). The moments come from the same chunked pass as the rest of this part,
# run with the cosine and $W_U$.

# %% tags=["parameters"]
model_name = "toy"
device = "cpu"
dtype = "float32"
seed = 0
kurtosis_min = 10.0
skew_min = 0.0
an_neuron = "auto"
target = " an"

# %% tags=["remove-cell"]
import torch
from IPython.display import display

from helpers.congruence import CACHE, census, census_per_layer, search, token_congruence
from helpers.display import glue, page_header, show
from helpers.figures_congruence import census_per_layer_bars, census_scatter
from helpers.models import load_model
from helpers.names import Neuron, show_token

torch.manual_seed(seed)
model = load_model(model_name, device=device, dtype=dtype)
table = census(search(model, "W_U", "cosine", cache=CACHE), kurtosis_min, skew_min)
per_layer = census_per_layer(table)
if an_neuron == "auto":
    column = token_congruence(model, target, "W_U")
    neuron = Neuron.from_flat(int(column.flatten().argmax()), model.cfg.d_mlp)
else:
    neuron = Neuron.parse(an_neuron).check(model.cfg.n_layers, model.cfg.d_mlp)

# %% tags=["remove-input"]
page_header(model, kurtosis_min=kurtosis_min, skew_min=skew_min, an_neuron=str(neuron), target=target)

# %% [markdown]
# ## Per layer

# %% tags=["remove-input"]
show(census_per_layer_bars(per_layer))
display(per_layer.set_index("layer").T.style.format(precision=0))

# %% tags=["remove-cell"]
n_layers = model.cfg.n_layers
half = n_layers // 2
pred, supp = per_layer["prediction"].to_numpy(), per_layer["suppression"].to_numpy()
supp_over = [int(layer) for layer, p, s in zip(per_layer["layer"], pred, supp) if s > p]
glue(
    kurtosis_min=kurtosis_min,
    skew_min=skew_min,
    n_neurons=f"{len(table):,}",
    n_pred=int(pred.sum()),
    n_supp=int(supp.sum()),
    pred_share_second_half=float(pred[half:].sum() / max(pred.sum(), 1)),
    pred_peak=int(per_layer["layer"].iloc[int(pred.argmax())]),
    pred_peak_n=int(pred.max()),
    supp_over=", ".join(map(str, supp_over)) if supp_over else "none",
    median_kurtosis=float(table["kurtosis"].median()),
)

# %% [markdown]
# With kurtosis above {glue:text}`kurtosis_min` and skew beyond ±{glue:text}`skew_min`,
# {glue:text}`n_pred` of the {glue:text}`n_neurons` neurons are prediction neurons and
# {glue:text}`n_supp` are suppression neurons; the median kurtosis over all neurons is
# {glue:text}`median_kurtosis:.2f`. {glue:text}`pred_share_second_half:.0%` of the
# prediction neurons sit in the second half of the layers, with the most
# ({glue:text}`pred_peak_n`) in layer {glue:text}`pred_peak`. Suppression neurons outnumber
# prediction neurons in layer(s): {glue:text}`supp_over`.
#
# ## Every neuron, and where the " an" neuron sits
#
# Each point is a neuron (a random subset of the unclassed ones when there are many). The
# dotted line is the kurtosis threshold; the star is the neuron most congruent with the
# target token through $W_U$ (or the one named by the `an_neuron` parameter).

# %% tags=["remove-input"]
show(census_scatter(table, kurtosis_min, highlight=str(neuron)))

# %% tags=["remove-cell"]
mine = table[table["neuron"] == str(neuron)].iloc[0]
same_layer = table[table["layer"] == neuron.layer]
glue(
    neuron=str(neuron),
    target=show_token(target),
    an_class=mine["class"],
    an_skew=float(mine["skew"]),
    an_kurtosis=float(mine["kurtosis"]),
    an_kurtosis_rank=int((same_layer["kurtosis"] > mine["kurtosis"]).sum()) + 1,
    layer_size=len(same_layer),
    an_layer=neuron.layer,
)

# %% [markdown]
# {glue:text}`neuron` (the target {glue:text}`target`'s neuron) has skew
# {glue:text}`an_skew:.2f` and kurtosis {glue:text}`an_kurtosis:.1f`, the
# {glue:text}`an_kurtosis_rank`-th highest kurtosis of the {glue:text}`layer_size` neurons
# in layer {glue:text}`an_layer`; with these thresholds it is classed
# **{glue:text}`an_class`**.
#
# The original study did not compute this census, so this page has no paper values to put
# beside its numbers.
