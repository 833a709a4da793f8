"""Train the bundled toy model: a byte-level BPE tokenizer and a small GPT-2, on CPU.

    python -m helpers.toy.train [--out DIR] [--steps N] [--seed S] [--docs N] [--threads N]
                                [--layers L] [--width D] [--heads H] [--data-seed S]

The corpus is ``helpers.toy.corpus.documents`` (see there for why it looks the way it does).
``--seed`` fixes the initial weights and the batch order, ``--data-seed`` the corpus (and so
the tokenizer), so models of other seeds share the toy's corpus and token ids by default; the
size options make the family's other configurations with the same command.
Training is plain next-token prediction with AdamW from a fixed seed on CPU, so that the
same command rebuilds the same weights. The thread count is part of what fixes the weights
(float sums split over threads round differently); the default is two threads. The output
is a HuggingFace model folder
(config.json, model.safetensors, tokenizer files), an ``eval.json`` with the measured
numbers and a model card (README.md) built from them; ``evaluate`` is the one function both
the card and the tests use. The folder is written beside its destination and renamed into
place, so a reader never sees half a model.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.core.files import staged_folder
from helpers.core.english import FRAMES_HELDOUT, FRAMES_NOVEL, FRAMES_TRAIN, HELDOUT_NOUNS, article_for
from helpers.toy.corpus import article_accuracy, article_logit_diffs, article_prompts, documents, study_prompts

DEFAULT_OUT = Path(__file__).parent / "assets" / "toy-an"
BOS = "<|endoftext|>"
THREADS = 2
TRAIN_ACTIVATION = "gelu_pytorch_tanh"
SAVED_ACTIVATION = "gelu_new"
EVAL_PROMPTS = 2000
EVAL_SEED = 0
# Study prompts checked for top-1: (vowel noun, consonant noun); apricot and lime are held out.
STUDY_PAIRS = [("apple", "lemon"), ("orange", "plum"), ("olive", "peach"), ("almond", "cherry"),
               ("avocado", "banana"), ("apricot", "lime")]


@dataclass
class TrainConfig:
    """Everything that decides the weights; written into the model card."""

    seed: int = 0
    data_seed: int = 0
    docs: int = 10000
    tokenizer_docs: int = 3000
    vocab_size: int = 2048
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_ctx: int = 256
    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    threads: int = THREADS


def train_tokenizer(texts: list[str], vocab_size: int):
    """A GPT-2 style byte-level BPE tokenizer with ``<|endoftext|>`` as id 0 (BOS and EOS)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS], show_progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        bpe.save(str(path))
        tokenizer = GPT2TokenizerFast(tokenizer_file=str(path), bos_token=BOS, eos_token=BOS, unk_token=BOS)
    if tokenizer.convert_tokens_to_ids(BOS) != 0:
        raise RuntimeError(f"{BOS} must be token 0")
    return tokenizer


def pack(tokenizer, texts: list[str], n_ctx: int):
    """All documents as one ``BOS doc BOS doc ...`` stream cut into ``[n_seq, n_ctx]`` rows."""
    import torch

    encoded = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    bos = torch.tensor([tokenizer.bos_token_id])
    stream = torch.cat([piece for e in encoded for piece in (bos, torch.tensor(e.ids, dtype=torch.long))])
    n_seq = len(stream) // n_ctx
    if n_seq == 0:
        raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one context of {n_ctx}; use more --docs")
    return stream[: n_seq * n_ctx].view(n_seq, n_ctx)


