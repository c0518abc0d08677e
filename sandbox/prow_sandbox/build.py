"""Build the sandbox's Go binaries into a cache outside the repository.

* the kube-sandbox launcher (sandbox/kube): ~100 MB, minutes to compile cold;
* Prow's prow-controller-manager, checkconfig and mkpj (sandbox/prow, sigs.k8s.io/prow at the
  version pinned in its go.mod).

Each is keyed on everything that determines its content (go.mod, go.sum, sources, the target
platform) and reused whenever a build for that key exists. Nothing is written into the
repository.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

LAUNCHER_DIR = Path(__file__).resolve().parent.parent / "kube"
PROW_DIR = Path(__file__).resolve().parent.parent / "prow"
PROW_MODULE = "sigs.k8s.io/prow"
# The go.mod `tool` lines of sandbox/prow: the binaries `ensure_prow_binaries` builds.
PROW_COMMANDS = ("prow-controller-manager", "checkconfig", "mkpj")
# Every file whose content changes the binary; go.sum pins all module contents.
KEY_FILES = ("go.mod", "go.sum", "main.go", "KUBE_VERSION")


def kube_version() -> str:
    """The k8s.io/kubernetes release the launcher requires, e.g. ``v1.35.4``."""
    return (LAUNCHER_DIR / "KUBE_VERSION").read_text(encoding="utf-8").strip()


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prow-build-cluster`` (``~/.cache/prow-build-cluster`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prow-build-cluster"


@functools.cache
def _go_platform() -> str:
    """``GOOS/GOARCH`` the go command builds for (honours GOOS/GOARCH overrides)."""
    out = subprocess.run(["go", "env", "GOOS", "GOARCH"], check=True, capture_output=True,
                         text=True).stdout.split()
    return "/".join(out)


def cache_key(src: Path = LAUNCHER_DIR, files: tuple[str, ...] = KEY_FILES) -> str:
    """sha256 over a module's sources and the target platform (GOOS/GOARCH)."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update((src / name).read_bytes() + b"\0")
    digest.update(_go_platform().encode())
    return digest.hexdigest()


def binary_path() -> Path:
    """Where the binary for the current sources lives (it may not exist yet)."""
    return cache_dir() / f"kube-sandbox-{cache_key()[:16]}"


def _ldflags(version: str) -> str:
    # Without these /version reports v0.0.0-master, and clients that check the server
    # version (kubectl's skew warning, Ansible's kubernetes.core) would see 0.0.
    major, minor = version.lstrip("v").split(".")[:2]
    # SOURCE_DATE_EPOCH keeps the build date reproducible when a caller wants that.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    build_date = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    pkg = "k8s.io/component-base/version"
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    return " ".join(["-s", "-w"] + [f"-X {pkg}.{k}={v}" for k, v in values.items()])


def _go_env() -> dict[str, str]:
    return dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local")


def _build_once(target: Path, build: Callable[[Path], None], what: str) -> Path:
    """Return ``target``, first running ``build(tmp)`` and renaming ``tmp`` into place if it is missing.

    One build at a time (a cold build needs over 1 GB and both cores): a second caller waits
    on the lock and then finds what the first one built. The rename is atomic, so readers
    never see a half-written binary or a partial set of them.
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "build.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        log.info("building %s (cold: several minutes) ...", what)
        started = time.monotonic()
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        log.info("built %s in %.0f s", target, time.monotonic() - started)
    return target


def ensure_binary() -> Path:
    """Return the cached launcher binary, building it first if it is missing."""
    ldflags = _ldflags(kube_version())

    def build(tmp: Path) -> None:
        cmd = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), "."]
        subprocess.run(cmd, cwd=LAUNCHER_DIR, env=_go_env(), check=True)
        log.info("kube-sandbox binary: %.1f MB", tmp.stat().st_size / 1e6)

    return _build_once(binary_path(), build, f"kube-sandbox {kube_version()}")


def prow_version() -> str:
    """The sigs.k8s.io/prow version sandbox/prow requires (a pseudo-version)."""
    for line in (PROW_DIR / "go.mod").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in (PROW_MODULE, "require") and PROW_MODULE in fields:
            return fields[fields.index(PROW_MODULE) + 1]
    raise RuntimeError(f"{PROW_DIR / 'go.mod'} does not require {PROW_MODULE}")


def prow_dir() -> Path:
    """Where the Prow binaries for the current sources live (the directory may not exist yet)."""
    return cache_dir() / f"prow-{cache_key(PROW_DIR, ('go.mod', 'go.sum'))[:16]}"


def ensure_prow_binaries() -> Path:
    """Return the cached directory holding prow-controller-manager, checkconfig and mkpj,
    building them first if it is missing (one directory, renamed into place when complete)."""
    version = prow_version()
    # pkg/version wants v<date>-<commit>; the pseudo-version has both.
    _, stamp, commit = version.split("-")

    def build(tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        subprocess.run(["go", "mod", "download", PROW_MODULE], cwd=PROW_DIR, env=_go_env(), check=True)
        for command in PROW_COMMANDS:
            pkg = "sigs.k8s.io/prow/pkg/version"
            ldflags = f"-s -w -X {pkg}.Name={command} -X {pkg}.Version=v{stamp[:8]}-{commit}"
            subprocess.run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp / command),
                            f"{PROW_MODULE}/cmd/{command}"], cwd=PROW_DIR, env=_go_env(), check=True)

    return _build_once(prow_dir(), build, f"Prow {version} ({', '.join(PROW_COMMANDS)})")
