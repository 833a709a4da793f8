"""What drives a neuron: its pre-activation split over upstream components, and the heads that move it.

**Input decomposition.** At the last position the neuron's pre-activation is
``LN2(x) @ W_in[:, n] + b_in[n]``, where ``x`` is the residual stream before the MLP
(``blocks.{L}.hook_resid_mid``). With the study's processing the norm's weight and bias are
folded into ``W_in`` and ``b_in``, so the norm only centres ``x`` and divides it by its scale.
``x`` is a sum of writes: the token and position embeddings, every head's ``z_h @ W_O[l, h]``
and every attention layer's bias ``b_O[l]`` for ``l <= L``, and every MLP layer's output for
``l < L``. With the scale frozen at the run's own value the norm is linear, so

    pre = sum over writes c of  centre(c) @ W_in[:, n] / scale  +  b_in[n]

holds exactly: each write's term is its contribution. Components are labelled ``embed``,
``pos_embed``, ``L{l}H{h}`` (one per head), ``b_O`` (every attention bias, summed), ``mlp {l}``
(the layer's whole output, its bias included) and ``b_in`` (the neuron's own bias, outside
the norm). Clean minus corrupted per component says which writes carry the difference
between the prompts. The MLP layers are also split per neuron (``act_m * W_out[m]``; these
leave out each layer's output bias).

**Head patching** (activation patching with the neuron's activation as the metric, in
TransformerLens's conventions for ``get_act_patch_attn_head_out_all_pos`` and ``..._by_pos``):
one head's ``hook_z`` is taken from the source run into the base run, at every position at
once (``[layer, head, pair]``) or at one position (``[layer, pos, head]``, one pair), and the
neuron's activation at the last position is read. Each forward pass stops once it has it.

**Path patching into the neuron** (the head's output reaching the neuron directly, as
TransformerLens's ``get_act_patch_direct_path`` adds a source head's clean-minus-corrupted
write ``z @ W_O`` to one destination's own input): the head's change of write is added to the
neuron's layer-norm input only, at the last position (the only position the neuron reads
there), every other component keeping its base value. The norm is recomputed, not frozen, as
in a hooked run; no forward pass is needed beyond the two cached runs.

**Upstream neurons** (:func:`neuron_input_patching`): a few named neurons of earlier layers,
each patched alone at every position, with the same metric.

``direction="sufficiency"`` runs the corrupted prompt with clean activations (the study's
direction); ``"necessity"`` the clean prompt with corrupted ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import attn_z, mlp_post, mlp_pre, run_until
from helpers.core.activations import activation_function
from helpers.core.runs import base_and_source
from helpers.core.checks import check_head, check_neuron, check_positive_int
from helpers.core.names import Head, Neuron
from helpers.core.prompts import Contrast, check_single_pair, last_logits, wide

ROWS = 256  # forward rows per batched pass (GPT-2 Large at 20 tokens: about 100 MB per MLP activation)
HEAD_POSITIONS = ("all", "each")


def neuron_bias(model: TransformerBridge, neuron: Neuron) -> Tensor:
    """The bias the forward pass adds to the neuron's pre-activation.

    After the study's processing the bridge's ``mlp.b_in`` property is not the bias the
    forward pass uses; the MLP's input linear layer holds the real one.
    """
    return getattr(model.blocks[neuron.layer].mlp, "in")._original_component.bias[neuron.index]


def input_direction(model: TransformerBridge, neuron: Neuron) -> Float[Tensor, "d_model"]:
    """The neuron's input weights ``W_in[:, n]``, centred (the norm centres what it reads), in float32."""
    w = wide(model.blocks[neuron.layer].mlp.W_in[:, neuron.index].detach())
    return w - w.mean()


