"""Start and stop named sandbox clusters: a real kube-apiserver + embedded etcd per cluster.

Each cluster is one ``kube-sandbox`` process (see sandbox/kube/main.go) on loopback ports,
with its own CAs, admin client certificate, service-account signing keys and issuer, RBAC,
and a JSON audit log of write requests. Everything about a cluster lives in
``<state_dir>/clusters/<name>/`` (layout in docs/sandbox.md).

This module is the stable Python API other sandbox parts use (the GCP fake's GKE API starts
"created" clusters through :func:`start_cluster`), so keep its signatures compatible.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import yaml

from . import build, pki

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
PORT_ATTEMPTS = 3
READY_TIMEOUT = 90.0
STOP_GRACE = 20.0
ADMIN_USER = "sandbox-admin"
# Cluster names become directory names and part of the issuer URL: one DNS label.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
# Lines worth showing first when a start fails: cobra's "Error: ..." and klog E/F lines.
_ERROR_LINE_RE = re.compile(r"^(Error: |[EF]\d{4} )")

# Audit policy: every write at Metadata level, nothing else. The apiserver renews its own
# identity lease every 10 s; leaving those out keeps the log about what clients did.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "None",
            "users": ["system:apiserver"],
            "verbs": ["update"],
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
        },
        {"level": "Metadata", "verbs": sorted(WRITE_VERBS)},
        {"level": "None"},
    ],
}

# Popen objects of clusters this process started, so stopping them also reaps them
# (otherwise they linger as zombies, which still answer kill(pid, 0)).
_children: dict[int, subprocess.Popen] = {}


class ClusterStartError(RuntimeError):
    """The apiserver did not become ready; the message carries the server log excerpt."""


@dataclass(frozen=True)
class Cluster:
    """A running sandbox cluster, as recorded in ``cluster.json``."""

    name: str
    server: str  # https://127.0.0.1:PORT
    ca_pem: str  # CA that signed the serving certificate
    ca_data: str  # base64 of ca_pem, as in a kubeconfig's certificate-authority-data
    kubeconfig: Path  # admin kubeconfig (client certificate in group system:masters)
    audit_log: Path
    server_log: Path
    pid: int
    dir: Path
    issuer: str  # --service-account-issuer
    authn_webhook_url: str | None
    ready_seconds: float  # from process start to /readyz ok
    # After RBAC, the apiserver asks this URL (SubjectAccessReview v1), as GKE asks IAM.
    authz_webhook_url: str | None = None


def default_state_dir() -> Path:
    """``$SANDBOX_DIR`` or ``<repo>/.sandbox``."""
    return Path(os.environ.get("SANDBOX_DIR") or REPO_ROOT / ".sandbox")


def _state(state_dir: Path | None) -> Path:
    # Absolute, because the directory ends up in the process command line, which is how
    # we recognise our own processes.
    return Path(state_dir or default_state_dir()).resolve()


def _cluster_dir(state_dir: Path, name: str) -> Path:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid cluster name {name!r}: use a DNS label of at most 40 chars")
    return state_dir / "clusters" / name


@contextmanager
def _locked(state_dir: Path, name: str) -> Iterator[None]:
    """Serialise start/stop of one cluster across threads and processes."""
    clusters = state_dir / "clusters"
    clusters.mkdir(parents=True, exist_ok=True)
    with open(clusters / f".{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _is_ours(pid: int | None, cdir: Path) -> bool:
    """True if ``pid`` is a live kube-sandbox process of the cluster in ``cdir``.

    Checking the command line (not just kill(pid, 0)) guards against PID reuse after a
    reboot or crash; a zombie has an empty command line and so counts as gone.
    """
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--etcd-dir={cdir / 'etcd'}".encode() in argv


def _read_pid(cdir: Path) -> int | None:
    try:
        return int((cdir / "pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _load(cdir: Path) -> Cluster | None:
    try:
        data = json.loads((cdir / "cluster.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("kubeconfig", "audit_log", "server_log", "dir"):
        data[key] = Path(data[key])
    return Cluster(**data)


def get_cluster(name: str, state_dir: Path | None = None) -> Cluster | None:
    """The cluster ``name`` if its process is running, else None."""
    cluster = _load(_cluster_dir(_state(state_dir), name))
    return cluster if cluster and _is_ours(cluster.pid, cluster.dir) else None


def list_clusters(state_dir: Path | None = None) -> list[Cluster]:
    """All running clusters of the state directory, by name."""
    clusters = _state(state_dir) / "clusters"
    if not clusters.is_dir():
        return []
    found = (get_cluster(d.name, state_dir) for d in sorted(clusters.iterdir()) if d.is_dir())
    return [c for c in found if c]


def cluster_names(state_dir: Path | None = None) -> list[str]:
    """Names of every cluster directory, running or not (what ``down`` must look at)."""
    clusters = _state(state_dir) / "clusters"
    return sorted(d.name for d in clusters.iterdir() if d.is_dir()) if clusters.is_dir() else []


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is picked, so the ports are distinct. Another
    # process could still take one before the apiserver binds it; the start then fails
    # loudly (address in use) rather than silently.
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(name: str, cluster: dict, user: dict) -> str:
    """A kubeconfig (YAML) with one cluster, one user and one context, all called ``name``."""
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    })


def _write_pki(cdir: Path) -> dict[str, pki.KeyPair]:
    """Create and write the cluster's keys and certificates under ``cdir/pki``."""
    ca = pki.make_ca(f"sandbox-{cdir.name}-ca")
    client_ca = pki.make_ca(f"sandbox-{cdir.name}-client-ca")
    pairs = {
        "ca": ca,
        "client-ca": client_ca,
        "apiserver": pki.make_serving_cert(ca),
        "admin": pki.make_client_cert(client_ca, ADMIN_USER, "system:masters"),
        "sa": pki.make_service_account_keys(),
    }
    pki_dir = cdir / "pki"
    pki_dir.mkdir(mode=0o700)
    for stem, pair in pairs.items():
        (pki_dir / f"{stem}.crt").write_bytes(pair.cert_pem)
        pki.write_private(pki_dir / f"{stem}.key", pair.key_pem)
    return pairs


