"""Bootstrap intervals: coverage measured on data with a known mean decides the fewest pairs
that get an interval; fewer pairs, or one pair, give an explicit "no interval"."""
import math

import pytest
import torch

from helpers.core.stats import MIN_PAIRS, interval, mean_interval


def coverage(n: int, trials: int = 600, seed: int = 1) -> float:
    """The share of ``trials`` standard-normal samples of ``n`` whose interval holds 0."""
    values = torch.randn(trials, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    summary = mean_interval(values, resamples=1000, min_pairs=2)
    return float(((summary[:, 1] <= 0) & (0 <= summary[:, 2])).double().mean())


def test_min_pairs_is_where_a_95_percent_interval_covers_about_0_9():
    """At 5 pairs a nominal 95% interval covers about 0.84 of the time; from MIN_PAIRS on
    about 0.91 or more (sampling error of 600 trials: about 0.012)."""
    assert coverage(5) < 0.88
    assert coverage(MIN_PAIRS) >= 0.885


def test_too_few_pairs_get_no_interval_not_a_zero_width_one():
    one = interval(torch.tensor([0.3]))
    assert one.mean == pytest.approx(0.3) and math.isnan(one.low) and math.isnan(one.high) and not one.has_bounds
    assert str(one) == f"0.300 (no interval: 1 pair, fewer than {MIN_PAIRS})"
    few = mean_interval(torch.arange(8.0).reshape(2, 4))
    assert few[:, 0].tolist() == [1.5, 5.5] and torch.isnan(few[:, 1:]).all()
    enough = interval(torch.linspace(0, 1, MIN_PAIRS))
    assert enough.has_bounds and enough.low < enough.mean < enough.high
    with pytest.raises(ValueError, match="no pairs to average"):
        mean_interval(torch.zeros(0))
