"""Why a value was refused, as a machine-readable code with its parameters.

Every reason the registry gives (record validators, the ledger import, the admin API's own
checks) carries a `code` (pydantic's error `type`) and `params` (pydantic's `ctx`); the console
shows the locale text `errors.<code>` with the params filled in, Simplified Chinese first. The
English `message` stays the API's default `msg` for API clients and logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError


def reason(code: str, message: str, **params: Any) -> PydanticCustomError:
    """A refusal with a code: raise it in a validator (pydantic keeps `code` as the error's
    `type` and `params` as its `ctx`), or anywhere a ValueError is expected. `message` is the
    English text, with `{name}` placeholders filled from `params`."""
    return PydanticCustomError(code, message, params)


def json_safe(ctx: Mapping[str, Any] | None) -> dict[str, Any]:
    """pydantic's `ctx` with what JSON cannot carry (the exception of a `value_error`, a
    Decimal bound, a pattern) turned into text, so clients can fill their own templates."""
    out: dict[str, Any] = {}
    for key, value in (ctx or {}).items():
        out[key] = value if isinstance(value, str | int | float | bool) or value is None \
            else str(value)
    return out


def message_of(error: Mapping[str, Any]) -> str:
    """pydantic's English message without the "Value error, " it puts before a ValueError."""
    return str(error["msg"]).removeprefix("Value error, ")


def error_details(exc: ValidationError, *loc: str | int) -> list[dict[str, Any]]:
    """A ValidationError as FastAPI's 422 detail (`loc`, `msg`, `type`, `ctx`), each `loc`
    behind the given prefix (e.g. "body")."""
    return [{"loc": [*loc, *e["loc"]], "msg": message_of(e), "type": e["type"],
             "ctx": json_safe(e.get("ctx"))} for e in exc.errors(include_url=False)]
