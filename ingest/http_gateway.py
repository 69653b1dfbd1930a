"""HTTP gateway for vendor clouds: `POST /ingest/v1/batch`, plus `/metrics` and `/healthz`.

Each item goes through the same validation, de-duplication and dead-lettering as an MQTT
message (source "http"); the answer lists, per item, whether it was accepted and why not."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from foundation import logs
from foundation.deadletter import Rejection
from foundation.faults import is_transient
from foundation.mqtt import event_topic
from ingest import metrics
from ingest.gateway_auth import (
    GatewayScope,
    check_api_key,
    check_signature,
    parse_keys,
    parse_scopes,
    scope_refusal,
)
from ingest.intake import Ingest, Outcome
from ingest.validate import MAX_DEPTH, decode

log = logs.get(__name__)

SOURCE = "http"


class _TooLarge(Exception):
    pass


def _error(status: int, reason: str, detail: str) -> JSONResponse:
    metrics.HTTP_REQUESTS.labels(str(status)).inc()
    return JSONResponse({"reason": reason, "detail": detail}, status_code=status)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refusing to buffer more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(ingest: Ingest) -> FastAPI:
    """The ingest process's HTTP app; `ingest` is shared with the MQTT consumer."""
    settings = ingest.settings
    keys = parse_keys(settings.ingest_gateway_keys)
    scopes = parse_scopes(settings.ingest_gateway_scopes)
    app = FastAPI(title="eldercare ingest", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/ingest/v1/batch", response_model=None)
    async def batch(request: Request) -> JSONResponse:
        """Authenticate the gateway, bound the body, then validate and produce every item."""
        gateway = request.headers.get("x-eldercare-gateway", "")
        secret = keys.get(gateway)
        if secret is None:
            return _error(401, "unknown_gateway", "X-Eldercare-Gateway names no known gateway")
        try:
            body = await _body(request, settings.ingest_http_max_body)
        except _TooLarge:
            return _error(413, "body_too_large",
                          f"the body exceeds {settings.ingest_http_max_body} bytes")
        if not check_api_key(secret, request.headers.get("authorization")):
            why = check_signature(
                secret, request.headers.get("x-eldercare-timestamp"),
                request.headers.get("x-eldercare-signature"), body, time.time(),
            )
            if why is not None:
                return _error(401, "unauthenticated", f"no valid API key or signature: {why}")
        items = _items(body, settings.ingest_http_max_items)
        if isinstance(items, Rejection):
            return _error(422, items.reason, items.detail)
        refused = await _out_of_scope(ingest, gateway, scopes.get(gateway), items)
        if refused:
            metrics.HTTP_REQUESTS.labels("403").inc()
            return JSONResponse({
                "reason": "out_of_scope", "detail": "nothing in this batch was accepted: every"
                " item must be within the gateway's communities and device prefixes",
                "results": refused}, status_code=403)
        try:
            outcomes = await asyncio.gather(*(_item(ingest, gateway, item) for item in items))
        except Exception as exc:  # only an outage gets here (see `_item`): the client retries
            log.error("ingest batch not stored", gateway=gateway, exc_info=exc)
            return _error(503, "unavailable", "events could not be stored now; retry later")
        results = [_result(i, o) for i, o in enumerate(outcomes)]
        metrics.HTTP_REQUESTS.labels("200").inc()
        return JSONResponse({
            "accepted": sum(o.status == "accepted" for o in outcomes),
            "duplicates": sum(o.status == "duplicate" for o in outcomes),
            "rejected": sum(o.status == "rejected" for o in outcomes),
            "results": results,
        })

    return app


def _items(body: bytes, max_items: int) -> list[Any] | Rejection:
    # The device payloads sit 3 levels down: {"items": [{"payload": ...}]}.
    parsed = decode(body, MAX_DEPTH + 3)
    if isinstance(parsed, Rejection):
        return parsed if parsed.reason != "malformed_json" else Rejection(
            "malformed_json", f"the body is not JSON: {parsed.detail}")
    if not isinstance(parsed, dict) or not isinstance(parsed.get("items"), list):
        return Rejection("schema_violation", 'the body must be {"items": [...]}')
    items: list[Any] = parsed["items"]
    if len(items) > max_items:
        return Rejection("too_many_items", f"{len(items)} items > limit {max_items}")
    return items


async def _out_of_scope(
    ingest: Ingest, gateway: str, scope: GatewayScope | None, items: list[Any],
) -> list[dict[str, Any]]:
    """Dead-letter every item outside the gateway's scope; their results (empty: all in scope).
    The batch is then refused as a whole: a gateway posting outside its scope is misconfigured
    or its key has leaked, and half a batch would be harder for it to resend correctly."""
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # malformed items are dead-lettered with their own reason
        community_id, device_id = item.get("community_id"), item.get("device_id")
        if not (isinstance(community_id, str) and isinstance(device_id, str)):
            continue
        why = scope_refusal(scope, community_id, device_id)
        if why is None:
            continue
        metrics.RECEIVED.labels(SOURCE).inc()
        raw = json.dumps(item, ensure_ascii=False).encode()
        detail = f"gateway {gateway!r}, device {device_id!r}: {why}"
        await ingest.reject(SOURCE, f"http/{gateway}", raw, Rejection("out_of_scope", detail),
                            datetime.now(UTC))
        refused.append({"index": index, "status": "rejected", "reason": "out_of_scope",
                        "detail": detail})
    return refused


async def _item(ingest: Ingest, gateway: str, item: Any) -> Outcome:
    """One item: {"community_id", "device_id", "payload"}; a string payload is taken as the
    device's raw bytes (so a vendor relaying bytes gets the same checks as MQTT)."""
    if not (isinstance(item, dict) and isinstance(item.get("community_id"), str)
            and isinstance(item.get("device_id"), str) and "payload" in item):
        raw = json.dumps(item, ensure_ascii=False).encode()
        metrics.RECEIVED.labels(SOURCE).inc()
        return await ingest.reject(SOURCE, f"http/{gateway}", raw, Rejection(
            "schema_violation", "an item is {community_id, device_id, payload}"), datetime.now(UTC))
    payload = item["payload"]
    raw = payload.encode() if isinstance(payload, str) else json.dumps(
        payload, ensure_ascii=False).encode()
    topic = event_topic(item["community_id"], item["device_id"])
    try:
        return await ingest.handle(topic, raw, SOURCE)
    except Exception as exc:
        if is_transient(exc):
            raise
        return await (await ingest.submit_failure(SOURCE, topic, raw, exc)).wait()


def _result(index: int, outcome: Outcome) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "status": outcome.status}
    if outcome.event_id:
        result["event_id"] = outcome.event_id
    if outcome.reason:
        result["reason"] = outcome.reason
        result["detail"] = outcome.detail
    return result
