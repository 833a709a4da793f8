"""Load a model through TransformerLens with the original study's weight processing.

One code path for every model: a HuggingFace model folder (the bundled toy model, or any
local copy), a hub name (``gpt2-large``, downloaded by ``transformers`` on first use), or a
random GPT-2 architecture of chosen size (tests and benchmarks). Each is wrapped in a
``TransformerBridge`` and processed like the study's ``HookedTransformer`` (fold LN, centre
writing weights, centre unembed, refactor factored attention matrices).

Processing GPT-2 Large takes far longer than loading it (the attention refactoring runs an
SVD per head), and every page loads the model. For a local folder the processed weights are
kept on disk under ``.cache/processed/`` (``helpers.core.cache``: safetensors with a checksum,
written atomically), keyed by a hash of the folder's weight and config files, the dtype, the
processing options and the TransformerLens version; a later load boots the plain model and
installs them instead of processing again. A changed weight file gets a new key, so a stale
file is never read; a damaged one is named in a warning and processed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES
from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

from helpers.core.cache import cached
from helpers.core.model_folder import ModelUnavailable, check_model_folder  # noqa: F401 (re-exported)

ASSETS = Path(__file__).resolve().parent.parent / "toy" / "assets"
# The bundled family, trained by one command (``helpers.toy.train``) on one corpus: the toy the
# pages use, two more seeds of its shape, a smaller and a deeper shape (see each model card).
BUNDLED_MODELS = {
    "toy": ASSETS / "toy-an",
    "toy-seed1": ASSETS / "toy-an-seed1",
    "toy-seed2": ASSETS / "toy-an-seed2",
    "toy-small": ASSETS / "toy-an-small",
    "toy-deep": ASSETS / "toy-an-deep",
}
HUB_HOST = "huggingface.co"
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROCESSED_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "processed"
PROCESSING = dict(fold_ln=True, center_writing_weights=True, center_unembed=True, refactor_factored_attn_matrices=True)
HASH_CHUNK = 1 << 24


def load_model(name: str, device: str = "cpu", dtype: str = "float32", cache: Path | None = PROCESSED_CACHE) -> TransformerBridge:
    """Load ``name`` (bundled name, local HF folder, or hub name) ready for analysis.

    For a local folder, ``cache`` (a folder, or None for no cache) keeps the processed
    weights so that the next load skips the processing.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    path = resolve_local(name)
    if path is None:
        hub_name = resolve_hub_name(name)
        require_hub(hub_name)
        source = hub_name
    else:
        check_model_folder(path)
        source = str(path)
    bridge = TransformerBridge.boot_transformers(source, device=device, dtype=DTYPES[dtype])
    bridge.cfg.model_name = name
    if path is None:
        return process_weights(bridge)
    return cached(
        cache, "processed", {"folder": processed_key(path, dtype)}, lambda: process_weights(bridge),
        encode=lambda b: ({name: t.detach().cpu() for name, t in b.state_dict().items()}, {}),
        decode=lambda state, _: install_processed_weights(bridge, state),
    )


def processing_for(cfg) -> dict:
    """The study's processing, less what an architecture rules out: the QK circuit of a rotary
    model depends on the positions, so its factored attention matrices are not refactored."""
    rotary = getattr(cfg, "positional_embedding_type", "standard") == "rotary"
    return {**PROCESSING, "refactor_factored_attn_matrices": PROCESSING["refactor_factored_attn_matrices"] and not rotary}


def process_weights(bridge: TransformerBridge) -> TransformerBridge:
    """Apply the study's weight processing (``processing_for``) in place and switch to eval mode."""
    bridge.enable_compatibility_mode(**processing_for(bridge.cfg), disable_warnings=True)
    bridge.eval()
    return bridge


