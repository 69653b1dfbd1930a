"""MkDocs hook: the HTTP API reference page, generated at build time from the apps' OpenAPI.

Nothing generated is committed, so the reference cannot drift from the code."""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files


def _apps() -> list[tuple[str, dict[str, Any]]]:
    from console.app import create_app as console_app
    from foundation.config import Settings

    return [("Console and admin API (`eldercare service console`)",
             console_app(Settings()).openapi())]


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref")
    if ref:
        name = str(ref).rsplit("/", 1)[-1]
        return f"`{name}`" + (" list" if "items" in schema else "")
    return f"`{schema.get('type', 'object')}`" if schema else ""


def render(apps: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown for every operation of every app: method, path, summary, parameters, body."""
    out = ["# HTTP API reference", "",
           "Generated from the apps' OpenAPI at documentation build time. Every `/api/v1` route",
           "needs a staff session cookie and, on writes, the `X-CSRF-Token` header",
           "(see [the duty console](../duty-console.md)).", ""]
    for title, spec in apps:
        out += [f"## {title}", ""]
        for path, ops in sorted(spec.get("paths", {}).items()):
            for method, op in ops.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                out += [f"### `{method.upper()} {path}`", ""]
                if op.get("summary"):
                    out += [op["summary"], ""]
                if op.get("description"):
                    out += [op["description"].strip(), ""]
                params = op.get("parameters", [])
                if params:
                    out += ["| parameter | in | required | type |", "| --- | --- | --- | --- |"]
                    for p in params:
                        out.append(f"| `{p['name']}` | {p['in']} | {p.get('required', False)} "
                                   f"| {_schema_name(p.get('schema', {}))} |")
                    out.append("")
                body = op.get("requestBody", {}).get("content", {})
                for ctype, media in body.items():
                    out += [f"Body ({ctype}): {_schema_name(media.get('schema', {}))}", ""]
    return "\n".join(out) + "\n"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference/api.md", content=render(_apps())))
    return files
