"""One environment's Unleash, read as the bridge needs it: the flag (client API, with its ETag), who changed it
last (the event log, admin token), and the one write a person may ask for (`resolve --keep-local` switches the
flag's environment off).

Reading: GET /api/client/features?namePrefix=<flag> with the client token and If-None-Match: a 304 keeps the
last answer (the follow service polls cheaply). The answer is untrusted (sync_admin/unleash_client.py) and mapped
by sync_admin/unleash_mapping.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sync_admin.errors import BadInput
from sync_admin.terminal import printable
from sync_admin.unleash_client import DEFAULT_TIMEOUT, Client, UnleashUnreadable, path
from sync_admin.unleash_config import UnleashConfig
from sync_admin.unleash_mapping import UnleashFlag, read_flag

FEATURES_PATH = "/client/features"
EVENTS_PATH = "/admin/search/events"
# Who and what, as shown in the audit log: Unleash's own fields, bounded and escaped (they are untrusted).
_MAX_SHOWN = 120


@dataclass(frozen=True)
class Reading:
    """The flag as Unleash serves it now; `flag` is None when the answer does not list it."""

    flag: UnleashFlag | None
    etag: str | None
    revision: int | None  # meta.revisionId when the server gives it: which state of Unleash this is
    unchanged: bool = False  # the server answered 304: the same as the previous reading
    archived: UnleashEvent | None = None  # when the flag is not served: the event that archived it, if known


@dataclass(frozen=True)
class UnleashEvent:
    """The newest change to the flag in Unleash (event log): what the audit row names."""

    id: int
    type: str
    created_by: str
    created_at: str

    def describe(self) -> str:
        return f"Unleash event {self.id} ({self.type}) by {self.created_by} at {self.created_at}"


class Source:
    def __init__(self, config: UnleashConfig, flag: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self.flag = flag
        secrets = config.secrets()
        self.client = Client(config.api, config.token(), timeout=timeout, secrets=secrets)
        admin_token = config.admin_token()
        self.admin = Client(config.api, admin_token, timeout=timeout, secrets=secrets) if admin_token else None
        self.last: Reading | None = None

    def read(self) -> Reading:
        """The flag now; UnleashUnreadable (nothing to apply) when Unleash cannot be read."""
        etag = self.last.etag if self.last is not None else None
        answer = self.client.get(FEATURES_PATH, {"namePrefix": self.flag}, etag=etag)
        if answer.status == 304:
            if self.last is None:
                raise UnleashUnreadable(f"Unleash at {self.client.origin} answered 304 to a first request")
            self.last = replace(self.last, unchanged=True)
            return self.last
        flag = read_flag(answer.body, self.flag, self.config.environment)
        # Asked once per new answer, not at every poll of an unchanged one.
        archived = self.archived_event() if flag is None else None
        self.last = Reading(flag, answer.etag, _revision(answer.body), archived=archived)
        return self.last

    def latest_event(self) -> tuple[UnleashEvent | None, str | None]:
        """(the newest event of the flag in this environment, or None; why it is not known, or None). Never
        raises: who changed it is worth recording, not worth failing a change for."""
        if self.admin is None:
            return None, None
        try:
            answer = self.admin.get(
                EVENTS_PATH,
                {"feature": f"IS:{self.flag}", "environment": f"IS:{self.config.environment}", "limit": "1"},
            )
            return _newest_event(answer.body), None
        except UnleashUnreadable as exc:
            return None, str(exc)

    def archived_event(self) -> UnleashEvent | None:
        """When the flag is not served: the newest event of the flag in any environment, if it archived or
        deleted it (admin token), to say so instead of guessing."""
        if self.admin is None:
            return None
        try:
            answer = self.admin.get(EVENTS_PATH, {"feature": f"IS:{self.flag}", "limit": "1"})
            event = _newest_event(answer.body)
        except UnleashUnreadable:
            return None
        if event is not None and event.type in ("feature-archived", "feature-deleted"):
            return event
        return None

    def switch_off(self, project: str) -> None:
        """Switch the flag's environment off in Unleash (as the admin token's user): `resolve --keep-local`."""
        if self.admin is None:
            raise BadInput(
                f"{self.config.key}: --keep-local switches the flag off in Unleash, which needs an admin token"
                f" (admin_token_env); or switch {self.flag} off in {self.config.environment} on the flag's page,"
                " which resolves the conflict too; nothing changed"
            )
        self.admin.post(
            path("admin", "projects", project, "features", self.flag, "environments", self.config.environment, "off")
        )


def _revision(document: Any) -> int | None:
    meta = document.get("meta") if isinstance(document, dict) else None
    revision = meta.get("revisionId") if isinstance(meta, dict) else None
    return revision if isinstance(revision, int) and not isinstance(revision, bool) else None


def _newest_event(document: Any) -> UnleashEvent | None:
    """The first event of an event search answer (newest first), read defensively."""
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise UnleashUnreadable("Unleash answered something that is not an event list: events must be a list")
    if not events:
        return None
    event = events[0]
    if not isinstance(event, dict) or not isinstance(event.get("id"), int) or isinstance(event.get("id"), bool):
        raise UnleashUnreadable("Unleash answered something that is not an event list: events[0].id must be a number")
    return UnleashEvent(
        id=event["id"],
        type=_shown(event.get("type")),
        created_by=_shown(event.get("createdBy")),
        created_at=_shown(event.get("createdAt")),
    )


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) and value else "unknown"
    return printable(text)[:_MAX_SHOWN]