def processed_key(folder: Path, dtype: str) -> str:
    """A hash of what the processed weights depend on: the folder's weight and config files
    (every byte), the dtype, the processing options and the TransformerLens version."""
    from importlib.metadata import version

    digest = hashlib.sha256(json.dumps([dtype, PROCESSING, version("transformer-lens")]).encode())
    for file in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file()):
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def install_processed_weights(bridge: TransformerBridge, state: dict[str, torch.Tensor]) -> TransformerBridge:
    """Turn a freshly booted bridge into the processed one from saved weights, without processing.

    The compatibility layer is switched on without its weight transforms, then the saved
    tensors are routed to the components the way ``TransformerBridge.process_weights`` routes
    its own result (which also unties GPT-2's shared embedding and unembedding).
    """
    from transformer_lens.weight_processing import ProcessWeights

    device = bridge.cfg.device
    state = {name: tensor.to(device) for name, tensor in state.items()}
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    ProcessWeights.distribute_weights_to_components(state_dict=state, component_mapping=bridge.real_components)
    bridge.adapter.postprocess_weights(bridge)
    # the weight attributes (``mlp.b_in``, ``mlp.b_out``, ...) are aliases made at boot: point
    # them at the installed tensors, or they keep returning the unprocessed ones
    bridge._register_all_aliases_recursive()
    bridge._weights_processed = True
    bridge.eval()
    return bridge


def resolve_local(name: str) -> Path | None:
    """The folder behind a bundled name or a path, or None for a hub name."""
    if name in BUNDLED_MODELS:
        return BUNDLED_MODELS[name]
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        return path
    return None


def resolve_hub_name(name: str) -> str:
    """The official hub name for ``name``, or a one-line error for an unknown model."""
    official = resolve_model_alias(name) or name
    if official not in OFFICIAL_MODEL_NAMES:
        raise ModelUnavailable(
            f"unknown model {name!r}: use 'toy' (bundled), a local HuggingFace model folder, "
            "or a TransformerLens model name such as 'gpt2-large'"
        )
    return official


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the HuggingFace hub can be reached (respects ``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def in_hub_cache(hub_name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_name, "config.json"), str)


def require_hub(hub_name: str) -> None:
    """Raise a one-line error unless the model is cached or the hub is reachable."""
    if in_hub_cache(hub_name):
        return
    if not hub_reachable():
        raise ModelUnavailable(
            f"{hub_name} must be downloaded from the HuggingFace hub, which this machine cannot reach; "
            "use MODEL=toy (the bundled model) or MODEL=/path/to/a/local/hf-model-folder"
        )


ARCHITECTURES = ("gpt2", "neox", "llama")


def random_model(
    n_layers: int = 2,
    d_model: int = 64,
    d_mlp: int | None = None,
    n_heads: int = 4,
    d_vocab: int | None = None,
    n_ctx: int = 128,
    seed: int = 0,
    dtype: str = "float32",
    architecture: str = "gpt2",
    random_biases: bool = False,
    unembed_bias: bool = False,
    weight_scale: float = 1.0,
) -> TransformerBridge:
    """A randomly initialised model with the bundled tokenizer, processed like ``load_model``.

    ``architecture``: ``"gpt2"`` (learned positions, LayerNorm, GELU MLP), ``"neox"`` (Pythia:
    rotary on a quarter of each head, parallel attention and MLP, LayerNorm) or ``"llama"``
    (rotary, RMSNorm, gated SiLU MLP, grouped-query attention). ``d_vocab`` defaults to the
    tokenizer's size; ``d_mlp`` to ``4 * d_model``. ``random_biases`` draws every bias and norm
    weight at random (a fresh model has zero biases and unit norms, under which some bias
    terms cannot show); ``unembed_bias`` gives the unembedding a random bias (GPT-2 only);
    ``weight_scale`` multiplies every weight and bias but the norms' before processing (a fresh
    model's small weights make patching effects small).
    """
    from transformers import AutoTokenizer

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if unembed_bias and architecture != "gpt2":
        raise ValueError("unembed_bias is built for the gpt2 architecture only")
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODELS["toy"])
    config = _random_config(architecture, d_vocab or len(tokenizer), n_layers, d_model, d_mlp or 4 * d_model, n_heads, n_ctx,
                            tokenizer.bos_token_id, tie=not unembed_bias)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        hf_model = _model_class(architecture)(config).to(DTYPES[dtype]).eval()
        if unembed_bias:
            head = torch.nn.Linear(d_model, config.vocab_size, bias=True, dtype=DTYPES[dtype])
            head.weight.copy_(hf_model.lm_head.weight)
            head.bias.normal_(0.0, 1.0)
            hf_model.lm_head = head
        if random_biases:
            for name, parameter in hf_model.named_parameters():
                if name.endswith("bias") and name != "lm_head.bias":
                    parameter.normal_(0.0, 0.1)
                elif _is_norm(name):
                    parameter.normal_(1.0, 0.2)
        for name, parameter in hf_model.named_parameters():
            if not _is_norm(name):
                parameter.mul_(weight_scale)
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        bridge = TransformerBridge.boot_transformers(folder, hf_model=hf_model, tokenizer=tokenizer, device="cpu", dtype=DTYPES[dtype])
    bridge.cfg.model_name = f"random {architecture} ({n_layers} layers, d_model {d_model}, seed {seed})"
    return process_weights(bridge)


