"""Run benchmark cases (``python -m benchmarks [name ...]``, all by default) and print one table.

Each module ``benchmarks/bench_*.py`` defines ``run() -> list[Row]``; its name without the
``bench_`` prefix selects it.
"""
import importlib
import os
import pkgutil
import sys

# the table is the output: no progress bars from transformer_lens, transformers or the scan
os.environ["TQDM_DISABLE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import torch

import benchmarks
from benchmarks.common import print_table


def case_names() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))


def main(selected: list[str]) -> None:
    names = case_names()
    unknown = sorted(set(selected) - set(names))
    if unknown:
        sys.exit(f"error: no benchmark case {', '.join(unknown)}; cases are {', '.join(names)}")
    torch.set_grad_enabled(False)
    rows = []
    for name in selected or names:
        print(f"running bench_{name} ...", flush=True)
        rows += importlib.import_module(f"benchmarks.bench_{name}").run()
    print()
    print_table(rows)


main(sys.argv[1:])
