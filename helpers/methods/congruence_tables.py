"""A finished congruence pass (:class:`Congruence`, saved and loaded whole) and the tables read off it.

:func:`helpers.methods.congruence.search` makes the pass; everything here reads it: each
token's top neuron, the mutual-exclusive pairs, the hub neurons, the prediction/suppression
census of Gurnee et al. 2024. Flat neuron ids follow :meth:`helpers.core.names.Neuron.flat`:
``layer * d_mlp + index``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.models import single_token
from helpers.core.names import Neuron, show_token


@dataclass
class Congruence:
    """Everything one pass over neurons x tokens keeps.

    ``token_values[t, k]`` is the k-th largest congruence of token ``t`` over all scanned
    neurons and ``token_neurons[t, k]`` that neuron's flat id; ``neuron_values[i, k]`` and
    ``neuron_tokens[i, k]`` the same for flat neuron ``i`` over tokens (NaN and -1 for neurons in
    layers that were not scanned). ``power_sums[i, p - 1]`` is the sum over the vocabulary of the
    p-th power of the measure, p = 1..4 (float64).
    """

    matrix: str
    measure: str
    n_layers: int
    d_mlp: int
    d_vocab: int
    layers: list[int]
    token_values: Float[Tensor, "vocab 2"]
    token_neurons: Int[Tensor, "vocab 2"]
    neuron_values: Float[Tensor, "neurons 2"]
    neuron_tokens: Int[Tensor, "neurons 2"]
    power_sums: Float[Tensor, "neurons 4"]
    meta: dict = field(default_factory=dict)

    @property
    def token_gap(self) -> Float[Tensor, "vocab"]:
        """Each token's best neuron minus its second best."""
        return self.token_values[:, 0] - self.token_values[:, 1]

    @property
    def neuron_gap(self) -> Float[Tensor, "neurons"]:
        """Each neuron's best token minus its second best."""
        return self.neuron_values[:, 0] - self.neuron_values[:, 1]

    def moments(self) -> pd.DataFrame:
        """Per neuron: mean, std, skew and kurtosis of the measure over the vocabulary.

        Population moments; kurtosis is Pearson's (3 for a Gaussian), as in Gurnee et al.
        Rows are flat neuron ids; unscanned layers are NaN.
        """
        scanned = torch.tensor(self.layers) * self.d_mlp
        if self.power_sums[scanned].isnan().all():
            raise ValueError("this pass kept no power sums; run search(..., moments=True) (the cosine keeps them by default)")
        s = self.power_sums / self.d_vocab
        m1, m2, m3, m4 = s.unbind(1)
        var = (m2 - m1**2).clamp_min(0)
        c3 = m3 - 3 * m1 * m2 + 2 * m1**3
        c4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        frame = pd.DataFrame(
            {
                "layer": (torch.arange(self.n_neurons) // self.d_mlp).numpy(),
                "index": (torch.arange(self.n_neurons) % self.d_mlp).numpy(),
                "mean": m1.numpy(),
                "std": var.sqrt().numpy(),
                "skew": (c3 / var**1.5).numpy(),
                "kurtosis": (c4 / var**2).numpy(),
            }
        )
        return frame

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    def neuron(self, flat: int) -> Neuron:
        return Neuron.from_flat(flat, self.d_mlp)

    TENSORS = ("token_values", "token_neurons", "neuron_values", "neuron_tokens", "power_sums")

    def encode(self) -> tuple[dict[str, Tensor], dict]:
        """Its tensors and a JSON record of the rest (for :func:`helpers.core.cache.cached`)."""
        fields = asdict(self)
        return {name: fields.pop(name) for name in self.TENSORS}, fields

    @classmethod
    def decode(cls, tensors: dict[str, Tensor], record: dict) -> "Congruence":
        return cls(**record, **{name: tensors[name] for name in cls.TENSORS})


def _token_strings(model: TransformerBridge | None, ids: Tensor) -> list[str] | None:
    if model is None:
        return None
    return [show_token(model.tokenizer.decode([int(i)])) for i in ids.tolist()]


def _neurons(result: Congruence, flat: Tensor) -> list[Neuron | None]:
    """The ``Neuron`` at each flat index (None where no neuron was scanned, -1)."""
    return [result.neuron(int(i)) if i >= 0 else None for i in flat.tolist()]


def top_neuron_per_token(result: Congruence, model: TransformerBridge | None = None) -> pd.DataFrame:
    """Each token's most congruent neuron, the runner-up and the gap, largest gap first."""
    frame = pd.DataFrame(
        {
            "token": torch.arange(result.d_vocab).numpy(),
            "neuron": _neurons(result, result.token_neurons[:, 0]),
            "value": result.token_values[:, 0].numpy(),
            "second_neuron": _neurons(result, result.token_neurons[:, 1]),
            "second_value": result.token_values[:, 1].numpy(),
            "gap": result.token_gap.numpy(),
        }
    )
    strings = _token_strings(model, torch.arange(result.d_vocab))
    if strings is not None:
        frame.insert(1, "token_str", strings)
    return frame.sort_values("gap", ascending=False, kind="stable").reset_index(drop=True)


def top_tokens(values: Float[Tensor, "vocab"], model: TransformerBridge, k: int = 15) -> pd.DataFrame:
    """The ``k`` largest entries of a neuron's congruence row, as a table."""
    top = values.topk(k)
    return pd.DataFrame(
        {"token": top.indices.numpy(), "token_str": _token_strings(model, top.indices), "value": top.values.numpy()}
    )


def mutual_exclusive(result: Congruence, model: TransformerBridge | None = None) -> pd.DataFrame:
    """Pairs where the neuron is the token's top neuron and the token is the neuron's top token.

    ``score = token_gap * neuron_gap``: the token's top-1 minus top-2 over neurons times the
    neuron's top-1 minus top-2 over tokens. Sorted by score, largest first.
    """
    best_neuron = result.token_neurons[:, 0]
    tokens = torch.arange(result.d_vocab)
    scanned = best_neuron >= 0
    mutual = scanned.clone()
    mutual[scanned] = result.neuron_tokens[best_neuron[scanned], 0] == tokens[scanned]
    t = tokens[mutual]
    n = best_neuron[mutual]
    token_gap = result.token_gap[t]
    neuron_gap = result.neuron_gap[n]
    frame = pd.DataFrame(
        {
            "token": t.numpy(),
            "neuron": _neurons(result, n),
            "flat": n.numpy(),
            "value": result.token_values[t, 0].numpy(),
            "token_gap": token_gap.numpy(),
            "neuron_gap": neuron_gap.numpy(),
            "score": (token_gap * neuron_gap).numpy(),
        }
    )
    strings = _token_strings(model, t)
    if strings is not None:
        frame.insert(1, "token_str", strings)
    return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def hubs(result: Congruence) -> pd.DataFrame:
    """Neurons that are the top neuron of at least one token, by how many tokens they top."""
    best = result.token_neurons[:, 0]
    counts = torch.bincount(best[best >= 0], minlength=result.n_neurons)
    top_value = torch.full((result.n_neurons,), -torch.inf).scatter_reduce(
        0, best[best >= 0], result.token_values[best >= 0, 0], reduce="amax"
    )
    flat = torch.nonzero(counts).flatten()
    frame = pd.DataFrame(
        {
            "neuron": _neurons(result, flat),
            "flat": flat.numpy(),
            "layer": (flat // result.d_mlp).numpy(),
            "n_tokens": counts[flat].numpy(),
            "max_value": top_value[flat].numpy(),
        }
    )
    return frame.sort_values(["n_tokens", "max_value"], ascending=False, kind="stable").reset_index(drop=True)


def tokens_topped_by(result: Congruence, neuron: Neuron | str, model: TransformerBridge | None = None) -> pd.DataFrame:
    """The tokens whose most congruent neuron is ``neuron``, largest congruence first."""
    flat = Neuron.of(neuron).check(result.n_layers, result.d_mlp).flat(result.d_mlp)
    t = torch.nonzero(result.token_neurons[:, 0] == flat).flatten()
    frame = pd.DataFrame({"token": t.numpy(), "value": result.token_values[t, 0].numpy(), "gap": result.token_gap[t].numpy()})
    strings = _token_strings(model, t)
    if strings is not None:
        frame.insert(1, "token_str", strings)
    return frame.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


KURTOSIS_MIN = 10.0
SKEW_MIN = 0.0


def census(result: Congruence, kurtosis_min: float = KURTOSIS_MIN, skew_min: float = SKEW_MIN) -> pd.DataFrame:
    """Per neuron: moments and a class, ``prediction``, ``suppression`` or ``other``.

    A neuron is a prediction neuron if its kurtosis over the vocabulary exceeds
    ``kurtosis_min`` and its skew exceeds ``skew_min``; a suppression neuron if the kurtosis
    exceeds ``kurtosis_min`` and the skew is below ``-skew_min``. Gurnee et al. split at
    kurtosis 10 of the cosine with ``W_U`` and use the sign of the skew. Only scanned layers.
    """
    if result.measure != "cosine":
        raise ValueError(f"the census is defined on the cosine; run search(..., measure='cosine') (this pass used {result.measure!r})")
    frame = result.moments()
    frame = frame[frame["layer"].isin(result.layers)].copy()
    heavy = frame["kurtosis"] > kurtosis_min
    frame["class"] = "other"
    frame.loc[heavy & (frame["skew"] > skew_min), "class"] = "prediction"
    frame.loc[heavy & (frame["skew"] < -skew_min), "class"] = "suppression"
    frame.insert(0, "neuron", [Neuron(int(l), int(i)) for l, i in zip(frame["layer"], frame["index"])])
    return frame


def census_per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """Counts of prediction and suppression neurons per layer, from :func:`census`."""
    counts = pd.crosstab(table["layer"], table["class"])
    for name in ("prediction", "suppression", "other"):
        if name not in counts:
            counts[name] = 0
    return counts[["prediction", "suppression", "other"]].reset_index()


def shared_neuron_example(result: Congruence, model: TransformerBridge, token: str | None = None) -> tuple[int, Neuron]:
    """A token and its most congruent neuron, for the " though" analysis.

    With ``token`` given (and one token for this model) that token; otherwise the token with
    the largest gap between its top two neurons among the tokens whose top neuron is also
    the top neuron of at least one other token (a neuron shared, as " though" shares its
    neuron with " however" in GPT-2 Large). Falls back to the largest gap overall.
    """
    if token is not None:
        t = single_token(model, token)
    else:
        best = result.token_neurons[:, 0]
        shared = torch.bincount(best[best >= 0], minlength=result.n_neurons)[best.clamp(min=0)] >= 2
        gap = torch.where(shared, result.token_gap, -torch.inf)
        t = int(gap.argmax()) if shared.any() else int(result.token_gap.argmax())
    return t, result.neuron(int(result.token_neurons[t, 0]))


def hub_table(result: Congruence, model: TransformerBridge, n: int = 10, examples: int = 6) -> pd.DataFrame:
    """The ``n`` neurons that are the top neuron of the most tokens, with a few of those tokens."""
    table = hubs(result).head(n).copy()
    best = result.token_neurons[:, 0]
    values = result.token_values[:, 0]
    samples = []
    for flat in table["flat"]:
        ids = torch.nonzero(best == int(flat)).flatten()
        ids = ids[values[ids].argsort(descending=True)][:examples]
        samples.append(", ".join(_token_strings(model, ids)))
    table["example tokens"] = samples
    return table.drop(columns=["flat"]).rename(columns={"n_tokens": "tokens it tops", "max_value": "largest value"})