def build_model(cfg: TrainConfig, vocab_size: int, activation: str = TRAIN_ACTIVATION):
    """A GPT-2 (tanh-approximated GELU, tied embeddings, no dropout) initialised from ``cfg.seed``.

    Training runs the tanh GELU as one fused kernel (``gelu_pytorch_tanh``); the saved config
    names GPT-2's ``gelu_new``, the same formula written out op by op (they differ by float
    rounding only), so the shipped model loads exactly as GPT-2 does.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.n_embd, activation_function=activation,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(config)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(cfg: TrainConfig, log=print):
    """Train tokenizer and model; returns (hf_model, tokenizer, history dict)."""
    import torch

    start, cpu_start = time.time(), time.process_time()
    texts = documents(cfg.docs, seed=cfg.data_seed, split="train")
    tokenizer = train_tokenizer(texts[: cfg.tokenizer_docs], cfg.vocab_size)
    data = pack(tokenizer, texts, cfg.n_ctx)
    model = build_model(cfg, len(tokenizer))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=generator)
    losses, cursor = [], 0
    model.train()
    for step in range(cfg.steps):
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(data), generator=generator), 0
        batch = data[order[cursor: cursor + cfg.batch_size]]
        cursor += cfg.batch_size
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step, cfg):.2e}  {time.time() - start:.0f}s  cpu {time.process_time() - cpu_start:.0f}s", flush=True)
    model.eval()
    tail = losses[-min(50, len(losses)):]
    history = {
        "losses": losses,
        "final_loss": sum(tail) / len(tail),
        "final_loss_steps": len(tail),
        "train_seconds": time.time() - start,
        "train_cpu_seconds": time.process_time() - cpu_start,
        "corpus": corpus_stats(texts, tokenizer, data),
    }
    return model, tokenizer, history


def frame_words(frame) -> str:
    """A frame as the card shows it: 'wandered through the ... grove and tasted'."""
    return frame.template.split(" {art}")[0].replace("{s} ", "").replace("{np}", "...")


def corpus_stats(texts: list[str], tokenizer, data) -> dict:
    """Counts that describe the training corpus, for the model card."""
    an, a = tokenizer.convert_tokens_to_ids("Ġan"), tokenizer.convert_tokens_to_ids("Ġa")
    counts = Counter(data.flatten().tolist())
    return {
        "documents": len(texts),
        "characters": sum(len(t) for t in texts),
        "tokens": int(data.numel()),
        "sequences": int(data.shape[0]),
        "vocab_size": len(tokenizer),
        "count_an": counts[an],
        "count_a": counts[a],
        "frames_train": len(FRAMES_TRAIN),
        "frames_heldout": [frame_words(f) for f in FRAMES_HELDOUT],
        "frames_novel": [frame_words(f) for f in FRAMES_NOVEL],
        "heldout_nouns": sorted(HELDOUT_NOUNS),
    }


def evaluate(model, n_prompts: int = EVAL_PROMPTS, seed: int = EVAL_SEED) -> dict:
    """The numbers on the model card: held-out article accuracy (overall and by kind),
    accuracy on fresh training-style prompts, and the study prompts' top-1 next tokens.
    """
    import torch

    heldout = article_prompts(n_prompts, seed=seed, split="heldout")
    seen = article_prompts(n_prompts // 4, seed=seed, split="train")
    diffs = article_logit_diffs(model, heldout)
    correct = (diffs > 0) == torch.tensor([p.article == " an" for p in heldout])
    by_kind = {}
    for kind in sorted({p.kind for p in heldout}):
        mask = torch.tensor([p.kind == kind for p in heldout])
        by_kind[kind] = {"n": int(mask.sum()), "accuracy": float(correct[mask].float().mean())}
    study = []
    for vowel, consonant in STUDY_PAIRS:
        for noun, prompt in zip((vowel, consonant), study_prompts(vowel, consonant)):
            with torch.no_grad():
                probs = model(model.to_tokens(prompt))[0, -1].softmax(-1)
            top = int(probs.argmax())
            study.append({
                "noun": noun, "expected": " " + article_for(noun), "top1": model.tokenizer.decode([top]),
                "p_an": float(probs[model.tokenizer.convert_tokens_to_ids("Ġan")]),
                "p_a": float(probs[model.tokenizer.convert_tokens_to_ids("Ġa")]),
                "heldout_noun": noun in HELDOUT_NOUNS,
            })
    novel = article_prompts(n_prompts // 4, seed=seed, split="novel")
    return {
        "heldout_accuracy": float(correct.float().mean()),
        "heldout_n": len(heldout),
        "heldout_by_kind": by_kind,
        "train_prompts_accuracy": article_accuracy(model, seen),
        "train_prompts_n": len(seen),
        "novel_accuracy": article_accuracy(model, novel),
        "novel_n": len(novel),
        "study_top1": study,
        "study_top1_correct": sum(r["top1"] == r["expected"] for r in study),
        "eval_seed": seed,
    }


def model_card(cfg: TrainConfig, history: dict, results: dict, out_name: str) -> str:
    """The README.md of the model folder, from the config and the measured numbers."""
    c = history["corpus"]
    kinds = "\n".join(f"| {k} | {v['n']} | {v['accuracy']:.3f} |" for k, v in results["heldout_by_kind"].items())
    study = "\n".join(
        f"| `' {r['noun']}'`{' (held out)' if r['heldout_noun'] else ''} | `{r['expected']!r}` | `{r['top1']!r}` | {r['p_an']:.3f} | {r['p_a']:.3f} |"
        for r in results["study_top1"]
    )
    return f"""# {Path(out_name).name}: a small GPT-2 that learned " a" versus " an"

