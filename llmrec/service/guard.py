"""RequestGuard: the ASGI middleware at the edge of the service.

It gives every request an id (the client's `X-Request-ID` when it is a short plain token, else a new one), sent
back as the `X-Request-ID` response header; refuses request bodies over a size cap with 413 (by their
`Content-Length`, and by counting the bytes of a streamed body before the application sees any of it); and turns
any exception that escapes the application into `500 {"error": "internal error", "request_id": ...}`, logging
the traceback under the request id on the server and sending none to the client.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestGuard:
    """Wrap an ASGI application with request ids, a request-body cap and a last-resort error response."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        send = _with_request_id(send, request_id)
        too_large = JSONResponse({"error": f"request body over {self.max_body_bytes} bytes"}, status_code=413)
        if _content_length(scope) > self.max_body_bytes:
            await too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
        await self._serve(scope, _replay(bytes(body), receive), send, request_id)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            logger.exception("internal error serving %s %s (request %s)", scope.get("method"), scope.get("path"),
                             request_id)
            if not started:
                body = {"error": "internal error", "request_id": request_id}
                await JSONResponse(body, status_code=500)(scope, receive, send)


def _request_id(scope: Scope) -> str:
    """The client's (or a proxy's) `X-Request-ID` when it is a plain token of at most 64 characters, else a new
    random one, so one id follows a request through every log that saw it."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


def _with_request_id(send: Send, request_id: str) -> Send:
    """A `send` that adds the `X-Request-ID` header to the response."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
        await send(message)

    return send_with_id


def _content_length(scope: Scope) -> int:
    """The declared body size; 0 when absent or unreadable (the streamed-body count still applies)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body once, then passes on to the server (for disconnects)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
