"""The sweep page's cost per bundled model, and what the caches shared with the other pages save.

For each model of the bundled family, three runs of ``helpers.methods.sweep.sweep`` on that
model alone (16 pairs), each with its own empty cache folders:

* baseline, cold: nothing on disk (the weights are processed, the neuron is chosen by layer
  and neuron patching, every measurement is made);
* candidate, after the pages: the processed weights and the neuron choice already on disk, as
  the other pages of a book build leave them (the sweep measures, nothing else);
* noted: the page run again, every row read from the sweep's own cache.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import Row
from helpers.core.models import BUNDLED_MODELS, load_model
from helpers.core.prompts import make_contrast
from helpers.methods.choice import choose_neuron
from helpers.methods.sweep import sweep

N_PAIRS = 16


def run_sweep(name: str, folder: Path) -> float:
    """Seconds of one sweep of ``name`` with every cache in ``folder``."""
    start = time.perf_counter()
    table = sweep([name], N_PAIRS, cache=folder / "sweep", choice_cache=folder / "choices",
                  load=lambda n, **kw: load_model(n, cache=folder / "processed", **kw)).table
    if table.status[0] != "measured":
        raise RuntimeError(f"{name} was not measured: {table.note[0]}")
    return time.perf_counter() - start


def run() -> list[Row]:
    rows = []
    for name in BUNDLED_MODELS:
        with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as warm:
            cold_s = run_sweep(name, Path(cold))
            # what the other pages leave on disk: the processed weights and the neuron choice
            model = load_model(name, cache=Path(warm) / "processed")
            choose_neuron(model, make_contrast(model), cache=Path(warm) / "choices")
            pages_s = run_sweep(name, Path(warm))
            again_s = run_sweep(name, Path(warm))
        shape = f"{model.cfg.n_layers} x {model.cfg.d_model}"
        rows.append(Row(f"sweep of {name} ({shape}, {N_PAIRS} pairs)", "cold: nothing cached", cold_s, pages_s,
                        f"after the pages; the page again: {again_s:.2f} s"))
    return rows
