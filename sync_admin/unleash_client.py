"""Reading Unleash over HTTP: every answer is untrusted.

Standard library only (http.client): the bridge adds no dependency to the default install. Each request has a
hard deadline for the whole exchange (connect, headers, body), enforced by a watchdog that shuts the socket, so a
server that trickles bytes cannot hold the bridge; bodies are read up to a size limit; redirects are refused (the
Authorization header must not follow one to another host); JSON is parsed only from a 2xx answer that says it is
JSON. The tokens travel in headers only, never in a URL, and no message quotes a header or a body.

Every failure is UnleashUnreadable (exit 4): the caller changes nothing and tries again later.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from sync_admin import __version__
from sync_admin.errors import SyncAdminError
from sync_admin.terminal import printable

DEFAULT_TIMEOUT = 5.0
MAX_BODY_BYTES = 4 * 1024 * 1024
# JSON nested deeper than this is not an Unleash answer (and would exhaust the parser's recursion).
MAX_DEPTH = 32
APP_NAME = "sync-admin-unleash-bridge"


class UnleashUnreadable(SyncAdminError):
    """Unleash could not be read: unreachable, slow, refused the token, or answered something that is not what
    its API answers. Nothing was changed."""

    exit_code = 4


@dataclass(frozen=True)
class Answer:
    status: int
    etag: str | None
    body: Any  # the parsed JSON (None for 304 and for answers without a body)


class Client:
    """One Unleash API (its base URL ends with /api) and one token."""

    def __init__(
        self, api: str, token: str, *, timeout: float = DEFAULT_TIMEOUT, secrets: tuple[str, ...] = ()
    ) -> None:
        self.api = api.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.secrets = tuple(secret for secret in (token, *secrets) if secret)
        parts = urlsplit(self.api)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def get(self, path: str, query: dict[str, str] | None = None, *, etag: str | None = None) -> Answer:
        headers = {"If-None-Match": etag} if etag else {}
        return self.request("GET", path, query, headers)

    def post(self, path: str, payload: Any = None) -> Answer:
        """A change; its answer's body is not needed (and not parsed)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        return self.request("POST", path, None, {"Content-Type": "application/json"}, body, parse=False)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | None = None,
        *,
        parse: bool = True,
    ) -> Answer:
        parts = urlsplit(self.api)
        target = parts.path + path + (f"?{urlencode(query)}" if query else "")
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if parts.scheme == "https":
            kwargs["context"] = ssl.create_default_context()
        connection = connection_class(parts.hostname or "", parts.port, **kwargs)
        expired = threading.Event()
        # The socket itself, kept: the connection forgets it once a response that closes it has begun (HTTP/1.0),
        # while the response goes on reading from it.
        opened: list[socket.socket] = []

        def give_up() -> None:
            expired.set()
            for sock in opened:
                with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(self.timeout, give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if connection.sock is not None:
                opened.append(connection.sock)
            if expired.is_set():  # the deadline passed while connecting: the watchdog found no socket yet
                raise TimeoutError
            connection.request(
                method,
                target,
                body=body,
                headers={
                    "Authorization": self.token,
                    "Accept": "application/json",
                    "User-Agent": f"sync-admin/{__version__}",
                    "UNLEASH-APPNAME": APP_NAME,
                    **headers,
                },
            )
            response = connection.getresponse()
            raw = _read_limited(response)
        except TooLarge:
            raise UnleashUnreadable(
                f"Unleash at {self.origin} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MiB: not read"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError | socket.timeout):
                raise UnleashUnreadable(f"Unleash at {self.origin} did not answer within {self.timeout:g}s") from None
            raise UnleashUnreadable(f"cannot reach Unleash at {self.origin}: {self._describe(exc)}") from None
        finally:
            watchdog.cancel()
            connection.close()
        if expired.is_set():
            raise UnleashUnreadable(f"Unleash at {self.origin} did not answer within {self.timeout:g}s")
        return self._answer(response, raw, parse)

    def _answer(self, response: http.client.HTTPResponse, raw: bytes, parse: bool) -> Answer:
        status = response.status
        etag = response.getheader("ETag")
        if etag is not None and (len(etag) > 200 or not etag.isprintable()):
            etag = None  # not echoed back to the server: an ETag is a short printable token
        if status == 304:
            return Answer(status, etag, None)
        if status in (401, 403):
            raise UnleashUnreadable(
                f"Unleash at {self.origin} refused the token (HTTP {status}): check that the variable holds a valid"
                " token for this environment"
            )
        if 300 <= status < 400:
            raise UnleashUnreadable(
                f"Unleash at {self.origin} answered a redirect (HTTP {status}); set the url to the address it"
                " redirects to (redirects are not followed: the token would go with them)"
            )
        if not 200 <= status < 300:
            raise UnleashUnreadable(f"Unleash at {self.origin} answered HTTP {status}")
        if not raw or not parse:
            return Answer(status, etag, None)
        content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            shown = printable(content_type[:60]) or "none"
            raise UnleashUnreadable(
                f"Unleash at {self.origin} answered something that is not JSON (content type {shown}): is the url"
                " the Unleash API?"
            )
        return Answer(status, etag, parse_json(raw, self.origin))

    def _describe(self, exc: BaseException) -> str:
        text = printable(str(exc) or type(exc).__name__)[:200]
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _read_limited(response: http.client.HTTPResponse) -> bytes:
    """The body, at most MAX_BODY_BYTES (read1: returns as soon as some bytes arrive, so the watchdog decides)."""
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class TooLarge(Exception):
    """The body (declared or read) exceeds MAX_BODY_BYTES."""


def parse_json(raw: bytes, origin: str) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise UnleashUnreadable(f"Unleash at {origin} answered something that is not valid JSON") from None
    if _depth(document) > MAX_DEPTH:
        raise UnleashUnreadable(f"Unleash at {origin} answered JSON nested deeper than {MAX_DEPTH} levels")
    return document


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (the document is untrusted: no recursion on it)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def path(*segments: str) -> str:
    """/a/b/c with each segment percent-encoded (names come from configuration and from Unleash)."""
    return "".join("/" + quote(segment, safe="") for segment in segments)
