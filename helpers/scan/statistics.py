"""Statistics over a finished scan: the top-prediction curve per activation bin, counts, and
text chosen without looking at the neuron.

Everything here reads a :class:`helpers.scan.store.ScanResult` (or plain arrays); nothing
runs the model.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from helpers.core.names import Neuron
from helpers.scan.store import ScanResult

log = logging.getLogger(__name__)

WILSON_Z = 1.959963984540054
MIN_BIN_COUNT = 20  # fewest tokens a bin needs for its proportion to count in a claim


def top_prediction_curve(
    activations: Float[Tensor, "n"] | np.ndarray,
    is_top: Bool[Tensor, "n"] | np.ndarray,
    bin_width: float = 0.2,
) -> pd.DataFrame:
    """Per activation bin: how often the token was the top prediction, with a 95% interval.

    Bin ``i`` holds activations ``a`` with ``floor(a / bin_width) == i`` (float64), so it
    starts at ``i * bin_width``. Returns the non-empty bins in order with columns
    ``bin_start``, ``bin_end``, ``count``, ``hits``, ``proportion``, ``ci_low``,
    ``ci_high`` (Wilson score interval).
    """
    a = np.asarray(activations.detach().cpu() if isinstance(activations, Tensor) else activations, dtype=np.float64).ravel()
    hit = np.asarray(is_top.detach().cpu() if isinstance(is_top, Tensor) else is_top).ravel()
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    if a.shape != hit.shape:
        raise ValueError(f"activations ({a.size}) and is_top ({hit.size}) must have one entry per token")
    finite = np.isfinite(a)
    if not finite.all():
        log.warning("%d non-finite activations left out of the curve", int((~finite).sum()))
        a, hit = a[finite], hit[finite]
    columns = ["bin_start", "bin_end", "count", "hits", "proportion", "ci_low", "ci_high"]
    if a.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    index = np.floor(a / bin_width).astype(np.int64)
    low = index.min()
    count = np.bincount(index - low)
    hits = np.bincount(index - low, weights=hit.astype(np.float64)).round().astype(np.int64)
    present = np.nonzero(count)[0]
    n, h = count[present], hits[present]
    p = h / n
    lo, hi = wilson_interval(h, n)
    start = np.round((present + low) * bin_width, 10)
    return pd.DataFrame(
        {"bin_start": start, "bin_end": np.round(start + bin_width, 10), "count": n, "hits": h, "proportion": p, "ci_low": lo, "ci_high": hi}
    )


def wilson_interval(hits: np.ndarray, count: np.ndarray, z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``hits`` successes out of ``count`` (default 95%)."""
    hits, count = np.asarray(hits, dtype=np.float64), np.asarray(count, dtype=np.float64)
    p = hits / count
    denominator = 1 + z**2 / count
    centre = (p + z**2 / (2 * count)) / denominator
    half = z * np.sqrt(p * (1 - p) / count + z**2 / (4 * count**2)) / denominator
    # at p = 0 or 1 one end is exactly 0 or 1; set it so rounding cannot move it
    low = np.where(hits == 0, 0.0, np.clip(centre - half, 0, 1))
    high = np.where(hits == count, 1.0, np.clip(centre + half, 0, 1))
    return low, high


def prediction_counts(predictions: Int[Tensor, "n"], next_tokens: Int[Tensor, "n"], token: int) -> dict[str, int]:
    """How often ``token`` is the top prediction, how often it really comes next, and both."""
    predicted = predictions == token
    actual = next_tokens == token
    return {"predicted": int(predicted.sum()), "actual": int(actual.sum()), "both": int((predicted & actual).sum())}


