"""`python -m bench`: the benchmark suite (ratios of the sync against no trigger, callbacks and by-hand SQL)."""

from bench.suite.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
