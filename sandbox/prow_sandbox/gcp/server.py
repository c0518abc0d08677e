"""``FakeGCP``: one fake (state + HTTP server on loopback) and its Python API.

Used in-process by the pytest fixtures (a thread, port 0) and as a daemon by
``python -m prow_sandbox.gcp`` (see :mod:`.daemon`). Files it writes under
``<state_dir>/gcp/``: ``requests.jsonl`` (request log), ``operator-credentials.json``
(authorized_user file of the seeded operator), ``credentials/<email>.json`` (a key file per
seeded service account and user). GKE clusters become ``<state_dir>/clusters/gke-*``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from . import auth, seed
from .app import SERVICES, App
from .faults import Fault, Faults, RequestLog
from .state import Project, ServiceAccount, State, UserAccount

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    # The request log is the record; werkzeug's per-request stderr lines would only be noise.
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeGCP:
    """A running fake. ``endpoints`` maps each service to its base URL (no trailing slash)."""

    def __init__(self, state_dir: Path | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, config: dict[str, Any] | None = None) -> None:
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="prow-sandbox-")).resolve()
        self.gcp_dir = self.state_dir / "gcp"
        self.gcp_dir.mkdir(parents=True, exist_ok=True)
        self.faults = Faults()
        self.log = RequestLog(self.gcp_dir / "requests.jsonl")
        # Behaviour switches given at start (``--config``): the fake's own defaults, which
        # reset() returns to, like the seed.
        self.initial_config = dict(config or {})
        self.state = State()
        self.state.config.update(self.initial_config)
        self._kube_names: set[str] = set()
        self._kube_lock = threading.Lock()
        self._server = make_server(host, port, App(self), threaded=True,
                                   request_handler=_QuietHandler)
        self.port: int = self._server.server_port
        self.base_url = f"http://{host}:{self.port}"
        self.endpoints = {service: f"{self.base_url}/{service}" for service in SERVICES}
        self.credentials: dict[str, Path] = {}  # principal email -> credentials file
        self._thread: threading.Thread | None = None
        self._seed()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeGCP:
        """Serve in a background thread (returns at once; the socket is already bound)."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gcp",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and stop every GKE apiserver this fake started."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self.stop_all_kube()

    def reset(self) -> None:
        """Back to the seeded world: faults, config (as given at start) and resources (GKE
        clusters stopped).
        The request log is kept; use :meth:`mark` to look at a test's requests only."""
        self.stop_all_kube()
        with self.state.lock:
            self.state = State()
            self.state.config.update(self.initial_config)
            self._seed()
        self.faults.reset()

    # ------------------------------------------------------------ seeding

    def _seed(self) -> None:
        state = self.state
        token_uri = self.endpoints["oauth2"] + "/token"
        for p in seed.PROJECTS:
            state.projects[p.project_id] = Project(p.project_id, p.number, p.name)
        for project_id, role, member in seed.BINDINGS:
            state.projects[project_id].policy.add_binding(role, member)
        creds_dir = self.gcp_dir / "credentials"
        creds_dir.mkdir(exist_ok=True)
        for a in seed.SERVICE_ACCOUNTS:
            sa = ServiceAccount(a.project_id, a.account_id, state.new_unique_id(),
                                display_name=a.display_name)
            state.service_accounts[sa.email] = sa
            self._write_credentials(sa.email, auth.new_key(state, sa, token_uri))
        for email in seed.USERS:
            user = UserAccount(email, f"{secrets.token_hex(8)}.apps.sandbox.test",
                               secrets.token_urlsafe(16), secrets.token_urlsafe(32))
            state.users[email] = user
            # gcloud's ADC file layout; google-auth honours token_uri in it.
            self._write_credentials(email, {
                "type": "authorized_user", "client_id": user.client_id,
                "client_secret": user.client_secret, "refresh_token": user.refresh_token,
                "token_uri": token_uri, "account": email, "universe_domain": "googleapis.com",
            })
        operator = self.gcp_dir / "operator-credentials.json"
        write_private(operator, self.credentials[seed.OPERATOR].read_text(encoding="utf-8"))
        self.credentials["operator"] = operator

    def _write_credentials(self, email: str, info: dict[str, Any]) -> None:
        path = self.gcp_dir / "credentials" / f"{email}.json"
        write_private(path, json.dumps(info, indent=2) + "\n")
        self.credentials[email] = path

    # ------------------------------------------------------------ Python API for tests

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "base_url": self.base_url,
            "endpoints": dict(self.endpoints),
            "project": seed.BUILD_PROJECT,
            "prow_project": seed.PROW_PROJECT,
            "build_project": seed.BUILD_PROJECT,
            "credentials_file": str(self.credentials["operator"]),
            "credentials": {k: str(v) for k, v in self.credentials.items()},
        }

    def inject(self, **spec: Any) -> Fault:
        """Add a fault rule; see :class:`.faults.Fault` for the fields."""
        return self.faults.add(**spec)

    def configure(self, **values: Any) -> None:
        with self.state.lock:
            self.state.config.update(values)

    def mark(self) -> int:
        return self.log.mark()

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        return self.log.entries(**filters)

    # ------------------------------------------------------------ GKE's apiservers

    def start_kube(self, name: str, webhook_url: str, authz_webhook_url: str | None = None) -> Any:
        from prow_sandbox import kube  # the Kubernetes half; only GKE creates need it
        with self._kube_lock:
            self._kube_names.add(name)
        return kube.start_cluster(name, self.state_dir, authn_webhook_url=webhook_url,
                                  authz_webhook_url=authz_webhook_url)

    def stop_kube(self, name: str) -> None:
        from prow_sandbox import kube
        kube.stop_cluster(name, self.state_dir)
        with self._kube_lock:
            self._kube_names.discard(name)

    def stop_all_kube(self) -> None:
        with self._kube_lock:
            names = sorted(self._kube_names)
        for name in names:
            try:
                self.stop_kube(name)
            except Exception:  # noqa: BLE001 - keep stopping the others
                log.exception("could not stop GKE apiserver %s", name)


def write_private(path: Path, text: str) -> None:
    """Credentials are secrets even in a sandbox: owner-only, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
