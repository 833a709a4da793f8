"""Speed and memory benchmarks: each case prints ratios against a baseline run in the same process."""
