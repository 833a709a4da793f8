"""Run every benchmark case (``python -m benchmarks [name ...]``) and print one table.

Each module ``benchmarks/bench_*.py`` defines ``run() -> list[Row]``.
"""
import importlib
import pkgutil
import sys

import torch

from benchmarks.common import print_table


def main(selected: list[str]) -> None:
    torch.set_grad_enabled(False)
    rows = []
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("bench_")):
        if selected and module.removeprefix("bench_") not in selected:
            continue
        print(f"running {module} ...", flush=True)
        rows += importlib.import_module(f"benchmarks.{module}").run()
    print()
    print_table(rows)


main(sys.argv[1:])
