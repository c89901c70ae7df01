"""Benchmarks of billing-sync. `python -m bench` runs the suite of issue 7 (see bench/suite)."""
