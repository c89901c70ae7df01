"""PostgreSQL's isolationtester runs the specs of tests/isolation against the test database: every
interleaving of two customer transactions that commits without the sync must commit with it, wait only where
the application itself waits, and end, after the repair, in the same derived state (issue 11; field notes 10).

The expected outputs are tests/isolation/expected/<spec>.out. isolationtester ships with Debian's
postgresql-15 (CI installs it); ISOLATIONTESTER points at another build. A missing one fails the test: the
specs are part of the proof that the sync adds no deadlock, so they must never be skipped silently.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

SPECS_DIR = Path(__file__).parent / "isolation"
SPECS = sorted(SPECS_DIR.glob("*.spec"))
DEFAULT_ISOLATIONTESTER = Path("/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/isolationtester")
# A step that waits longer than this is reported by isolationtester itself (a hang guard, not a speed check).
STEP_TIMEOUT_SECONDS = "60"


def isolationtester() -> Path:
    configured = os.environ.get("ISOLATIONTESTER")
    candidates = [Path(configured)] if configured else [DEFAULT_ISOLATIONTESTER]
    if not configured:
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/lib/pgxs/src/test/isolation/isolationtester"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"PostgreSQL's isolationtester was not found at {candidates[0]}: install postgresql-15 (Debian/Ubuntu:"
        " apt-get install postgresql-15) or set ISOLATIONTESTER to the path of an isolationtester binary",
        pytrace=False,
    )


def normalize(output: str) -> str:
    """Trailing white space aside, the output is compared as it is; error lines keep only the message."""
    lines = [line.rstrip() for line in output.splitlines()]
    return "\n".join(re.sub(r"^(ERROR|WARNING):\s+", r"\1:  ", line) for line in lines).strip() + "\n"


def test_there_are_specs_with_expected_outputs():
    assert SPECS, f"no isolation specs in {SPECS_DIR}"
    for spec in SPECS:
        assert (SPECS_DIR / "expected" / f"{spec.stem}.out").is_file(), spec


@pytest.mark.parametrize("spec", SPECS, ids=[spec.stem for spec in SPECS])
def test_every_interleaving_of_the_spec_gives_the_expected_output(db_url, spec):
    tester = isolationtester()
    with spec.open() as stdin:
        result = subprocess.run(
            [str(tester), db_url],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PGISOLATIONTIMEOUT": STEP_TIMEOUT_SECONDS},
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    expected = (SPECS_DIR / "expected" / f"{spec.stem}.out").read_text()
    assert normalize(result.stdout) == normalize(expected)
    assert "ERROR" not in result.stdout  # no interleaving fails a customer write
