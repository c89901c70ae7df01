"""The benchmark suite of issue 7: what the sync triggers cost, as ratios measured side by side.

Every figure is a ratio of two variants run in interleaved rounds (A B, then B A, ...) on fresh databases
of one server, reported as the median and min-max over the rounds; see docs/benchmarks.md.
"""
