"""The neuron on random text: token sequences drawn uniformly from the vocabulary, with none of
the structure of a corpus, so that what the neuron does on ordinary text can be told from what
it does on anything (a reviewers' request: "the neuron's activation over ordinary text,
including random text")."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_positive_int
from helpers.core.hooks import mlp_post
from helpers.core.names import Neuron


@torch.no_grad()
def random_text_activations(
    model: TransformerBridge, neuron: Neuron, n_sequences: int = 64, length: int = 64, seed: int = 0, batch_size: int = 16,
) -> Float[Tensor, "token"]:
    """``neuron``'s activation at every position after BOS of ``n_sequences`` seeded sequences of
    ``length`` uniformly drawn tokens, ``[n_sequences * (length - 1)]``."""
    for name, value in (("n_sequences", n_sequences), ("length", length), ("batch_size", batch_size)):
        check_positive_int(name, value)
    tokens = torch.randint(0, model.cfg.d_vocab, (n_sequences, length), generator=torch.Generator().manual_seed(seed))
    bos = model.tokenizer.bos_token_id
    if bos is not None:
        tokens[:, 0] = bos
    post = mlp_post(neuron.layer)
    out = []
    for start in range(0, n_sequences, batch_size):
        _, cache = model.run_with_cache(tokens[start : start + batch_size].to(model.cfg.device), names_filter=post)
        out.append(cache[post][:, 1:, neuron.index].float().cpu().flatten())
    return torch.cat(out)
