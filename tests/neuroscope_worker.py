"""The neuroscope command for torchrun, with one process dying after its first shard.

``torchrun ... tests/neuroscope_worker.py <rank to kill> <neuroscope arguments>``: the named
rank exits at once (no clean-up, as a lost machine would) once its first shard is written.
"""
import os
import sys

from helpers.scan.neuroscope import main

victim = sys.argv[1]


def die_after_first_shard(shard: int) -> None:
    if os.environ.get("RANK") == victim:
        os._exit(3)


main(sys.argv[2:], on_shard=die_after_first_shard)
