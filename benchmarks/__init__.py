"""Benchmarks of cliniko-reviews against its peers and against the limits the Cliniko API sets.

`make bench` (= `python -m benchmarks`) runs every `benchmarks/bench_*.py` module's `main()`; each prints, for
every figure, our number, the baseline's number from the same run, their ratio, the goal and PASS or MISS.
Not tests: they take minutes and measure a shared machine.
"""
