"""The defaults and limits of sync-admin's options, in a module that imports nothing: the CLI builds its options
from them at start-up, before (and without) loading a database driver (`sync-admin --help` in under 0.3 s)."""

# --- backfill ---
# Measured with bench/backfill_bench.py (1,000,000 customers from empty billing tables, PG 18, 2 cores):
# 2,000 customers per batch (~40 ms each) finished as fast as 5,000 to 20,000 (18.6 s against 18.1-19.1 s)
# while holding its row locks a half to a tenth as long; 1,000 lost ~15 % to per-batch overhead (21.7 s).
BACKFILL_BATCH_SIZE = 2_000
BACKFILL_MAX_BATCH_SIZE = 100_000
BACKFILL_SLEEP_SECONDS = 0.0
# A batch that runs longer than this halves the next one (live traffic or a slow disk).
BACKFILL_MAX_BATCH_SECONDS = 1.0
# The statement timeout of a batch, as a multiple of --max-batch-seconds: a runaway batch is stopped
# and retried smaller instead of holding its locks.
BACKFILL_STATEMENT_TIMEOUT_FACTOR = 10
# The final sweep retries customers held by live transactions (it never waits for one) for this long before
# it gives up with exit 1; they stay queued for `sync-admin heal`.
BACKFILL_SETTLE_SECONDS = 30.0

# --- verify ---
VERIFY_EXAMPLES = 5
VERIFY_MAX_EXAMPLES = 1_000

# --- rollout check ---
ROLLOUT_MIN_HOURS = 24.0