def _apiserver_flags(cdir: Path, port: int, etcd_port: int, issuer: str,
                     authn_webhook_url: str | None, authz_webhook_url: str | None) -> list[str]:
    p = cdir / "pki"
    flags = [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        # Both explicit: left unset, the apiserver looks for a non-loopback interface.
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # The default reconciler publishes the advertise address as the Endpoints of the
        # `kubernetes` Service, and validation rejects loopback there (an error every
        # 10 s). Nothing in the sandbox reaches the apiserver through that Service.
        "--endpoint-reconciler-type=none",
        f"--secure-port={port}",
        f"--cert-dir={p}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'client-ca.crt'}",
        f"--service-account-issuer={issuer}",
        f"--service-account-key-file={p / 'sa.crt'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        f"--api-audiences={issuer}",
        # GKE: RBAC first, then IAM through an authorization webhook (below).
        "--authorization-mode=Node,RBAC,Webhook" if authz_webhook_url else "--authorization-mode=Node,RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--profiling=false",
        f"--audit-policy-file={cdir / 'audit-policy.yaml'}",
        f"--audit-log-path={cdir / 'audit.log'}",
        "--audit-log-format=json",
    ]
    if authn_webhook_url:
        # GKE clusters accept Google access tokens; the GCP fake plays Google's token
        # webhook. A short cache TTL lets tests revoke a token and see the effect soon.
        flags += [
            f"--authentication-token-webhook-config-file={cdir / 'authn-webhook.kubeconfig'}",
            "--authentication-token-webhook-version=v1",
            "--authentication-token-webhook-cache-ttl=10s",
        ]
    if authz_webhook_url:
        # GKE asks IAM about every request RBAC does not allow; the GCP fake answers from
        # the principal's roles at request time. Short cache TTLs, so that a revoked role
        # is refused (and a new grant honoured) within seconds.
        flags += [
            f"--authorization-webhook-config-file={cdir / 'authz-webhook.kubeconfig'}",
            "--authorization-webhook-version=v1",
            "--authorization-webhook-cache-authorized-ttl=2s",
            "--authorization-webhook-cache-unauthorized-ttl=2s",
        ]
    return flags