def _is_norm(name: str) -> bool:
    return "norm" in name or "ln_" in name or "layernorm" in name


def _random_config(architecture: str, vocab: int, n_layers: int, d_model: int, d_mlp: int, n_heads: int, n_ctx: int, bos: int, tie: bool):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    if architecture == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_inner=d_mlp, n_layer=n_layers,
                          n_head=n_heads, bos_token_id=bos, eos_token_id=bos, tie_word_embeddings=tie)
    if architecture == "neox":
        return GPTNeoXConfig(vocab_size=vocab, max_position_embeddings=n_ctx, hidden_size=d_model, intermediate_size=d_mlp,
                             num_hidden_layers=n_layers, num_attention_heads=n_heads, rotary_pct=0.25,
                             use_parallel_residual=True, bos_token_id=bos, eos_token_id=bos)
    return LlamaConfig(vocab_size=vocab, max_position_embeddings=n_ctx, hidden_size=d_model, intermediate_size=d_mlp,
                       num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=max(1, n_heads // 2),
                       bos_token_id=bos, eos_token_id=bos, pad_token_id=None)


def _model_class(architecture: str):
    from transformers import GPT2LMHeadModel, GPTNeoXForCausalLM, LlamaForCausalLM

    return {"gpt2": GPT2LMHeadModel, "neox": GPTNeoXForCausalLM, "llama": LlamaForCausalLM}[architecture]


GPT2_LARGE_SHAPE = dict(n_layers=36, d_model=1280, n_heads=20, d_vocab=50257, n_ctx=1024)


def vocabulary(model: TransformerBridge) -> list[str]:
    """Every token of the model's vocabulary decoded on its own, in id order."""
    return model.tokenizer.batch_decode([[i] for i in range(model.cfg.d_vocab)])


def single_token(model: TransformerBridge, text: str) -> int:
    """The id of ``text`` if it is exactly one token, else a one-line error."""
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(f"{text!r} is not a single token for this model (it splits into {pieces}); choose a one-token target")
    return ids[0]


def describe(model: TransformerBridge) -> dict:
    """Name and shape of a model, for page headers."""
    cfg = model.cfg
    return {
        "model": cfg.model_name,
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "n_heads": cfg.n_heads,
        "d_vocab": cfg.d_vocab,
        "n_neurons": cfg.n_layers * cfg.d_mlp,
    }


def weights_fingerprint(model: TransformerBridge) -> str:
    """A hash of every tensor of the model's processed state (name, shape, dtype and bytes).

    Caches are keyed by it, so results computed from other weights are never returned: a
    retrained or edited model gets a new fingerprint even if its name and shape are the same.
    It is computed from the bytes on every call, so no change escapes it: an edit through
    ``.data`` bumps no version counter, and only the content shows it (SHA-256 runs at about
    1.5 GB/s here: GPT-2 Large's 3 GB in about 2 s, a few calls a page).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()[:20]