One of the book's offline models (the family is `helpers.core.models.BUNDLED_MODELS`: the
pages use `toy`, the sweep page compares it with other seeds and sizes trained by the same
command). It was trained on a generated corpus (`helpers/toy/corpus.py`) in which
the article before a noun phrase depends on the first sound of the next word, and in which
that word is often named earlier in the same sentence, as in the study's prompt
"I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked".
It is a stage for the book's methods, not a stand-in for GPT-2 Large: what the analysis
pages find in it (one neuron or many) is reported as found.

## Configuration

| | |
|---|---|
| architecture | GPT-2 (`GPT2LMHeadModel`), GELU `gelu_new`, tied embeddings, no dropout |
| layers / d_model / heads / d_mlp | {cfg.n_layer} / {cfg.n_embd} / {cfg.n_head} / {4 * cfg.n_embd} |
| context | {cfg.n_ctx} tokens |
| vocabulary | {c['vocab_size']} (byte-level BPE trained on the first {cfg.tokenizer_docs} documents; `<\\|endoftext\\|>` = id 0 is BOS and EOS) |
| parameters | {history['n_params']:,} |

## Corpus

`helpers.toy.corpus.documents({cfg.docs}, seed={cfg.data_seed}, split="train")`: {c['documents']:,} documents,
{c['characters']:,} characters, {c['tokens']:,} tokens in {c['sequences']:,} sequences of {cfg.n_ctx}
(documents joined by `<|endoftext|>`). `' an'` occurs {c['count_an']:,} times and `' a'` {c['count_a']:,} times.
Training uses {c['frames_train']} frames. Held out (never in training): the frames
{'; '.join(f'"{f}"' for f in c['frames_heldout'])} (each word of them occurs in other training
frames, never in this combination), and the nouns {', '.join(c['heldout_nouns'])} inside any frame
(they do occur in ordinary training sentences, so the model has seen their articles).
The novel-word frames {'; '.join(f'"{f}"' for f in c['frames_novel'])} use verbs and places
that training only shows in ordinary sentences, where the article is not predictable.

## Training

AdamW (betas 0.9/0.95, weight decay {cfg.weight_decay} on matrices), peak learning rate {cfg.lr},
{cfg.warmup} warm-up steps then cosine decay to a tenth, batch {cfg.batch_size} x {cfg.n_ctx} tokens,
{cfg.steps} steps ({cfg.steps * cfg.batch_size * cfg.n_ctx:,} tokens), gradient clipping {cfg.grad_clip},
seed {cfg.seed}, {cfg.threads} CPU threads, torch {history['torch_version']}.
Final training loss (mean of the last {history['final_loss_steps']} steps): {history['final_loss']:.4f}.
Wall time: {history['train_seconds']:.0f} s.

## Evaluation

Measured by `helpers.toy.train.evaluate` on the processed model that `load_model` returns;
the tests call the same function. A prompt counts as correct when P(' an') > P(' a') agrees
with the rule for the word that follows.

Held-out prompts (`article_prompts({results['heldout_n']}, seed={results['eval_seed']}, split="heldout")`):
accuracy **{results['heldout_accuracy']:.3f}**.

| kind | prompts | accuracy |
|---|---|---|
{kinds}

Fresh prompts from training frames and nouns: {results['train_prompts_accuracy']:.3f} ({results['train_prompts_n']} prompts).

