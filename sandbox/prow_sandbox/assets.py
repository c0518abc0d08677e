"""Every external file the sandbox and the tests use, taken from a registry at setup, pinned.

The files are upstream's, unchanged, and come from Go modules through the Go module proxy:
``go mod download -json MODULE@VERSION`` puts the module in the module cache
(``$GOMODCACHE``, checksum-verified against sum.golang.org as the go command does by default)
and reports its directory and ``h1:`` hash; the hash must also equal the one pinned here, so a
module cache filled some other way (GONOSUMDB, GOFLAGS=-insecure, a proxy serving other
content) is refused. Once cached, nothing needs the network. ``make setup`` runs
``prow-sandbox assets`` to fetch them all; tests and scripts ask for paths:

    from prow_sandbox import assets
    assets.files("eso-crds")          # [Path, ...]
    prow-sandbox assets eso-crds      # the same paths, one a line

This module is the one place where the pins live. Nothing is copied into the repository.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    sum: str  # the h1: hash go.sum would hold for the module zip


MODULES = {
    # External Secrets Operator, serves external-secrets.io/v1 (Apache-2.0).
    "external-secrets": Module("github.com/external-secrets/external-secrets", "v1.3.2",
                               "h1:u2J8RjlHIeF0oZCqtl92adI/uZWUwOesJIDkfql6LqQ="),
    # Prow (Apache-2.0): the ProwJob CRD, and the deployment manifests of Prow's own
    # integration test (at this version config/prow/cluster/ holds only the CRD).
    "prow": Module("sigs.k8s.io/prow", "v0.0.0-20240619181241-cfb8754e0459",
                   "h1:t8nFAgqf4A53NMuaML7xbBkaKcQtN3aqPPHDsVLfWWs="),
}

_PROW_CLUSTER = "test/integration/config/prow/cluster"
# name -> (module, files inside it)
ASSETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "eso-crds": ("external-secrets", tuple(
        f"config/crds/bases/external-secrets.io_{kind}.yaml"
        for kind in ("externalsecrets", "secretstores", "clustersecretstores"))),
    "prowjob-crd": ("prow", ("config/prow/cluster/prowjob-crd/prowjob_customresourcedefinition.yaml",)),
    # The Prow components that talk to build clusters, as Prow deploys them.
    "prow-deployments": ("prow", tuple(
        f"{_PROW_CLUSTER}/{name}" for name in (
            "prow_controller_manager_deployment.yaml", "sinker.yaml", "crier_deployment.yaml",
            "deck_deployment.yaml"))),
}


class AssetError(RuntimeError):
    """A module could not be fetched, or is not what the pin says."""


@functools.cache
def module_dir(name: str) -> Path:
    """The module's directory in the Go module cache, downloading it if needed."""
    module = MODULES[name]
    ref = f"{module.path}@{module.version}"
    # -mod=mod: never consult a vendor directory; GOTOOLCHAIN=local: no toolchain download.
    # The go command is run outside any module so that no go.mod/go.sum is touched.
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    cwd = Path(env.get("GOMODCACHE") or Path.home())
    cwd = cwd if cwd.is_dir() else Path("/")
    result = subprocess.run(["go", "mod", "download", "-json", ref], cwd=cwd, env=env,
                            capture_output=True, text=True, check=False)
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    if result.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise AssetError(f"go mod download {ref} failed: {info.get('Error') or result.stderr.strip()}")
    if info.get("Sum") != module.sum:
        raise AssetError(f"{ref}: module hash {info.get('Sum')} is not the pinned {module.sum}")
    return Path(info["Dir"])


def files(asset: str) -> list[Path]:
    """The files of one asset (see ASSETS), each checked to exist."""
    try:
        module, rel_paths = ASSETS[asset]
    except KeyError:
        raise AssetError(f"unknown asset {asset!r}; known: {', '.join(sorted(ASSETS))}") from None
    root = module_dir(module)
    found = [root / rel for rel in rel_paths]
    missing = [str(p) for p in found if not p.is_file()]
    if missing:
        raise AssetError(f"{asset}: not in {MODULES[module].path}@{MODULES[module].version}: {', '.join(missing)}")
    return found


def path(asset: str) -> Path:
    """The one file of a single-file asset."""
    found = files(asset)
    if len(found) != 1:
        raise AssetError(f"{asset} has {len(found)} files; use files()")
    return found[0]


def fetch_all() -> dict[str, list[Path]]:
    """Every asset (what ``make setup`` runs)."""
    return {name: files(name) for name in ASSETS}
