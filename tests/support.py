"""What several test modules share besides fixtures (those are in ``conftest.py``): the planted
neuron, the amplified random model, and a minimal book folder."""
from pathlib import Path
import textwrap

import torch

from helpers.core.names import Neuron
from helpers.core.prompts import Contrast

PLANTED = Neuron(2, 37)
# the words of the small corpora the corpus-pass tests draw documents from
WORDS = "the an apple a pear tree and picked old owl ran to an hour of it is egg".split()
FIRE = 6.0  # pre-activation on the trigger; minus this on the corrupted word (GELU(-6) ~ 0)
CLEAN = "I climbed up the pear tree and picked a pear. I climbed up the apple"
CORRUPTED = "I climbed up the pear tree and picked a pear. I climbed up the lemon"


def mlp_parameters(model, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bridge's own W_in ``[d_model, d_mlp]``, b_in ``[d_mlp]`` and W_out ``[d_mlp, d_model]`` parameters."""
    mlp = model.blocks[layer].mlp
    linear_in, linear_out = getattr(mlp, "in")._original_component, mlp.out._original_component
    return linear_in.weight, linear_in.bias, linear_out.weight


def plant(model, contrast: Contrast, neuron: Neuron) -> None:
    """Make ``neuron`` fire on the clean prompt's last token and write the target direction."""
    read = f"blocks.{neuron.layer}.ln2.hook_normalized"
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(contrast.clean, names_filter=read)
        _, corrupted_cache = model.run_with_cache(contrast.corrupted, names_filter=read)
        clean_x, corrupted_x = clean_cache[read][0, -1], corrupted_cache[read][0, -1]
        separating = clean_x - corrupted_x
        w_in = 2 * FIRE * separating / separating.pow(2).sum()
        b_in = -w_in @ (clean_x + corrupted_x) / 2
        target_dir = model.W_U[:, contrast.target] - model.W_U[:, contrast.other]
        target_dir = target_dir - target_dir.mean()  # writing weights are centred
        # write several times the size of the residual stream, so the neuron dominates the logits
        final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        _, cache = model.run_with_cache(contrast.corrupted, names_filter=final)
        w_out = target_dir / target_dir.norm() * 3 * cache[final][0, -1].norm() / FIRE
        W_in, b_in_param, W_out = mlp_parameters(model, neuron.layer)
        W_in[:, neuron.index] = w_in
        b_in_param[neuron.index] = b_in
        W_out[neuron.index] = w_out



def amplified(model, factor: float):
    """Multiply every weight and bias except the layer norms' by ``factor``, in place."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "ln" not in name:
                parameter.mul_(factor)
    return model


PAGE_HEADER = "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n"


def make_book(root: Path, pages: dict[str, str]) -> Path:
    """A minimal book folder with the given page sources."""
    (root / "book").mkdir(parents=True)
    (root / "book" / "intro.md").write_text("# Intro\n")
    chapters = "".join(f"      - file: book/{name}\n" for name in pages)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nparts:\n  - caption: Pages\n    chapters:\n{chapters}")
    (root / "profiles.yaml").write_text("toy:\n  greeting: hello\n  seed: 0\n")
    for name, body in pages.items():
        (root / "book" / f"{name}.py").write_text(PAGE_HEADER + textwrap.dedent(body))
    return root