def correlation_table(result: ScanResult, neuron: Neuron | str, token: int, bin_width: float = 0.2, pseudo: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """The top-prediction curve of ``token`` against ``neuron``'s activation, and the counts.

    ``pseudo`` uses the study's pseudo-prediction instead of the model's real top-1.
    """
    column = "pseudo_prediction" if pseudo else "prediction"
    cols = result.load([column, "next_token"])
    predictions = cols[column]
    curve = top_prediction_curve(result.activations(neuron), predictions == token, bin_width)
    return curve, prediction_counts(predictions, cols["next_token"], token)


def always_top_above(curve: pd.DataFrame, level: float = 0.9, min_count: int = MIN_BIN_COUNT) -> float | None:
    """The lowest bin start from which every bin holding at least ``min_count`` tokens has a
    proportion >= ``level`` (a curve without a ``count`` column, such as the study's: every bin).

    None when the last such bin is already below ``level`` (no such activation in the data).
    A bin of one or two tokens has a proportion of 0 or 1 by chance, so it decides nothing.
    """
    if "count" in curve:
        curve = curve[curve["count"] >= min_count]
    below = np.nonzero(curve["proportion"].to_numpy() < level)[0]
    if len(below) == 0:
        return float(curve["bin_start"].iloc[0]) if len(curve) else None
    if below[-1] == len(curve) - 1:
        return None
    return float(curve["bin_start"].iloc[below[-1] + 1])



def random_document(result: ScanResult, neuron: Neuron | str, seed: int = 0, max_tokens: int = 96) -> tuple[int, Int[Tensor, "pos"], Float[Tensor, "pos"]]:
    """A scanned document chosen at random (not by activation): its id, first tokens, and
    the neuron's activation at each."""
    cols = result.load(["doc", "token"])
    present = torch.unique(cols["doc"])
    if len(present) == 0:
        raise ValueError("the scan recorded no tokens; scan more (non-empty) documents")
    doc = int(present[torch.randint(len(present), (1,), generator=torch.Generator().manual_seed(seed))])
    rows = torch.nonzero(cols["doc"] == doc).flatten()[:max_tokens]
    return doc, cols["token"][rows].long(), result.activations(neuron)[rows]


FOLLOWING = ("the target", "the rival", "a vowel-sound word", "a consonant-sound word", "anything else")


def following_classes(words: list[str], target: int, other: int) -> Int[Tensor, "vocab"]:
    """The class (an index into :data:`FOLLOWING`) of every token of a vocabulary as the token
    that comes next: the target (`` an``), its rival (`` a``), a word with a leading space whose
    first sound takes `` an`` (:func:`helpers.core.english.article_for`: "hour" yes, "unicorn"
    no), another word with a leading space, anything else. ``words[i]`` is token ``i`` decoded."""
    from helpers.core.english import article_for

    def kind(text: str) -> int:
        if not (text[:1] == " " and text[1:2].isalpha()):
            return 4
        return 2 if article_for(text) == "an" else 3

    classes = torch.tensor([kind(w) for w in words])
    classes[target], classes[other] = 0, 1
    return classes


def activation_by_class(
    activations: Float[Tensor, "n"], token_class: Int[Tensor, "n"], n_classes: int = len(FOLLOWING),
) -> pd.DataFrame:
    """Per class: token count, the neuron's mean activation and its 95% interval (normal
    approximation over tokens, which at :data:`MIN_BIN_COUNT` tokens or more is close to a
    bootstrap's; NaN below). Rows in class order."""
    x = torch.as_tensor(activations).double().flatten()
    c = torch.as_tensor(token_class).long().flatten()
    count = torch.bincount(c, minlength=n_classes).double()
    total = torch.zeros(n_classes, dtype=torch.float64).scatter_add_(0, c, x)
    squares = torch.zeros(n_classes, dtype=torch.float64).scatter_add_(0, c, x * x)
    mean = total / count.clamp_min(1)
    variance = (squares / count.clamp_min(1) - mean**2).clamp_min(0) * count / (count - 1).clamp_min(1)
    half = WILSON_Z * (variance / count.clamp_min(1)).sqrt()
    enough = count >= MIN_BIN_COUNT
    nan = torch.full_like(mean, float("nan"))
    return pd.DataFrame({
        "count": count.long().numpy(), "mean": torch.where(count > 0, mean, nan).numpy(),
        "low": torch.where(enough, mean - half, nan).numpy(), "high": torch.where(enough, mean + half, nan).numpy(),
    })


def activation_by_following(result: ScanResult, neuron: Neuron | str, classes: Int[Tensor, "vocab"]) -> dict[str, pd.DataFrame]:
    """The neuron's activation split by the class (:func:`following_classes`) of the token that
    actually comes next (``"next"``; a document's last token, with no next token, is left out)
    and of the model's top-1 prediction (``"predicted"``)."""
    cols = result.load(["next_token", "prediction"])
    acts = result.activations(neuron)
    has_next = cols["next_token"] >= 0
    tables = {
        "next": activation_by_class(acts[has_next], classes[cols["next_token"][has_next].long()]),
        "predicted": activation_by_class(acts, classes[cols["prediction"].long()]),
    }
    for table in tables.values():
        table.insert(0, "class", FOLLOWING)
    return tables
