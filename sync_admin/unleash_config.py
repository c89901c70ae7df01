"""Which Unleash a database follows: the `[environments.NAME.unleash]` table of sync-admin.toml.

    [environments.production]
    service = "billing_production"

    [environments.production.unleash]
    url = "https://unleash.example.com/api"     # the Unleash API, as the application's SDK has it
    environment = "production"                  # the Unleash environment this database follows
    token_env = "UNLEASH_CLIENT_TOKEN"          # a client (backend) token for that environment
    admin_token_env = "UNLEASH_ADMIN_TOKEN"     # optional: who changed the flag (event log), resolve --keep-local

Tokens live in environment variables, never in the file: the file is read by many, copied and committed. A key
named like a token (`token`, `admin_token`) is refused without showing its value. The flag followed is the
database's flag, account_data_persistence, by the same name in Unleash: its groupId is what both hash.
Everything wrong is one line (BadInput, exit 2) naming the file and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync_admin.environments import Environment, load
from sync_admin.errors import BadInput

KEYS = ("url", "environment", "token_env", "admin_token_env")
REQUIRED = ("url", "environment", "token_env")
# Unleash's own rule for environment names (letters, digits, - _ .); also keeps them safe in a URL path.
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A client token names its project and environment before the secret: `default:production.<secret>`.
_TOKEN_ENVIRONMENT = re.compile(r"^[^:\s]+:([^.\s]+)\.")


@dataclass(frozen=True)
class UnleashConfig:
    """Where one database's flag comes from. The tokens are read from their variables when a command needs them."""

    name: str  # the sync-admin environment (the database)
    key: str  # `sync-admin.toml: environments.production.unleash`, for messages
    api: str  # the Unleash API base, without a trailing / (https://unleash.example.com/api)
    environment: str  # the Unleash environment
    token_env: str
    admin_token_env: str | None

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the API: the only part of the URL messages show (a path may carry anything)."""
        parts = urlsplit(self.api)
        return f"{parts.scheme}://{parts.netloc}"

    def token(self) -> str:
        """The client token; BadInput when its variable is unset, or names another environment."""
        token = _variable(self.key, "token_env", self.token_env)
        named = _TOKEN_ENVIRONMENT.match(token)
        if named and named[1] not in ("*", self.environment):
            raise BadInput(
                f"{self.key}.token_env: ${self.token_env} is a token for the Unleash environment {named[1]!r}, not"
                f" {self.environment!r}: this database would follow another environment's flag; nothing changed"
            )
        return token

    def admin_token(self) -> str | None:
        """The admin token, or None when none is configured (then who changed the flag is not known)."""
        if self.admin_token_env is None:
            return None
        return _variable(self.key, "admin_token_env", self.admin_token_env)

    def secrets(self) -> tuple[str, ...]:
        """The tokens that are set, to be scrubbed from anything shown (defence in depth: no message quotes one)."""
        names = [self.token_env, self.admin_token_env]
        return tuple(value for name in names if name and (value := os.environ.get(name, "").strip()))


def _variable(key: str, option: str, name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise BadInput(f"{key}.{option}: the variable {name} is not set; export the Unleash token in it")
    return value


def for_environment(name: str | None) -> UnleashConfig:
    """The Unleash configuration of the --env environment; BadInput (exit 2) when there is none or it is wrong."""
    config = load()
    if name is None:
        with_unleash = [environment.name for environment in config.environments if "unleash" in environment.sections]
        known = f" (configured for: {', '.join(with_unleash)})" if with_unleash else ""
        raise BadInput(f"say which database follows Unleash: sync-admin --env NAME unleash ...{known}")
    environment = config.get(name)
    if "unleash" not in environment.sections:
        where = environment.file or "the configuration"
        raise BadInput(
            f"{where}: environment {name!r} has no [environments.{name}.unleash] table: it does not follow Unleash"
            " (docs/unleash.md)"
        )
    return parse(environment, environment.sections["unleash"])


def parse(environment: Environment, table: Any) -> UnleashConfig:
    key = f"{environment.file}: environments.{environment.name}.unleash"
    if not isinstance(table, dict):
        raise BadInput(f"{key}: must be a table ([environments.{environment.name}.unleash])")
    for name in table:
        if name not in KEYS:
            hint = ""
            if "token" in name.lower():
                # Its value is never echoed: it may be the very secret that must not be in a file.
                hint = "; tokens are never read from a file: put it in a variable and name that in token_env"
            raise BadInput(f"{key}.{name}: unknown key (known: {', '.join(KEYS)}){hint}")
    missing = [name for name in REQUIRED if name not in table]
    if missing:
        raise BadInput(f"{key}: {missing[0]} is missing (required: {', '.join(REQUIRED)})")
    values: dict[str, str] = {}
    for name in KEYS:
        if name not in table:
            continue
        value = table[name]
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"{key}.{name}: must be a non-empty string")
        values[name] = value.strip()
    if not _ENVIRONMENT.fullmatch(values["environment"]):
        raise BadInput(f"{key}.environment: {values['environment']!r} is not an Unleash environment name")
    for name in ("token_env", "admin_token_env"):
        if name in values and not _VARIABLE.fullmatch(values[name]):
            raise BadInput(f"{key}.{name}: the name of an environment variable (letters, digits, _), not a token")
    return UnleashConfig(
        name=environment.name,
        key=key,
        api=_api(f"{key}.url", values["url"]),
        environment=values["environment"],
        token_env=values["token_env"],
        admin_token_env=values.get("admin_token_env"),
    )


def _api(key: str, url: str) -> str:
    """The Unleash API base: http(s), a host, no credentials, query or fragment; `/api` appended when it is not
    already the path's end (both forms are in Unleash's documentation)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInput(f"{key}: not a URL (expected https://unleash.example.com/api)") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{key}: an http:// or https:// URL with a host (https://unleash.example.com/api)")
    if parts.username is not None or parts.password is not None:
        # Not echoed: it carries credentials.
        raise BadInput(f"{key}: the URL carries credentials; tokens go in the variables of token_env")
    if parts.query or parts.fragment:
        raise BadInput(f"{key}: no query or fragment (https://unleash.example.com/api)")
    path = parts.path.rstrip("/")
    if not path.endswith("/api"):
        path += "/api"
    return f"{parts.scheme}://{parts.netloc}{path}"