@dataclass(frozen=True)
class InputDecomposition:
    """The neuron's last-position pre-activation split into components, per pair.

    ``clean[c, i]`` and ``corrupted[c, i]`` are component ``labels[c]``'s contribution on pair
    ``i``; each column sums to ``clean_pre`` / ``corrupted_pre`` (the model's ``hook_pre``).
    ``neurons_clean[l, m, i]`` splits ``mlp {l}`` per neuron (without the layer's output bias).
    """

    neuron: Neuron
    labels: tuple[str, ...]
    clean: Float[Tensor, "component pair"]
    corrupted: Float[Tensor, "component pair"]
    clean_pre: Float[Tensor, "pair"]
    corrupted_pre: Float[Tensor, "pair"]
    neurons_clean: Float[Tensor, "layer neuron pair"]
    neurons_corrupted: Float[Tensor, "layer neuron pair"]
    n_heads: int

    @property
    def diff(self) -> Float[Tensor, "component pair"]:
        """Clean minus corrupted contribution of every component."""
        return self.clean - self.corrupted

    @property
    def neurons_diff(self) -> Float[Tensor, "layer neuron pair"]:
        """Clean minus corrupted contribution of every upstream neuron."""
        return self.neurons_clean - self.neurons_corrupted

    @property
    def head_labels(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label.startswith("L"))

    @property
    def other_labels(self) -> tuple[str, ...]:
        """Every component that is not a head, in order."""
        return tuple(label for label in self.labels if not label.startswith("L"))

    def index(self, name: str) -> int:
        """Row of component ``name``, else a one-line error listing the names there are."""
        if name not in self.labels:
            mlps = f"mlp 0-{self.neuron.layer - 1}, " if self.neuron.layer else ""
            raise ValueError(
                f"{name!r} is not a component of this decomposition; name one of embed, pos_embed, "
                f"{self.head_labels[0]}-{self.head_labels[-1]}, b_O, {mlps}b_in"
            )
        return self.labels.index(name)

    def heads(self, values: Float[Tensor, "component pair"]) -> Float[Tensor, "layer head pair"]:
        """The head rows of ``values`` as a ``[layer, head, pair]`` grid (layers 0 to the neuron's)."""
        rows = torch.tensor([self.labels.index(label) for label in self.head_labels])
        return values[rows].reshape(self.neuron.layer + 1, self.n_heads, -1)

    def others(self, values: Float[Tensor, "component pair"]) -> Float[Tensor, "other pair"]:
        """The rows of ``values`` that are not heads, in the order of :attr:`other_labels`."""
        return values[torch.tensor([self.labels.index(label) for label in self.other_labels])]


def component_labels(neuron: Neuron, n_heads: int) -> tuple[str, ...]:
    """``embed, pos_embed, L0H0 .. L{L}H{n-1}, b_O, mlp 0 .. mlp {L-1}, b_in``."""
    heads = [str(Head(layer, h)) for layer in range(neuron.layer + 1) for h in range(n_heads)]
    return ("embed", "pos_embed", *heads, "b_O", *(f"mlp {layer}" for layer in range(neuron.layer)), "b_in")


def _last_position_writes(model: TransformerBridge, tokens, neuron: Neuron) -> dict[str, Tensor]:
    """One forward pass up to the neuron: every write at the last position, the norm's scale, the
    MLP activations of earlier layers and the neuron's pre-activation."""
    L = neuron.layer
    kept: dict[str, Tensor] = {}

    def keep(name):
        def hook(x, hook):
            kept[name] = wide(x[:, -1].detach())
            return x
        return hook

    def last(x, hook):
        kept["pre"] = wide(x[:, -1, neuron.index].detach())
        return x

    hooks = [("hook_embed", keep("embed")), ("hook_pos_embed", keep("pos_embed")), (f"blocks.{L}.ln2.hook_scale", keep("scale"))]
    hooks += [(attn_z(l), keep(f"z{l}")) for l in range(L + 1)]
    hooks += [(f"blocks.{l}.hook_mlp_out", keep(f"mlp{l}")) for l in range(L)]
    hooks += [(mlp_post(l), keep(f"post{l}")) for l in range(L)]
    hooks.append((mlp_pre(L), last))
    run_until(model, tokens, mlp_pre(L), hooks)
    return kept


