"""Build the kube-sandbox launcher (sandbox/kube) into a cache outside the repository.

The binary is ~100 MB and takes minutes to compile cold, so it is keyed on everything that
determines its content (the launcher's go.mod, go.sum, main.go, the Kubernetes version and the
target platform) and reused whenever a binary for that key exists. It is never written into
the repository.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

LAUNCHER_DIR = Path(__file__).resolve().parent.parent / "kube"
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


def cache_key() -> str:
    """sha256 over the launcher sources and the target platform (GOOS/GOARCH)."""
    digest = hashlib.sha256()
    for name in KEY_FILES:
        digest.update(name.encode() + b"\0")
        digest.update((LAUNCHER_DIR / name).read_bytes() + b"\0")
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


def ensure_binary() -> Path:
    """Return the cached launcher binary, building it first if it is missing."""
    target = binary_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time (a cold build needs ~1.5 GB and both cores); a second caller
    # waits here and then finds the binary the first one built.
    with open(target.parent / "build.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local")
        ldflags = _ldflags(kube_version())
        cmd = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), "."]
        log.info("building kube-sandbox %s (cold: several minutes) ...", kube_version())
        started = time.monotonic()
        try:
            subprocess.run(cmd, cwd=LAUNCHER_DIR, env=env, check=True)
            os.replace(tmp, target)  # atomic: readers never see a half-written binary
        finally:
            tmp.unlink(missing_ok=True)
        log.info(
            "built %s in %.0f s, %.1f MB",
            target, time.monotonic() - started, target.stat().st_size / 1e6,
        )
    return target

