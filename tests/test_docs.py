"""The front door and the manual stay true: the README is short, its Quick start holds the two
commands CI runs, every link it has resolves, and the manual in docs/ builds with MkDocs in strict
mode (a broken link or anchor fails), with the API reference generated from the apps' OpenAPI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_readme_is_a_front_door_not_a_manual() -> None:
    assert README.count("\n") <= 250, "the manual belongs in docs/, not in the README"


def test_quick_start_is_the_two_commands_ci_runs() -> None:
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", README, re.S)
    assert block, "README has no Quick start code block"
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text("utf-8")


def test_every_relative_link_in_the_readme_resolves() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "expected links into docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_manual_builds_strict_with_generated_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    api = (site / "reference" / "api" / "index.html").read_text("utf-8")
    assert "/api/v1/incidents" in api and "/api/v1/login" in api
    guide = (site / "zh" / "duty-staff" / "index.html").read_text("utf-8")
    assert "值班人员指南" in guide


def test_readme_renders_the_architecture_picture_as_one_block() -> None:
    import markdown

    html = markdown.markdown(README, extensions=["fenced_code", "tables"])
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings[:2] == ["Quick start", "What it does"] and "Documentation" in headings, headings
    assert html.count("<table>") >= 3, "a fence left open swallows the README's tables"
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", html, re.S)
    assert all(block.strip() for block in blocks), "an empty code block: a fence doubled"
    assert any("devices ──MQTT──▶ ingest" in block for block in blocks), "no picture block"
