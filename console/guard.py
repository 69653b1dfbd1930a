"""Input guard of the console (and Twilio's webhooks on it): bodies are capped (413) and input
that would only fail deep inside (a NUL byte, which PostgreSQL text cannot hold; JSON nested so
deep that parsing it overflows the stack) is refused up front with 422 and the reason.

A pure ASGI middleware, so live streams (SSE) pass through untouched."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

IMPORT_PATH = "/api/v1/import"
MAX_JSON_DEPTH = 32  # no console body nests deeper than a few levels


class BodyRefused(Exception):
    def __init__(self, status: int, loc: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.loc, self.msg = status, loc, msg


def _depth_and_nul(value: Any) -> tuple[int, bool]:
    """(nesting depth, whether any key or string holds a NUL) of a parsed JSON value; walked
    with an explicit stack, so a deep value cannot overflow Python's."""
    deepest, nul = 0, False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, str):
            nul = nul or "\x00" in item
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for pair in item.items() for x in pair)
        elif isinstance(item, list):
            stack.extend((x, depth + 1) for x in item)
    return deepest, nul


def check_body(content_type: str, body: bytes) -> None:
    """Raise `BodyRefused` for a JSON body nested too deeply or a NUL in any text field."""
    if not body:
        return
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except RecursionError:
            raise BodyRefused(422, "body", f"JSON nested deeper than {MAX_JSON_DEPTH}"
                                           " levels") from None
        except ValueError:
            return  # not JSON: FastAPI answers 422 with where it broke
        depth, nul = _depth_and_nul(parsed)
        if depth > MAX_JSON_DEPTH:
            raise BodyRefused(422, "body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if nul:
            raise BodyRefused(422, "body", "text must not contain a NUL byte (\\u0000)")
    elif content_type.startswith("application/x-www-form-urlencoded") and \
            "\x00" in unquote_plus(body.decode("latin-1")):
        raise BodyRefused(422, "body", "form fields must not contain a NUL byte (%00)")


class InputGuard:
    """Cap request bodies (`max_body`, `max_import_body` for the ledger import) and refuse NUL
    bytes in path, query and body, and over-deep JSON."""

    def __init__(self, app: ASGIApp, max_body: int, max_import_body: int) -> None:
        self.app, self.max_body, self.max_import_body = app, max_body, max_import_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._checked(scope, receive)
        except BodyRefused as refused:
            await _refuse(send, refused)
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when the client goes

        await self.app(scope, replay, send)

    async def _checked(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body (None for requests without one), after every check."""
        if "\x00" in scope["path"] or "\x00" in unquote_plus(
                scope.get("query_string", b"").decode("latin-1")):
            raise BodyRefused(422, "query", "parameters must not contain a NUL byte (%00)")
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return None
        limit = self.max_import_body if scope["path"] == IMPORT_PATH else self.max_body
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise BodyRefused(413, "body", f"body larger than {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked uploads carry no Content-Length
                raise BodyRefused(413, "body", f"body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        check_body(headers.get("content-type", ""), body)
        return body


async def _refuse(send: Send, refused: BodyRefused) -> None:
    payload = json.dumps({"detail": [{"loc": [refused.loc], "msg": refused.msg,
                                      "type": "value_error"}]}).encode()
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