def _contributions(model: TransformerBridge, tokens, neuron: Neuron) -> tuple[Tensor, Tensor, Tensor]:
    """``([component, batch], [batch] pre-activation, [layer, neuron, batch])`` for one chunk of rows."""
    L, w = neuron.layer, input_direction(model, neuron)
    kept = _last_position_writes(model, tokens, neuron)
    scale = kept["scale"].reshape(-1)  # [batch]
    W_O = wide(model.W_O[: L + 1].detach())  # [layer, head, d_head, d_model]
    heads = torch.einsum("blhd,lhd->blh", torch.stack([kept[f"z{l}"] for l in range(L + 1)], 1), W_O @ w)  # [batch, layer, head]
    rows = [kept["embed"] @ w, kept["pos_embed"] @ w, *heads.flatten(1).T, (wide(model.b_O[: L + 1].detach()).sum(0) @ w).expand_as(scale)]
    rows += [kept[f"mlp{l}"] @ w for l in range(L)]
    through_norm = torch.stack(rows) / scale  # [component, batch]
    bias = wide(neuron_bias(model, neuron).detach()).expand(1, scale.shape[0])
    if L:
        W_out = wide(torch.stack([model.blocks[l].mlp.W_out.detach() for l in range(L)]))  # [layer, d_mlp, d_model]
        per_neuron = torch.stack([kept[f"post{l}"] for l in range(L)], 1) * (W_out @ w) / scale[:, None, None]  # [batch, layer, d_mlp]
    else:
        per_neuron = torch.zeros(scale.shape[0], 0, model.cfg.d_mlp)
    return torch.cat([through_norm, bias]), kept["pre"], per_neuron.permute(1, 2, 0)


@torch.no_grad()
def decompose_inputs(model: TransformerBridge, pairs: Contrast, neuron: Neuron | str, max_rows: int = ROWS) -> InputDecomposition:
    """Every upstream component's contribution to ``neuron``'s last-position pre-activation, on the
    clean and the corrupted prompt of every pair (one pass per chunk of ``max_rows`` prompts,
    each stopped at the neuron's layer)."""
    neuron = check_neuron(model, neuron)
    check_positive_int("max_rows", max_rows)
    if model.cfg.normalization_type not in ("LN", "LNPre"):
        raise ValueError(f"the decomposition freezes a LayerNorm's scale, but this model uses {model.cfg.normalization_type}; load a model with LayerNorm (GPT-2)")
    tokens = torch.cat([pairs.clean, pairs.corrupted])
    chunks = [_contributions(model, tokens[start : start + max_rows], neuron) for start in range(0, tokens.shape[0], max_rows)]
    parts, pre, per_neuron = (torch.cat(parts, -1) for parts in zip(*chunks))
    n = pairs.n_pairs
    return InputDecomposition(
        neuron=neuron, labels=component_labels(neuron, model.cfg.n_heads), clean=parts[:, :n], corrupted=parts[:, n:],
        clean_pre=pre[:n], corrupted_pre=pre[n:], neurons_clean=per_neuron[..., :n], neurons_corrupted=per_neuron[..., n:],
        n_heads=model.cfg.n_heads,
    )


@dataclass(frozen=True)
class InputPatch:
    """The neuron's last-position activation with one upstream head (or neuron) patched, per ``index_axis_names``.

    ``values`` is the patched activation; ``base_act`` and ``source_act`` (``[pair]``) are the
    activation in the base run and in the run patched from; :attr:`effect` is
    ``values - base_act``, :attr:`share` the effect over ``source_act - base_act``.
    """

    neuron: Neuron
    direction: str
    values: Float[Tensor, "..."]
    index_axis_names: tuple[str, ...]
    base_act: Float[Tensor, "pair"]
    source_act: Float[Tensor, "pair"]
    what: str
    sources: tuple[Neuron, ...] = ()  # the patched neurons, for a ("neuron", "pair") result

    def _per_pair(self, tensor: Tensor) -> Tensor:
        axis = self.index_axis_names.index("pair") if "pair" in self.index_axis_names else None
        if axis is None:
            return tensor[0]
        shape = [1] * self.values.ndim
        shape[axis] = -1
        return tensor.reshape(shape)

    @property
    def effect(self) -> Float[Tensor, "..."]:
        return self.values - self._per_pair(self.base_act)

    @property
    def share(self) -> Float[Tensor, "..."]:
        return self.effect / self._per_pair(self.source_act - self.base_act)


def _neuron_act(model, tokens, neuron: Neuron, hooks=()) -> Tensor:
    """The neuron's activation at the last position of each row, the pass stopped right after it."""
    kept = {}

    def read(x, hook):
        kept["act"] = wide(x[:, -1, neuron.index].detach())
        return x

    run_until(model, tokens, mlp_post(neuron.layer), [*hooks, (mlp_post(neuron.layer), read)])
    return kept["act"]