def _log_excerpt(path: Path, tail: int = 25) -> str:
    """Error lines plus the last lines of the server log (cobra prints its whole usage
    after a flag error, so the tail alone would hide the actual error)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    errors = [line for line in lines if _ERROR_LINE_RE.match(line)][-10:]
    parts = []
    if errors:
        parts.append("errors:\n  " + "\n  ".join(errors))
    parts.append(f"last {min(tail, len(lines))} lines of {path}:\n  " + "\n  ".join(lines[-tail:]))
    return "\n".join(parts)


def _probe_ready(port: int, ctx: ssl.SSLContext) -> str | None:
    """None if /readyz answers ok, else a short reason."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=3)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return None if resp.status == 200 else f"/readyz {resp.status}: {body[-300:]}"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def _admin_tls(cdir: Path) -> ssl.SSLContext:
    # Verifies the serving certificate against the cluster CA and presents the admin
    # client certificate, so a successful probe also proves the PKI works end to end.
    ctx = ssl.create_default_context(cafile=cdir / "pki" / "ca.crt")
    ctx.load_cert_chain(cdir / "pki" / "admin.crt", cdir / "pki" / "admin.key")
    return ctx


def is_ready(cluster: Cluster) -> bool:
    """True if the cluster's /readyz answers ok."""
    return _probe_ready(int(cluster.server.rsplit(":", 1)[1]), _admin_tls(cluster.dir)) is None


def _wait_ready(cdir: Path, pid: int, port: int, timeout: float) -> None:
    ctx = _admin_tls(cdir)
    deadline = time.monotonic() + timeout
    reason = "not probed"
    while time.monotonic() < deadline:
        proc = _children.get(pid)
        if proc is not None and proc.poll() is not None:
            raise ClusterStartError(
                f"cluster {cdir.name}: kube-sandbox exited with code {proc.returncode} "
                f"before /readyz was ok\n{_log_excerpt(cdir / 'server.log')}"
            )
        reason = _probe_ready(port, ctx) or ""
        if not reason:
            return
        time.sleep(0.25)
    raise ClusterStartError(
        f"cluster {cdir.name}: /readyz not ok after {timeout:.0f}s (last: {reason})\n"
        f"{_log_excerpt(cdir / 'server.log')}"
    )


