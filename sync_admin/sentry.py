"""Sentry for `sync-admin watch`: each skip the watch prints is also a Sentry event (SENTRY_DSN set).

The fingerprint is the reason code alone, so Sentry groups every skip of one kind into one issue
(`not_an_account`, `account_contended`, ...) whatever the customer or the value: the issue's event
count is the skip count, and a new reason code is a new issue, which is what should page someone.
Only what the operator needs goes out: reason, customer id, operation, transaction id, the value as
recorded (at most 200 characters), database user and application. No default integrations: the SDK
hooks nothing else of the process (logging, excepthook, threads).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.utils import BadDsn

from sync_admin import __version__
from sync_admin.errors import BadInput
from sync_admin.events import REASONS, SkipEvent

DSN_ENV = "SENTRY_DSN"
FLUSH_SECONDS = 5.0


class SentryReporter:
    """Sends skips to the Sentry project of a DSN; close() delivers what is still queued."""

    def __init__(self, dsn: str) -> None:
        try:
            sentry_sdk.init(
                dsn=dsn,
                default_integrations=False,
                auto_enabling_integrations=False,
                send_default_pii=False,
                release=f"sync-admin@{__version__}",
            )
        except BadDsn as exc:
            raise BadInput(f"{DSN_ENV} is not a Sentry DSN ({exc}); unset it or fix it") from None
        self.target = describe_dsn(dsn)

    def report(self, event: SkipEvent) -> None:
        sentry_sdk.capture_event(skip_event(event))

    def report_overflow(self, transaction_id: int, counts: Counter[str]) -> None:
        """One event for the skips of a statement past the per-statement limit (a bulk statement)."""
        for reason, count in counts.items():
            sentry_sdk.capture_event(
                {
                    "message": f"billing sync: {count} more skips ({reason}) in transaction {transaction_id}",
                    "level": "warning",
                    "logger": "sync-admin.watch",
                    "fingerprint": [reason],
                    "tags": {"reason": reason, "bulk": "true"},
                    "extra": {"transaction_id": transaction_id, "skips_not_sent_individually": count},
                }
            )

    def close(self) -> None:
        client = sentry_sdk.get_client()
        client.flush(timeout=FLUSH_SECONDS)
        client.close(timeout=FLUSH_SECONDS)


def skip_event(event: SkipEvent) -> dict[str, Any]:
    """The Sentry event of one skip: grouped by its reason code."""
    return {
        "message": f"billing sync skipped a customer write: {event.reason}",
        "level": "warning",
        "logger": "sync-admin.watch",
        "fingerprint": [event.reason],
        "timestamp": event.occurred_at.isoformat(),
        "tags": {"reason": event.reason, "operation": event.operation},
        "extra": {
            "event_id": event.id,
            "customer_id": event.customer_id,
            "transaction_id": event.transaction_id,
            "value": event.value,
            "value_length": event.value_length,
            "database_user": event.database_user,
            "application_name": event.application_name,
            "meaning": REASONS.get(event.reason, "unknown reason code"),
        },
    }


def from_environment() -> SentryReporter | None:
    dsn = os.environ.get(DSN_ENV, "").strip()
    return SentryReporter(dsn) if dsn else None


def describe_dsn(dsn: str) -> str:
    """Where events go, without the DSN's keys: `127.0.0.1:9000 project 1`."""
    parts = urlsplit(dsn)
    return f"{parts.hostname}{f':{parts.port}' if parts.port else ''} project {parts.path.strip('/')}"