def _z_cache(model, tokens, layers: int, hooks=()) -> list[Tensor]:
    """Every head's ``hook_z`` ``[batch, pos, head, d_head]`` of layers ``0 .. layers - 1`` (with
    ``hooks`` attached too); the pass stops at the MLP of the last of them."""
    kept = {}

    def keep(layer):
        def hook(z, hook):
            kept[layer] = z.detach()
            return z
        return hook

    run_until(model, tokens, mlp_pre(layers - 1), [*[(attn_z(l), keep(l)) for l in range(layers)], *hooks])
    return [kept[l] for l in range(layers)]


@torch.no_grad()
def head_patching(
    model: TransformerBridge, pairs: Contrast, neuron: Neuron | str, positions: str = "all",
    direction: str = "sufficiency", max_rows: int = ROWS, heads=None,
) -> InputPatch:
    """Patch each head's output (``hook_z``) of layers 0 to the neuron's from the source run into
    the base run, and read the neuron's activation at the last position.

    ``positions="all"``: every position of the head at once, every pair
    (``[layer, head, pair]``, TransformerLens's ``attn_head_out_all_pos``); ``"each"``: one
    position at a time, on a one-pair Contrast (``[layer, pos, head]``, its ``by_pos``).
    ``heads`` (names or :class:`Head`) limits the patching to those heads; the others' values
    are NaN. Rows of (head, pair) or (head, position) run ``max_rows`` at a time.
    """
    neuron = check_neuron(model, neuron)
    if positions not in HEAD_POSITIONS:
        raise ValueError(f"unknown positions {positions!r}: use 'all' (each head at every position, every pair) or 'each' (each head at each position, one pair)")
    check_positive_int("max_rows", max_rows)
    base, source = base_and_source(pairs if positions == "all" else check_single_pair(pairs), direction)
    layers, n_heads, n_pairs, n_pos = neuron.layer + 1, model.cfg.n_heads, base.shape[0], base.shape[1]
    source_z = _z_cache(model, source, layers)
    base_act, source_act = _neuron_act(model, base, neuron), _neuron_act(model, source, neuron)
    if positions == "all":
        grid = torch.cartesian_prod(torch.arange(layers), torch.arange(n_heads), torch.arange(n_pairs))  # [row, (layer, head, pair)]
        row_layer, row_head, row_pair, row_pos = grid[:, 0], grid[:, 1], grid[:, 2], None
        shape, axes = (layers, n_heads, n_pairs), ("layer", "head", "pair")
    else:
        grid = torch.cartesian_prod(torch.arange(layers), torch.arange(n_pos), torch.arange(n_heads))
        shape, axes = (layers, n_pos, n_heads), ("layer", "pos", "head")
    chosen = torch.ones(grid.shape[0], dtype=torch.bool)
    if heads is not None:
        wanted = [check_head(model, head) for head in heads]
        late = [str(head) for head in wanted if head.layer > neuron.layer]
        if late or not wanted:
            raise ValueError(f"heads must be a non-empty list of heads in layers 0-{neuron.layer}, which can reach {neuron}; {', '.join(late) or 'none'} given there")
        head_axis = 1 if positions == "all" else 2
        flat = torch.tensor([head.layer * n_heads + head.index for head in wanted])
        chosen = torch.isin(grid[:, 0] * n_heads + grid[:, head_axis], flat)
    order = torch.nonzero(chosen).flatten()
    grid = grid[chosen]
    if positions == "all":
        row_layer, row_head, row_pair, row_pos = grid[:, 0], grid[:, 1], grid[:, 2], None
    else:
        row_layer, row_pos, row_head = grid[:, 0], grid[:, 1], grid[:, 2]
        row_pair = torch.zeros_like(row_layer)
    values = []
    for start in range(0, grid.shape[0], max_rows):
        chunk = slice(start, start + max_rows)
        hooks = [(attn_z(l), _patch_z(l, source_z[l], row_layer[chunk], row_head[chunk], row_pair[chunk], None if row_pos is None else row_pos[chunk]))
                 for l in range(layers)]
        values.append(_neuron_act(model, base[row_pair[chunk]], neuron, hooks))
    what = "each head's output at every position" if positions == "all" else "each head's output at one position"
    patched = torch.full((int(torch.tensor(shape).prod()),), float("nan"))
    patched[order] = torch.cat(values) if values else patched[:0]
    return InputPatch(neuron, direction, patched.reshape(shape), axes, base_act, source_act, what)


