"""Apache ECharts for the console's charts, fetched with npm's own client (`npm pack`, from
whatever registry npm is configured for) at install time (`make`, or `python -m
console.assets`) into the static folder, and served by the console itself: browsers
never reach a third-party CDN, so the console works offline.

The version and the tarball's SHA-512 are pinned here: a changed file on the registry is
refused. The Apache-2.0 LICENSE and NOTICE are installed beside the script."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

ECHARTS_VERSION = "6.1.0"
ECHARTS_SHA512 = ("q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIV"
                  "pIyHZA==")
# file in the npm package -> file in the static folder
FILES = {
    "package/dist/echarts.min.js": "echarts.min.js",
    "package/LICENSE": "echarts.LICENSE.txt",
    "package/NOTICE": "echarts.NOTICE.txt",
}
SCRIPT = "echarts.min.js"


def static_dir() -> Path:
    return Path(str(resources.files("console.static")))


def installed(folder: Path | None = None) -> bool:
    """Whether every ECharts file is in the static folder."""
    folder = folder or static_dir()
    return all((folder / name).is_file() for name in FILES.values())


def install(folder: Path | None = None, timeout: float = 60.0) -> Path:
    """Download the pinned ECharts package, check its SHA-512, unpack the script, LICENSE and
    NOTICE into `folder` (the console's static folder by default); returns the script's path."""
    folder = folder or static_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm (Node.js) is needed once to fetch the console's charting "
                           "library, Apache ECharts: install Node.js, then run make again")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", f"echarts@{ECHARTS_VERSION}", "--silent",
                        "--pack-destination", tmp], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL)
        content = (Path(tmp) / f"echarts-{ECHARTS_VERSION}.tgz").read_bytes()
    digest = base64.b64encode(hashlib.sha512(content).digest()).decode()
    if digest != ECHARTS_SHA512:
        raise RuntimeError(f"echarts {ECHARTS_VERSION}: the registry's tarball does not match "
                           "the pinned SHA-512; refusing it")
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        for member, name in FILES.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise RuntimeError(f"echarts {ECHARTS_VERSION}: {member} missing")
            (folder / name).write_bytes(extracted.read())
    return folder / SCRIPT


def main() -> int:
    """Install ECharts unless it is there already."""
    if installed():
        print(f"echarts {ECHARTS_VERSION}: already installed in {static_dir()}")
        return 0
    path = install()
    print(f"echarts {ECHARTS_VERSION}: installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
