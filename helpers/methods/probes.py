"""Linear probes for the "vowel direction": does a vector tell nouns taking `` an`` from nouns taking `` a``?

A probe is a logistic regression ``sigmoid(features @ direction + bias)`` fitted with L2
regularisation (full-batch L-BFGS, in float64, seeded). Its held-out accuracy comes from
``folds``-fold cross-validation: every example is predicted once by a probe that never saw
it (nor, when ``groups`` are given, any example of its group: the same noun in another
prompt), and the direction reported is the probe fitted on all examples.

Labels are by sound, not letter: "hour", "honest" take `` an``; "unicorn", "one",
"european" take `` a`` (:func:`helpers.core.english.article_for`). Words whose first letter
misleads are reported on their own, beside the accuracy of the letter rule.

Two feature sets: the token embeddings of one-token nouns (``W_E`` rows, with the leading
space), and the residual stream at the noun's position of a prompt set's clean and corrupted
prompts (the differing position). :func:`ov_cosine` carries a direction through one head's
OV circuit (``d @ W_V[h] @ W_O[h]``, both centred) and compares it with the neuron's input
direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_head, check_neuron, check_positive_int
from helpers.core.english import ANIMALS, CONSONANT_SOUND, FRUITS, OBJECTS, VOWEL_SOUND, article_for
from helpers.core.hooks import resid_pre
from helpers.core.names import Head, Neuron
from helpers.core.prompts import Contrast, wide
from helpers.methods.inputs import input_direction
from helpers.methods.prompt_sets import one_token_words

FOLDS = 5
SHUFFLES = 5  # refits on shuffled labels for the chance baseline
FAMILY_LETTERS = 4  # words sharing their first letters ("hour", "hours", "hourglass") share a fold
L2 = 1e-2
STEPS = 200
VOWELS = "aeiou"


@dataclass(frozen=True)
class Probe:
    """A fitted probe: ``direction [d]`` (in the features' own space), held-out predictions.

    ``heldout[i]`` is example ``i``'s predicted probability of the `` an`` class from the fold
    that left it out; ``labels[i]`` its class; ``names[i]`` what it is (a word).
    """

    direction: Float[Tensor, "d"]
    bias: float
    labels: Bool[Tensor, "example"]
    heldout: Float[Tensor, "example"]
    names: tuple[str, ...]
    folds: int
    shuffled_accuracy: float = float("nan")

    @property
    def correct(self) -> Bool[Tensor, "example"]:
        return (self.heldout > 0.5) == self.labels

    @property
    def accuracy(self) -> float:
        """Held-out accuracy over every example."""
        return float(self.correct.float().mean())

    @property
    def misleading(self) -> Bool[Tensor, "example"]:
        """Examples whose first letter misleads (a vowel letter taking `` a``, or the reverse)."""
        return torch.tensor([letter_rule(name) != bool(label) for name, label in zip(self.names, self.labels.tolist())])

    @property
    def letter_accuracy(self) -> float:
        """Accuracy of the rule "a vowel letter takes `` an``" on the same examples."""
        return float((~self.misleading).float().mean())


def letter_rule(word: str) -> bool:
    """Whether the first letter of ``word`` is a vowel (the spelling rule a probe should beat)."""
    return word.strip()[:1].lower() in VOWELS


def check_classes(labels: Bool[Tensor, "example"], groups: Int[Tensor, "example"], folds: int) -> None:
    """A one-line error unless each class has at least ``folds`` examples (distinct groups) to split."""
    for value, name in ((True, "' an'"), (False, "' a'")):
        count = int(torch.unique(groups[labels == value]).numel())
        if count < folds:
            raise ValueError(
                f"the {name} class has {count} distinct examples, too few to split into {folds} folds; "
                f"the probe needs at least {folds} per class (give more words, or fewer folds)"
            )


def _fit(x: Tensor, y: Tensor, l2: float, steps: int) -> tuple[Tensor, Tensor]:
    """Weights and bias of an L2-regularised logistic regression on scaled ``x`` (float64)."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimiser.step(loss)
    return w.detach(), b.detach()


def fit_probe(
    features: Float[Tensor, "example d"], labels: Bool[Tensor, "example"], names=None, groups: Int[Tensor, "example"] | None = None,
    folds: int = FOLDS, seed: int = 0, l2: float = L2, steps: int = STEPS, shuffles: int = SHUFFLES,
) -> Probe:
    """A logistic-regression probe with ``folds``-fold held-out predictions (folds drawn by group
    within each class, seeded) and its direction fitted on every example; its chance baseline
    is the mean held-out accuracy of ``shuffles`` refits on shuffled labels (same folds)."""
    check_positive_int("folds", folds, low=2)
    labels = torch.as_tensor(labels, dtype=torch.bool)
    groups = torch.arange(labels.numel()) if groups is None else torch.as_tensor(groups)
    if features.ndim != 2 or features.shape[0] != labels.numel() or groups.numel() != labels.numel():
        raise ValueError(f"fit_probe takes features [example, d] and one label and group per example; got {tuple(features.shape)}, {labels.numel()} labels and {groups.numel()} groups")
    check_classes(labels, groups, folds)
    x = features.double()
    mean = x.mean(0)
    spread = (x - mean).pow(2).sum(1).mean().sqrt().clamp_min(1e-12) / x.shape[1] ** 0.5  # one scale for every dimension: the L2 penalty stays isotropic
    x = (x - mean) / spread
    y = labels.double()
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(labels.numel(), dtype=torch.long)
    for value in (True, False):  # deal each class's groups round-robin into the folds, in a seeded order
        class_groups = torch.unique(groups[labels == value])
        order = class_groups[torch.randperm(class_groups.numel(), generator=generator)]
        fold_of_group = {int(g): i % folds for i, g in enumerate(order.tolist())}
        members = torch.nonzero(labels == value).flatten()
        fold_of[members] = torch.tensor([fold_of_group[int(g)] for g in groups[members].tolist()])
    heldout = _heldout(x, y, fold_of, folds, l2, steps)
    shuffled = [float(((_heldout(x, y[order], fold_of, folds, l2, steps) > 0.5) == (y[order] > 0.5)).double().mean())
                for order in (torch.randperm(labels.numel(), generator=generator) for _ in range(shuffles))]
    w, b = _fit(x, y, l2, steps)
    direction = (w / spread).float()  # logit = (x - mean) / spread @ w + b, so the raw direction is w / spread
    return Probe(direction, float(b - (mean / spread) @ w), labels, heldout.float(),
                 tuple(names) if names is not None else tuple(str(i) for i in range(labels.numel())), folds,
                 sum(shuffled) / len(shuffled) if shuffled else float("nan"))


def _heldout(x: Tensor, y: Tensor, fold_of: Tensor, folds: int, l2: float, steps: int) -> Float[Tensor, "example"]:
    """Each example's probability from the probe fitted on the other folds."""
    heldout = torch.empty(y.numel(), dtype=torch.float64)
    for fold in range(folds):
        test = fold_of == fold
        w, b = _fit(x[~test], y[~test], l2, steps)
        heldout[test] = torch.sigmoid(x[test] @ w + b)
    return heldout


def probe_words(model: TransformerBridge) -> list[str]:
    """The corpus's nouns and sound-rule exceptions that are one token (with a leading space) for
    ``model``, sorted."""
    return sorted(one_token_words(model, set(FRUITS) | set(ANIMALS) | set(OBJECTS) | VOWEL_SOUND | CONSONANT_SOUND))


def embedding_probe(model: TransformerBridge, words=None, folds: int = FOLDS, seed: int = 0) -> Probe:
    """A probe on the token embeddings ``W_E`` of ``words`` (default :func:`probe_words`), labelled
    by the article each takes."""
    words = probe_words(model) if words is None else list(words)
    ids = torch.tensor([model.to_tokens(" " + w, prepend_bos=False)[0, 0].item() for w in words])
    labels = torch.tensor([article_for(w) == "an" for w in words])
    return fit_probe(wide(model.W_E.detach()[ids]), labels, words, groups=word_families(words), folds=folds, seed=seed)


def word_families(words: list[str]) -> Int[Tensor, "word"]:
    """One group id per word: words sharing their first :data:`FAMILY_LETTERS` letters ("hour",
    "hours", "hourglass") are one family, so no fold tests a word whose relative it trained on."""
    prefixes = [w.strip().lower()[:FAMILY_LETTERS] for w in words]
    ids = {p: i for i, p in enumerate(sorted(set(prefixes)))}
    return torch.tensor([ids[p] for p in prefixes])


@torch.no_grad()
def residual_probe(model: TransformerBridge, pairs: Contrast, layer: int, folds: int = FOLDS, seed: int = 0) -> Probe:
    """A probe on the residual stream before block ``layer`` (``hook_resid_pre``) at the noun's
    position of the clean (`` an``) and corrupted (`` a``) prompts of ``pairs``; folds keep
    every occurrence of a noun together."""
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer {layer!r} is out of range: this model has layers 0-{model.cfg.n_layers - 1}")
    position = (pairs.clean != pairs.corrupted).int().argmax(1)  # [pair]: the noun's position
    tokens = torch.cat([pairs.clean, pairs.corrupted])
    rows = torch.arange(tokens.shape[0])
    name = resid_pre(layer)
    _, cache = model.run_with_cache(tokens, names_filter=name)
    features = wide(cache[name][rows, torch.cat([position, position])])
    nouns = tokens[rows, torch.cat([position, position])]
    labels = torch.cat([torch.ones(pairs.n_pairs, dtype=torch.bool), torch.zeros(pairs.n_pairs, dtype=torch.bool)])
    names = [model.tokenizer.decode([int(t)]).strip() for t in nouns]
    return fit_probe(features, labels, names, groups=nouns, folds=folds, seed=seed)


def ov_direction(model: TransformerBridge, head: Head | str, direction: Float[Tensor, "d_model"]) -> Float[Tensor, "d_model"]:
    """``direction`` (centred) carried through ``head``'s OV circuit: ``d @ W_V[h] @ W_O[h]``."""
    head = check_head(model, head)
    d = wide(direction) - wide(direction).mean()
    return d @ wide(model.W_V[head.layer, head.index].detach()) @ wide(model.W_O[head.layer, head.index].detach())


def ov_cosine_null(
    model: TransformerBridge, head: Head | str, neuron: Neuron | str, samples: int = 4000, seed: int = 0,
) -> Float[Tensor, "sample"]:
    """The null for :func:`ov_cosine`: the same cosine for ``samples`` random Gaussian directions
    (seeded) carried through the same head's OV circuit. The circuit's low rank makes this
    wider than the cosine of two random directions of the model's width."""
    head, neuron = check_head(model, head), check_neuron(model, neuron)
    random = torch.randn(samples, model.cfg.d_model, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    random = random - random.mean(1, keepdim=True)
    carried = random @ model.W_V[head.layer, head.index].detach().double() @ model.W_O[head.layer, head.index].detach().double()
    return F.cosine_similarity(carried, input_direction(model, neuron).double()[None], dim=1).float()


def ov_cosine(model: TransformerBridge, head: Head | str, direction: Float[Tensor, "d_model"], neuron: Neuron | str) -> float:
    """Cosine between ``direction`` carried through ``head``'s OV circuit and ``neuron``'s centred
    input weights (the direction its pre-activation reads)."""
    neuron = check_neuron(model, neuron)
    return float(F.cosine_similarity(ov_direction(model, head, direction), input_direction(model, neuron), dim=0))