def start_cluster(
    name: str,
    state_dir: Path | None = None,
    *,
    authn_webhook_url: str | None = None,
    authz_webhook_url: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = READY_TIMEOUT,
) -> Cluster:
    """Start cluster ``name`` (or return it if it already runs) and wait for /readyz.

    ``authn_webhook_url`` makes the apiserver ask that URL (TokenReview v1) about bearer
    tokens it cannot authenticate itself; ``authz_webhook_url`` makes it ask that URL
    (SubjectAccessReview v1) about requests RBAC does not allow. ``extra_args`` are appended to the
    kube-apiserver flags. Raises :class:`ClusterStartError` with the server log if the
    apiserver exits or is not ready within ``timeout`` seconds.
    """
    state = _state(state_dir)
    cdir = _cluster_dir(state, name)
    binary = build.ensure_binary()
    with _locked(state, name):
        existing = get_cluster(name, state)
        if existing:
            for flag, wanted in (("authn_webhook_url", authn_webhook_url),
                                 ("authz_webhook_url", authz_webhook_url)):
                if getattr(existing, flag) != wanted:
                    raise ValueError(
                        f"cluster {name} already runs with {flag}="
                        f"{getattr(existing, flag)!r}; stop it first to change it"
                    )
            return existing
        # Leftovers of a stopped or crashed cluster: a fresh start gets fresh keys and data.
        _stop_process(cdir)
        shutil.rmtree(cdir, ignore_errors=True)
        cdir.mkdir(parents=True)

        pairs = _write_pki(cdir)
        # Unique per cluster, so a token of one cluster never validates in another.
        issuer = f"https://kubernetes.default.svc.{name}"
        (cdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY), encoding="utf-8")
        if authn_webhook_url:
            # Plain http is fine on loopback; the GCP fake serves all its APIs that way.
            webhook = _kubeconfig("webhook", {"server": authn_webhook_url}, {})
            (cdir / "authn-webhook.kubeconfig").write_text(webhook, encoding="utf-8")
        if authz_webhook_url:
            webhook = _kubeconfig("webhook", {"server": authz_webhook_url}, {})
            (cdir / "authz-webhook.kubeconfig").write_text(webhook, encoding="utf-8")
        # A free port is only free when it is probed: another sandbox on the machine (a
        # parallel test run, a GKE cluster the fake is starting) may take it before the
        # apiserver binds. Then try again on other ports.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port, etcd_port, etcd_peer_port = _free_ports(3)
            server = f"https://127.0.0.1:{port}"
            admin = _kubeconfig(
                name,
                {"server": server, "certificate-authority-data": _b64(pairs["ca"].cert_pem)},
                {"client-certificate-data": _b64(pairs["admin"].cert_pem),
                 "client-key-data": _b64(pairs["admin"].key_pem)},
            )
            pki.write_private(cdir / "kubeconfig", admin.encode())
            argv = [
                str(binary),
                f"--etcd-dir={cdir / 'etcd'}",
                f"--etcd-port={etcd_port}",
                f"--etcd-peer-port={etcd_peer_port}",
                "--",
                *_apiserver_flags(cdir, port, etcd_port, issuer, authn_webhook_url,
                                  authz_webhook_url),
                *extra_args,
            ]
            started = time.monotonic()
            proc = _launch(argv, cdir)
            try:
                _wait_ready(cdir, proc.pid, port, timeout)
                break
            except ClusterStartError:
                _stop_process(cdir)
                if attempt == PORT_ATTEMPTS or not _port_taken(cdir / "server.log"):
                    raise
                shutil.rmtree(cdir / "etcd", ignore_errors=True)
            except BaseException:
                _stop_process(cdir)
                raise
        cluster = Cluster(
            name=name,
            server=server,
            ca_pem=pairs["ca"].cert_pem.decode(),
            ca_data=_b64(pairs["ca"].cert_pem),
            kubeconfig=cdir / "kubeconfig",
            audit_log=cdir / "audit.log",
            server_log=cdir / "server.log",
            pid=proc.pid,
            dir=cdir,
            issuer=issuer,
            authn_webhook_url=authn_webhook_url,
            authz_webhook_url=authz_webhook_url,
            ready_seconds=round(time.monotonic() - started, 2),
        )
        record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cluster).items()}
        (cdir / "cluster.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return cluster


def _launch(argv: list[str], cdir: Path) -> subprocess.Popen:
    """Start the kube-sandbox process detached, logging to server.log; record its PID."""
    with open(cdir / "server.log", "ab") as server_log:
        # A new session detaches the server from our terminal and process group, so
        # it outlives `prow-sandbox up` and a Ctrl-C there does not reach it.
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv, cwd=cdir, stdin=subprocess.DEVNULL, stdout=server_log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    _children[proc.pid] = proc
    (cdir / "pid").write_text(f"{proc.pid}\n", encoding="utf-8")
    return proc


def _port_taken(server_log: Path) -> bool:
    """Whether the last start failed because a port was taken between probe and bind."""
    try:
        return "address already in use" in server_log.read_text(encoding="utf-8", errors="replace")[-20000:]
    except FileNotFoundError:
        return False


def _stop_process(cdir: Path, grace: float = STOP_GRACE) -> bool:
    """SIGTERM the cluster's process, SIGKILL it after ``grace`` seconds; True if it ran."""
    pid = _read_pid(cdir)
    if pid is None or not _is_ours(pid, cdir):
        _children.pop(pid or 0, None)
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while _is_ours(pid, cdir) and time.monotonic() < deadline:
            proc = _children.get(pid)
            if proc is not None:
                proc.poll()  # reaps our own child, so it does not stay a zombie
            time.sleep(0.1)
        if not _is_ours(pid, cdir):
            break
    proc = _children.pop(pid, None)
    if proc is not None:
        proc.wait(timeout=5)
    if _is_ours(pid, cdir):
        raise RuntimeError(f"cluster {cdir.name}: process {pid} survived SIGKILL")
    return True


def stop_cluster(name: str, state_dir: Path | None = None) -> bool:
    """Stop cluster ``name``; True if a process was running. Logs and keys stay on disk."""
    state = _state(state_dir)
    cdir = _cluster_dir(state, name)
    with _locked(state, name):
        stopped = _stop_process(cdir)
        for stale in ("pid", "cluster.json"):
            (cdir / stale).unlink(missing_ok=True)
        return stopped


def audit_events(
    cluster: Cluster,
    *,
    verbs: Collection[str] = WRITE_VERBS,
    since: datetime | None = None,
    user: str | None = None,
    namespace: str | None = None,
) -> list[dict]:
    """Audit events (ResponseComplete/Panic stage dicts) of the cluster, oldest first.

    ``since`` must be timezone-aware; it is compared with ``requestReceivedTimestamp``.
    The log backend writes an event after the response is sent, so callers that just made
    a request should poll briefly.
    """
    events = []
    try:
        lines = cluster.audit_log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if event.get("verb") not in verbs:
            continue
        if since and datetime.fromisoformat(event["requestReceivedTimestamp"]) < since:
            continue
        if user and event.get("user", {}).get("username") != user:
            continue
        if namespace and event.get("objectRef", {}).get("namespace") != namespace:
            continue
        events.append(event)
    return events


AUDIT_SENTINEL_PREFIX = "audit-sentinel-"


def settled_audit_events(cluster: Cluster, *, since: datetime, timeout: float = 10.0) -> list[dict]:
    """The write events since ``since``, read once the log has caught up with every earlier request.

    The log backend records an event just after the response, so an empty answer read too
    early would prove nothing. A sentinel ConfigMap is created in kube-system with the
    admin credentials and the log polled until it shows: every earlier request is in the log
    then. The sentinel is deleted again; events of sentinels are left out of the answer.
    """
    name = f"{AUDIT_SENTINEL_PREFIX}{os.urandom(5).hex()}"
    path = "/api/v1/namespaces/kube-system/configmaps"
    _admin_request(cluster, "POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    try:
        deadline = time.monotonic() + timeout
        while True:
            events = audit_events(cluster, since=since)
            if any((e.get("objectRef") or {}).get("name") == name for e in events):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cluster.name}: the audit log never recorded the sentinel {name}")
            time.sleep(0.1)
    finally:
        _admin_request(cluster, "DELETE", f"{path}/{name}")
    return [e for e in events if not (e.get("objectRef") or {}).get("name", "").startswith(AUDIT_SENTINEL_PREFIX)]


def _admin_request(cluster: Cluster, method: str, path: str, body: dict | None = None) -> None:
    port = int(cluster.server.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=_admin_tls(cluster.dir), timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        detail = resp.read().decode(errors="replace")
        if resp.status >= 300:
            raise RuntimeError(f"{cluster.name}: {method} {path}: {resp.status} {detail[-300:]}")
    finally:
        conn.close()
