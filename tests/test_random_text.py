"""The neuron on random text: the activations equal a loop over sequences; the quiet rule
follows planted activations."""
import pandas as pd
import pytest
import torch

from helpers.book.summaries.scan import random_text_summary
from helpers.core.hooks import mlp_post
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.random_text import random_text_activations


def test_random_text_activations_equal_a_loop_over_sequences():
    model = random_model(n_layers=2, d_model=16, d_mlp=24, n_heads=2, seed=5)
    got = random_text_activations(model, Neuron(1, 3), n_sequences=5, length=7, seed=2, batch_size=2)
    tokens = torch.randint(0, model.cfg.d_vocab, (5, 7), generator=torch.Generator().manual_seed(2))
    if model.tokenizer.bos_token_id is not None:
        tokens[:, 0] = model.tokenizer.bos_token_id
    slow = []
    for row in tokens:
        _, cache = model.run_with_cache(row[None], names_filter=mlp_post(1))
        slow.append(cache[mlp_post(1)][0, 1:, 3])
    torch.testing.assert_close(got, torch.cat(slow).float(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="length"):
        random_text_activations(model, Neuron(1, 3), length=0)


def test_quiet_on_random_text_is_a_rule_on_the_share_reaching_the_target_level():
    by_next = pd.DataFrame({"mean": [2.0, 0.0, 0.3, 0.1, 0.0]})
    quiet = random_text_summary(torch.cat([torch.zeros(999), torch.tensor([3.0])]), by_next, " an")
    assert quiet["random_quiet"] and quiet["random_share"] == pytest.approx(0.001) and quiet["random_phrase"].startswith("On random text the neuron is quiet")
    loud = random_text_summary(torch.cat([torch.zeros(900), torch.full((100,), 3.0)]), by_next, " an")
    assert not loud["random_quiet"] and "firing alone does not mean an article is due" in loud["random_phrase"]