Novel-word frames (`split="novel"`, {results['novel_n']} prompts), a harder transfer that the
held-out figure above does not include: {results['novel_accuracy']:.3f}.

Study prompts ("I climbed up the pear tree and picked a pear. I climbed up the X tree and picked"):
{results['study_top1_correct']} of {len(results['study_top1'])} have the expected article as the top-1 next token.

| noun | expected | top-1 | P(' an') | P(' a') |
|---|---|---|---|---|
{study}

## Retraining

    python -m helpers.toy.train --out {out_name} --steps {cfg.steps} --seed {cfg.seed} --docs {cfg.docs} --threads {cfg.threads} --layers {cfg.n_layer} --width {cfg.n_embd} --heads {cfg.n_head} --data-seed {cfg.data_seed}

{history.get('reproducibility', '')}
"""


def write_folder(model, tokenizer, cfg: TrainConfig, history: dict, out: Path, evaluate_with=None) -> dict:
    """Save the HF folder, evaluate it through ``load_model``, add card and numbers, then
    rename it into place (the previous folder is removed only after the rename)."""
    import torch

    from helpers.core.models import load_model

    out = Path(out).resolve()
    with staged_folder(out) as staging:
        model.config.activation_function = SAVED_ACTIVATION
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        history["n_params"] = sum(p.numel() for p in model.parameters())
        history["torch_version"] = torch.__version__
        results = evaluate(load_model(str(staging)))
        summary = {"config": asdict(cfg), "corpus": history["corpus"], "final_loss": history["final_loss"],
                   "train_seconds": history["train_seconds"], "n_params": history["n_params"], **results}
        (staging / "eval.json").write_text(json.dumps(summary, indent=1))
        (staging / "README.md").write_text(model_card(cfg, history, results, display_path(out)))
    return summary


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


REPRODUCIBILITY = (
    "Same seed, thread count, torch version and CPU: bitwise identical weights. The shipped "
    "model.safetensors was rebuilt by running this command a second time and comparing the files "
    "byte for byte; the tests also train a short run twice and compare every tensor. On another "
    "CPU or torch version, float32 rounding can differ and accumulate over training, so the weights "
    "will not be identical: the tolerance for such a rebuild is the tests' (held-out article "
    "accuracy of at least 0.95 and every study prompt right), not the exact numbers above."
)


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model folder to write (replaced atomically)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--docs", type=int, default=defaults.docs, help="training documents")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="CPU threads (part of what fixes the weights)")
    parser.add_argument("--layers", type=int, default=defaults.n_layer)
    parser.add_argument("--width", type=int, default=defaults.n_embd, help="d_model (d_mlp is four times it)")
    parser.add_argument("--heads", type=int, default=defaults.n_head)
    parser.add_argument("--data-seed", type=int, default=defaults.data_seed, help="seed of the corpus (and so of the tokenizer)")
    args = parser.parse_args(argv)
    if min(args.steps, args.docs, args.layers, args.width, args.heads) < 1:
        parser.error("--steps, --docs, --layers, --width and --heads must be positive")
    if args.width % args.heads:
        parser.error(f"--width {args.width} is not a multiple of --heads {args.heads}; each head needs width/heads dimensions")
    cfg = TrainConfig(seed=args.seed, data_seed=args.data_seed, steps=args.steps, docs=args.docs, threads=args.threads,
                      n_layer=args.layers, n_embd=args.width, n_head=args.heads,
                      tokenizer_docs=min(defaults.tokenizer_docs, args.docs),
                      warmup=min(defaults.warmup, max(1, args.steps // 10)))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        model, tokenizer, history = train(cfg)
        history["reproducibility"] = REPRODUCIBILITY
        summary = write_folder(model, tokenizer, cfg, history, args.out)
    finally:
        torch.set_num_threads(previous_threads)
    print(f"wrote {args.out}: held-out accuracy {summary['heldout_accuracy']:.3f}, "
          f"study top-1 {summary['study_top1_correct']}/{len(summary['study_top1'])}, final loss {summary['final_loss']:.4f}")


if __name__ == "__main__":
    main()
