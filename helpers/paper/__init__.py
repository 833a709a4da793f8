"""The original study's numbers, typed: neurons as :class:`Neuron`, tokens as strings, counts as ints.

``paper_figures.json`` holds the numbers read off the post's interactive figures (GPT-2
Large); a few values the post states only in its text (P(' an') = 64%, 20 prompt tokens)
are :data:`STATED`. :func:`study` parses both once into a :class:`Study`, so a page never
parses the post's strings (``"Layer: 34, Neuron: 4012"``, ``"' an'"``,
``"Top predictions: 1471"``) itself.

The values apply to one model only: :func:`is_paper_model` says whether a run used
GPT-2 Large (by hub name, or a local copy in a folder named ``gpt2-large``).
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from helpers.core.names import Head, Neuron

FIGURES = Path(__file__).parent / "paper_figures.json"
PAPER_MODELS = {"gpt2-large", "openai-community/gpt2-large"}
STATED = {"p_target_clean": 0.64, "prompt_tokens": 20}
ZERO_WIDTH = "\u200b"


def is_paper_model(model_name: str) -> bool:
    """Whether the original study's numbers (GPT-2 Large) apply to this run."""
    return model_name in PAPER_MODELS or Path(model_name).name in PAPER_MODELS


def parse_token(text: str) -> str:
    """The post's token label (``"' an'"``, possibly with a trailing zero-width space) as the token.

    Labels of control characters hold the raw character between the quotes (no escape), which
    Python cannot evaluate; those are unquoted as they are.
    """
    text = text.replace(ZERO_WIDTH, "")
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return text[1:-1]


def parse_neuron(text: str) -> Neuron:
    """The post's ``"Layer: 34, Neuron: 4012"`` or ``"Layer 33 Neuron 4142"`` as ``L34N4012``."""
    numbers = re.findall(r"\d+", text)
    if len(numbers) != 2:
        raise ValueError(f"{text!r} does not name one neuron as 'Layer L, Neuron N'")
    return Neuron(int(numbers[0]), int(numbers[1]))


def parse_counts(annotation: str) -> "Counts":
    """``"Top predictions: 1471<br>Actual occurrences: 12389"`` as counts."""
    predicted, actual = (int(x) for x in re.findall(r"\d+", annotation))
    return Counts(predicted, actual)


@dataclass(frozen=True)
class Counts:
    """How often a token was the top-1 prediction and how often it really came next (pile-10k)."""

    predicted: int
    actual: int

    @property
    def ratio(self) -> float:
        return self.predicted / self.actual


@dataclass(frozen=True)
class TokenGap:
    """A token, its most congruent neuron, the runner-up neuron and the gap between them."""

    token: str
    gap: float
    neuron: Neuron
    second: Neuron


@dataclass(frozen=True)
class Pair:
    """A mutual-exclusive token/neuron pair and its score."""

    token: str
    neuron: Neuron
    score: float


@dataclass(frozen=True)
class CongruenceRow:
    """One neuron's top tokens by congruence (``W_out . W_E``) and its row's statistics."""

    neuron: Neuron
    top: list[tuple[str, float]]
    mean: float
    std: float
    min: float


@dataclass(frozen=True)
class Study:
    """Every number of the study the book puts beside a run's (GPT-2 Large)."""

    p_target_clean: float
    prompt_tokens: int
    clean_logit_diff: float
    logit_lens: dict[str, float]
    patch_tokens: list[str]
    patch_maps: dict[str, list[list[float]]]
    neuron: Neuron
    top_neurons: list[tuple[Neuron, float]]
    bottom_neurons: list[tuple[Neuron, float]]
    an_curve: list[tuple[float, float]]
    an_counts: Counts
    though_curve: list[tuple[float, float]]
    though_counts: Counts
    congruence: CongruenceRow
    though: CongruenceRow
    token_gaps: list[TokenGap]
    glitch_tokens: list[TokenGap]
    mutual_pairs: list[Pair]

    @property
    def patched_layer(self) -> int:
        """The MLP layer the study patched neuron by neuron (its neuron's layer)."""
        return self.neuron.layer

    @property
    def whole_layer_last(self) -> float:
        """The patched layer's MLP output restored at the last position (layer-patching map)."""
        return self.patch_maps["mlp_out"][self.patched_layer][-1]

    @property
    def diff_position(self) -> int:
        """The position where the study's two prompts differ (its ``' apple'``)."""
        return self.patch_tokens.index(" apple")

    @property
    def hub(self) -> Neuron:
        """The neuron on top for the glitch tokens of the footnote."""
        return self.glitch_tokens[0].neuron

    @property
    def though_neuron(self) -> Neuron:
        return self.though.neuron

    @property
    def though_best_bin(self) -> float:
        """The largest proportion in the study's ``' though'`` curve."""
        return max(p for _, p in self.though_curve)


