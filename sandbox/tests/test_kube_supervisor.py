"""The supervisor: `up` is idempotent, `down` leaves no process, failed starts explain why.

These tests start their own clusters in a temporary state directory (never the developer's
.sandbox), through the installed ``prow-sandbox`` console script where the CLI is the
thing under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prow_sandbox import kube

CLI = str(Path(sys.executable).parent / "prow-sandbox")


def _cli(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SANDBOX_DIR=str(state))
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    if check and result.returncode:
        pytest.fail(f"prow-sandbox {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def _live_processes(state: Path) -> dict[int, str]:
    """Every live (non-zombie) process whose command line mentions ``state``.

    Zombies are left out: once our parent (`prow-sandbox up`) has exited, reaping them is
    init's job, and a zombie holds no ports, memory or files.
    """
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state) in cmdline:
            found[int(proc.name)] = cmdline
    return found


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path):
    state = tmp_path.resolve()
    try:
        _cli(state, "up")
        first = {c.name: c.pid for c in kube.list_clusters(state)}
        assert set(first) == {"prow", "build"}

        _cli(state, "up")
        assert {c.name: c.pid for c in kube.list_clusters(state)} == first
        # No duplicates anywhere: exactly the recorded PIDs run for this state directory
        # (plus the GCP fake, when this checkout has it).
        gcp = state / "gcp" / "pid"
        expected = set(first.values()) | ({int(gcp.read_text())} if gcp.exists() else set())
        assert set(_live_processes(state)) == expected

        # The env file is valid shell and points at working admin kubeconfigs.
        script = f". {state / 'env'} && echo $SANDBOX_DIR $PROW_KUBECONFIG $BUILD_KUBECONFIG"
        shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                               check=True).stdout.split()
        assert shown == [str(state), str(state / "clusters/prow/kubeconfig"),
                         str(state / "clusters/build/kubeconfig")]

        # A cluster started later (as the GCP fake's GKE API does) is stopped by down too.
        extra = json.loads(_cli(state, "start-cluster", "gke-extra").stdout)
        assert extra["pid"] in _live_processes(state)
        assert "gke-extra: ready" in _cli(state, "status").stdout
    finally:
        down = _cli(state, "down", check=False)

    assert down.returncode == 0, down.stderr
    assert "stopped cluster gke-extra" in down.stdout
    assert _live_processes(state) == {}
    assert kube.list_clusters(state) == []
    assert not (state / "env").exists()
    # A second down has nothing to do and still succeeds.
    assert _cli(state, "down").returncode == 0


def test_failed_start_reports_the_server_log_and_leaves_nothing(tmp_path):
    with pytest.raises(kube.ClusterStartError) as err:
        kube.start_cluster("broken", tmp_path, extra_args=["--no-such-flag=1"])
    message = str(err.value)
    assert "exited with code" in message
    assert "unknown flag: --no-such-flag" in message  # the real error, not only the usage text
    assert str(tmp_path.resolve() / "clusters/broken/server.log") in message
    assert kube.get_cluster("broken", tmp_path) is None
    assert _live_processes(tmp_path.resolve()) == {}


def test_readiness_timeout_stops_the_process(tmp_path):
    started = time.monotonic()
    with pytest.raises(kube.ClusterStartError, match=r"/readyz not ok after 0s"):
        kube.start_cluster("slow", tmp_path, timeout=0.3)
    assert time.monotonic() - started < 30
    assert _live_processes(tmp_path.resolve()) == {}


def test_a_recycled_pid_is_never_taken_for_a_cluster(tmp_path):
    # A stale state directory whose PID now belongs to another process (here: this test).
    cdir = tmp_path / "clusters" / "stale"
    cdir.mkdir(parents=True)
    (cdir / "pid").write_text(f"{os.getpid()}\n")
    (cdir / "cluster.json").write_text(json.dumps({
        "name": "stale", "server": "https://127.0.0.1:1", "ca_pem": "", "ca_data": "",
        "kubeconfig": str(cdir / "kubeconfig"), "audit_log": str(cdir / "audit.log"),
        "server_log": str(cdir / "server.log"), "pid": os.getpid(), "dir": str(cdir),
        "issuer": "https://kubernetes.default.svc.stale", "authn_webhook_url": None,
        "ready_seconds": 1.0,
    }))
    assert kube.get_cluster("stale", tmp_path) is None
    assert kube.stop_cluster("stale", tmp_path) is False  # and we are still alive to assert it


def test_a_port_taken_between_probe_and_bind_is_retried_on_other_ports(tmp_path, monkeypatch):
    import socket  # pylint: disable=import-outside-toplevel

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_ports = kube._free_ports  # pylint: disable=protected-access
    calls = []

    def first_one_taken(count):
        calls.append(count)
        ports = real_free_ports(count)
        return [taken, *ports[1:]] if len(calls) == 1 else ports

    monkeypatch.setattr(kube, "_free_ports", first_one_taken)
    try:
        cluster = kube.start_cluster("portrace", tmp_path)
        try:
            assert len(calls) == 2, "the start must have been retried once"
            assert not cluster.server.endswith(f":{taken}")
            assert kube.is_ready(cluster)
            assert "address already in use" in cluster.server_log.read_text()
        finally:
            kube.stop_cluster("portrace", tmp_path)
    finally:
        squatter.close()
