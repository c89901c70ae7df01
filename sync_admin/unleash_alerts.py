"""Sentry for the Unleash bridge (SENTRY_DSN set): what it could not apply, a conflict, Unleash unreadable.

One event per problem, not per poll: a problem is sent when it appears or its text changes, and again only after
it cleared. The fingerprint is the kind and the environment (`unleash`, `conflict`, `production`), so Sentry keeps
one issue per kind of trouble per database. Messages are the bridge's own lines, which quote no token; the tokens
are scrubbed from them all the same.
"""

from __future__ import annotations

from typing import Any

from sync_admin.sentry import SentryReporter, from_environment

LOGGER = "sync-admin.unleash"


class Alerts:
    def __init__(self, environment: str, flag: str, secrets: tuple[str, ...] = ()) -> None:
        self.environment = environment
        self.flag = flag
        self.secrets = secrets
        self.reporter: SentryReporter | None = from_environment()
        self.standing: dict[str, str] = {}  # kind -> the message sent for it, until it clears

    @property
    def target(self) -> str | None:
        return self.reporter.target if self.reporter is not None else None

    def problem(self, kind: str, message: str, *, level: str = "error") -> None:
        if self.standing.get(kind) == message:
            return
        self.standing[kind] = message
        if self.reporter is None:
            return
        import sentry_sdk

        sentry_sdk.capture_event(self.event(kind, message, level))

    def clear(self, kind: str) -> None:
        self.standing.pop(kind, None)

    def event(self, kind: str, message: str, level: str) -> dict[str, Any]:
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return {
            "message": f"unleash bridge ({self.environment}): {kind}: {message}",
            "level": level,
            "logger": LOGGER,
            "fingerprint": ["unleash", kind, self.environment],
            "tags": {"kind": kind, "environment": self.environment, "flag": self.flag},
        }

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()
