"""The layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml pass on
the code, and an upward import breaks them with a message that names the rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("foundation", "devices", "ingest", "detectors", "dispatcher", "console",
            "simulators", "eldercare")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_code_keeps_its_layers() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_an_upward_import_fails_naming_the_rule(tmp_path: Path) -> None:
    # The same contracts over a copy of the package tree in which the ground imports a service.
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "foundation" / "upward.py").write_text("import dispatcher\n")
    # the offline evaluation below the simulators is no exception any more (issue 21)
    (tmp_path / "simulators" / "clock.py").write_text("")
    (tmp_path / "detectors" / "evaluation").mkdir()
    (tmp_path / "detectors" / "evaluation" / "__init__.py").write_text("")
    (tmp_path / "detectors" / "evaluation" / "homes.py").write_text("import simulators.clock\n")
    run = _lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Layers: eldercare (top) >" in run.stdout
    assert "BROKEN" in run.stdout
    assert "foundation.upward -> dispatcher" in run.stdout
    assert "detectors.evaluation.homes -> simulators.clock" in run.stdout
