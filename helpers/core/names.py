"""Names for model components: a neuron is ``L31N892``, an attention head ``L26H1``.

Every title, file name and table column is derived from these types, never typed by hand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NEURON = re.compile(r"^L(\d+)N(\d+)$")
_HEAD = re.compile(r"^L(\d+)H(\d+)$")


@dataclass(frozen=True, order=True)
class Neuron:
    """One MLP neuron: ``layer`` and ``index`` within that layer's hidden units."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"L{self.layer}N{self.index}"

    @classmethod
    def parse(cls, text: str) -> "Neuron":
        """``"L31N892"`` -> ``Neuron(31, 892)``."""
        match = _NEURON.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a neuron name; write it as L<layer>N<index>, e.g. L31N892")
        return cls(int(match[1]), int(match[2]))

    def exists_in(self, n_layers: int, d_mlp: int) -> bool:
        """Whether a model of ``n_layers`` layers of ``d_mlp`` neurons has this neuron."""
        return 0 <= self.layer < n_layers and 0 <= self.index < d_mlp

    def check(self, n_layers: int, d_mlp: int) -> "Neuron":
        """Return self, or raise if it does not exist in a model of this size."""
        if not self.exists_in(n_layers, d_mlp):
            raise ValueError(
                f"{self} is out of range: the model has layers 0-{n_layers - 1} "
                f"and neurons 0-{d_mlp - 1} per layer"
            )
        return self

    @classmethod
    def from_flat(cls, flat: int, d_mlp: int) -> "Neuron":
        """Neuron at position ``flat`` of all neurons laid out layer after layer."""
        return cls(int(flat) // d_mlp, int(flat) % d_mlp)

    def flat(self, d_mlp: int) -> int:
        """Position of this neuron among all neurons laid out layer after layer."""
        return self.layer * d_mlp + self.index

    @classmethod
    def of(cls, value: "Neuron | str") -> "Neuron":
        """A Neuron from a Neuron or a name such as ``'L31N892'``."""
        return value if isinstance(value, Neuron) else cls.parse(value)


@dataclass(frozen=True, order=True)
class Head:
    """One attention head: ``layer`` and ``index``."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.index}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        match = _HEAD.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a head name; write it as L<layer>H<index>, e.g. L26H1")
        return cls(int(match[1]), int(match[2]))


def show_token(token: str) -> str:
    """A token with its leading space visible, ``' an'``: quoted as Python would, with
    newline, tab and carriage return escaped and any other unprintable character named by
    its code point (``'⟨U+0017⟩'``) instead of printed raw."""
    escapes = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    shown = "".join(escapes.get(c) or (c if c.isprintable() else f"⟨U+{ord(c):04X}⟩") for c in token)
    quote = '"' if "'" in token and '"' not in token else "'"
    return quote + (shown if quote == '"' else shown.replace("'", "\\'")) + quote