def _patch_z(layer: int, source: Tensor, row_layer, row_head, row_pair, row_pos):
    """A hook on layer ``layer``'s ``hook_z`` that gives each row of that layer its head's source value."""
    rows = torch.nonzero(row_layer == layer).flatten()

    def hook(z, hook):
        if rows.numel() == 0:
            return z
        z = z.clone()
        heads, pairs = row_head[rows], row_pair[rows]
        if row_pos is None:
            z[rows, :, heads] = source[pairs, :, heads].to(z.dtype)
        else:
            z[rows, row_pos[rows], heads] = source[pairs, row_pos[rows], heads].to(z.dtype)
        return z
    return hook


@torch.no_grad()
def head_paths(model: TransformerBridge, pairs: Contrast, neuron: Neuron | str, direction: str = "sufficiency") -> InputPatch:
    """Path patching from every head of layers 0 to the neuron's straight into the neuron's input
    (``[layer, head, pair]``): the head's change of write at the last position, ``(z_source -
    z_base) @ W_O``, added to the neuron's norm input alone; the norm is recomputed."""
    neuron = check_neuron(model, neuron)
    base, source = base_and_source(pairs, direction)
    L, n_heads = neuron.layer, model.cfg.n_heads
    act = activation_function(model)
    mid = f"blocks.{L}.hook_resid_mid"
    kept = {}

    def keep_mid(x, hook):
        kept["mid"] = x[:, -1].detach()
        return x

    base_z = _z_cache(model, base, L + 1, [(mid, keep_mid)])
    source_z = _z_cache(model, source, L + 1)
    W_O = model.W_O[: L + 1].detach()  # [layer, head, d_head, d_model]
    change = torch.einsum("blhd,lhdm->lhbm", torch.stack([source_z[l][:, -1] - base_z[l][:, -1] for l in range(L + 1)], 1), W_O)
    resid = kept["mid"][None, None] + change  # [layer, head, pair, d_model]
    normalized = model.blocks[L].ln2(resid.reshape(-1, 1, resid.shape[-1]))[:, 0]
    pre = wide(normalized) @ wide(model.blocks[L].mlp.W_in[:, neuron.index].detach()) + wide(neuron_bias(model, neuron).detach())
    values = act(pre).reshape(L + 1, n_heads, base.shape[0])
    base_act, source_act = _neuron_act(model, base, neuron), _neuron_act(model, source, neuron)
    return InputPatch(neuron, direction, values, ("layer", "head", "pair"), base_act, source_act, "each head's direct path into the neuron's input")


