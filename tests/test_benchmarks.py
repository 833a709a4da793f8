"""The benchmark runner finds its cases (the cases themselves are run by `make bench`)."""
import subprocess
import sys

from helpers.book.build import ROOT


def test_unknown_case_lists_the_cases():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "nosuchcase"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: no benchmark case nosuchcase; cases are ")
    for case in ["congruence", "dataset_pass", "layer_patching", "load", "neuron_patching"]:
        assert case in message