def _row(figure: dict, neuron: Neuron) -> CongruenceRow:
    return CongruenceRow(neuron, [(parse_token(t), v) for t, v in figure["top"]], figure["mean"], figure["std"], figure["min"])


def _gaps(rows: list) -> list[TokenGap]:
    gaps = []
    for token, gap, pair in rows:
        first, second = (parse_neuron(x) for x in pair.split(" - "))
        gaps.append(TokenGap(parse_token(token), gap, first, second))
    return gaps


def study(path: Path = FIGURES) -> Study:
    """The study's numbers, parsed from ``paper_figures.json`` and :data:`STATED`."""
    raw = json.loads(path.read_text())
    top_key = next(k for k in raw if re.fullmatch(r"patch_L\d+_neurons_top10", k))
    patched_layer = int(re.findall(r"\d+", top_key)[0])
    top = raw[top_key]
    neuron = Neuron(patched_layer, int(top[0][0]))
    rows = {Neuron.parse(k.split("_")[0]): _row(v, Neuron.parse(k.split("_")[0])) for k, v in raw.items() if k.endswith("_congruence_top")}
    (though,) = (row for n, row in rows.items() if n != neuron)
    return Study(
        p_target_clean=STATED["p_target_clean"],
        prompt_tokens=STATED["prompt_tokens"],
        clean_logit_diff=raw["logit_lens_annotation"]["y"],
        logit_lens=raw["logit_lens"],
        patch_tokens=[parse_token(t) for t in raw["patch_resid_pre"]["tokens"]],
        patch_maps={c: raw[f"patch_{c}"]["layer_by_pos_normalized"] for c in ("resid_pre", "attn_out", "mlp_out")},
        neuron=neuron,
        top_neurons=[(Neuron(patched_layer, int(i)), v) for i, v in top],
        bottom_neurons=[(Neuron(patched_layer, int(i)), v) for i, v in raw[top_key.replace("top10", "bottom5")]],
        an_curve=[tuple(b) for b in raw["an_top_pred_proportion"]["bins"]],
        an_counts=parse_counts(raw["an_top_pred_proportion"]["annotation"]),
        though_curve=[tuple(b) for b in raw["though_top_pred_proportion"]["bins"]],
        though_counts=parse_counts(raw["though_top_pred_proportion"]["annotation"]),
        congruence=rows[neuron],
        though=though,
        token_gaps=_gaps(raw["top2_neuron_gap_per_token_top20"]),
        glitch_tokens=_gaps(raw["footnote_top_congruence_per_token_top15"]),
        mutual_pairs=[Pair(parse_token(t), parse_neuron(n), s) for t, n, s in raw["top30_mutual_exclusive_congruence"]],
    )


@dataclass(frozen=True)
class Leads:
    """What the follow-up exploration of the same neuron named but did not measure (GPT-2 Large):
    the head that brings the noun, candidate "vowel" neurons upstream, the layer from which the
    neuron's input builds, and four more prompts to try."""

    head: Head
    vowel_neurons: tuple[Neuron, ...]
    input_from_layer: int
    prompts: tuple[str, ...]


LEADS = Leads(
    head=Head(26, 1),
    vowel_neurons=tuple(Neuron.parse(n) for n in ("L0N1595", "L7N2183", "L15N4007", "L15N2003", "L16N4543", "L23N4377")),
    input_from_layer=16,
    prompts=("Ross Perot, who ran as", "An eye for", "Every action has", "I'll be there in under half"),
)