def top_heads(result: InputPatch, k: int) -> list[Head]:
    """The ``k`` heads whose patching moves the neuron most: by the size of the mean effect over
    pairs, or (position by position) of the largest effect at any position; unpatched heads last."""
    check_positive_int("k", k)
    effect = result.effect
    if result.index_axis_names == ("layer", "pos", "head"):
        size = effect.abs().nan_to_num(-1.0).amax(1)
    else:
        size = effect.mean(-1).abs().nan_to_num(-1.0)
    order = size.flatten().argsort(descending=True)[:k].tolist()
    return [Head(flat // size.shape[1], flat % size.shape[1]) for flat in order]


def top_head(result: InputPatch) -> Head:
    """The head whose patching moves the neuron most (:func:`top_heads`' first)."""
    return top_heads(result, 1)[0]


def upstream_neurons(model: TransformerBridge, neuron: Neuron | str, candidates) -> list[Neuron]:
    """The ``candidates`` that exist in ``model`` and sit in a layer before ``neuron``'s (those that can drive it)."""
    neuron = Neuron.of(neuron)
    found = [Neuron.of(c) for c in candidates]
    return [c for c in found if c.exists_in(model.cfg.n_layers, model.cfg.d_mlp) and c.layer < neuron.layer]


@torch.no_grad()
def neuron_input_patching(model: TransformerBridge, pairs: Contrast, neuron: Neuron | str, sources, direction: str = "sufficiency") -> InputPatch:
    """Each upstream neuron of ``sources`` patched alone (its activation from the source run, at every
    position) into the base run; ``neuron``'s last-position activation read (``[neuron, pair]``)."""
    neuron = check_neuron(model, neuron)
    sources = [check_neuron(model, s) for s in sources]
    late = [str(s) for s in sources if s.layer >= neuron.layer]
    if late or not sources:
        raise ValueError(f"sources must be a non-empty list of neurons in layers before {neuron}'s ({neuron.layer}); {', '.join(late) or 'none'} given there")
    base, source = base_and_source(pairs, direction)
    n_pairs = base.shape[0]
    layers = sorted({s.layer for s in sources})
    names = {mlp_post(l) for l in layers}
    _, cache = model.run_with_cache(source, names_filter=lambda n: n in names)
    row_source = torch.arange(len(sources)).repeat_interleave(n_pairs)
    row_pair = torch.arange(n_pairs).repeat(len(sources))
    source_layer = torch.tensor([s.layer for s in sources])
    source_index = torch.tensor([s.index for s in sources])

    def patch(layer):
        rows = torch.nonzero(source_layer[row_source] == layer).flatten()

        def hook(act, hook):
            act = act.clone()
            index = source_index[row_source[rows]]
            act[rows, :, index] = cache[mlp_post(layer)][row_pair[rows], :, index].to(act.dtype)
            return act
        return hook

    values = _neuron_act(model, base[row_pair], neuron, [(mlp_post(l), patch(l)) for l in layers])
    return InputPatch(neuron, direction, values.reshape(len(sources), n_pairs), ("neuron", "pair"),
                      _neuron_act(model, base, neuron), _neuron_act(model, source, neuron),
                      "each upstream neuron alone at every position", tuple(sources))


@torch.no_grad()
def attention_pattern(model: TransformerBridge, tokens, head: Head | str) -> Float[Tensor, "pos pos"]:
    """``head``'s attention pattern ``[query, key]`` on one prompt."""
    head = check_head(model, head)
    name = f"blocks.{head.layer}.attn.hook_pattern"
    _, cache = model.run_with_cache(tokens[:1], names_filter=name)
    return wide(cache[name][0, head.index])


@dataclass(frozen=True)
class PromptReadings:
    """For each prompt: the model's P(target) and the neuron's activation at the last position."""

    prompts: tuple[str, ...]
    p_target: Float[Tensor, "prompt"]
    activation: Float[Tensor, "prompt"]


@torch.no_grad()
def read_prompts(model: TransformerBridge, prompts, neuron: Neuron | str, target: int) -> PromptReadings:
    """P(``target``) next and ``neuron``'s last-position activation on each prompt (prompts of any
    length: one pass each)."""
    neuron = check_neuron(model, neuron)
    if isinstance(prompts, str) or not prompts:
        raise ValueError("read_prompts takes a non-empty list of prompts")
    name = mlp_post(neuron.layer)
    probs, acts = [], []
    for prompt in prompts:
        logits, cache = model.run_with_cache(model.to_tokens(prompt), names_filter=name)
        probs.append(wide(logits[0, -1]).softmax(-1)[target])
        acts.append(wide(cache[name][0, -1, neuron.index]))
    return PromptReadings(tuple(prompts), torch.stack(probs), torch.stack(acts))


@torch.no_grad()
def read_pairs(model: TransformerBridge, pairs: Contrast, neuron: Neuron | str, max_rows: int = ROWS) -> tuple[PromptReadings, PromptReadings]:
    """:class:`PromptReadings` of the clean and of the corrupted prompts of a prompt set, batched."""
    neuron = check_neuron(model, neuron)
    name = mlp_post(neuron.layer)
    out = []
    for tokens, texts in ((pairs.clean, [c for c, _ in pairs.texts] or [pairs.clean_text]), (pairs.corrupted, [k for _, k in pairs.texts] or [pairs.corrupted_text])):
        probs, acts = [], []
        for start in range(0, tokens.shape[0], max_rows):
            kept = {}

            def keep(x, hook):
                kept["act"] = wide(x[:, -1, neuron.index])
                return x

            logits = last_logits(model, tokens[start : start + max_rows], [(name, keep)])
            probs.append(logits.softmax(-1)[:, pairs.target])
            acts.append(kept["act"])
        out.append(PromptReadings(tuple(texts), torch.cat(probs), torch.cat(acts)))
    return out[0], out[1]


def candidate_patching(model: TransformerBridge, pairs: Contrast, neuron: Neuron, candidates: list[Neuron], direction: str = "sufficiency") -> InputPatch | None:
    """The ``candidates`` that can drive ``neuron`` in this model (upstream of it, present in the
    model), each patched alone; None when there are none (another model, or a neuron too early)."""
    sources = upstream_neurons(model, neuron, candidates)
    return neuron_input_patching(model, pairs, neuron, sources, direction) if sources else None
