"""Every sentence a person reads comes from locales/<lang>.json, Simplified Chinese first."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("zh-Hans", "en")
DEFAULT_LANGUAGE = "zh-Hans"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The flat key -> template table of one language."""
    text = resources.files("foundation.locales").joinpath(f"{lang}.json").read_text("utf-8")
    table: dict[str, str] = json.loads(text)
    return table


def t(key: str, lang: str = DEFAULT_LANGUAGE, **values: Any) -> str:
    """Translate a key, falling back to Chinese, then to the key itself."""
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    template = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE).get(key) or key
    return template.format(**values)
