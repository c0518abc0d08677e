"""pytest fixtures for the GCP fake (the lead registers them in the sandbox's pytest plugin).

* ``gcp_fake`` (session): one in-process :class:`FakeGCP` on a free loopback port, with its
  own state directory; GKE clusters it creates are stopped at the end of the session.
* ``gcp`` (function): a :class:`GcpHandle` on that fake for one test: faults and behaviour
  switches are cleared before and after the test, the request log is read from the test's
  start, and :meth:`GcpHandle.unique` gives names no other test uses (resources are not
  reset between tests, because GKE clusters are slow to recreate).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from . import seed
from .faults import Fault
from .server import FakeGCP
from .state import CLOUD_PLATFORM_SCOPE, Config

_counter = itertools.count(1)


def credentials(fake: FakeGCP, who: str = "operator", scopes: list[str] | None = None) -> Any:
    """google-auth credentials of a seeded principal, refreshed through the fake's OAuth2.

    ``who`` is ``operator`` or an email of a seeded service account or user.
    """
    import google.oauth2.credentials
    from google.oauth2 import service_account

    path = fake.credentials[who]
    scopes = scopes or [CLOUD_PLATFORM_SCOPE]
    if who in seed.USERS:
        # google-auth ignores token_uri in authorized_user files (it always uses
        # oauth2.googleapis.com), so point the credentials at the fake explicitly.
        creds = google.oauth2.credentials.Credentials.from_authorized_user_file(str(path), scopes)
        return creds.with_token_uri(fake.endpoints["oauth2"] + "/token")
    return service_account.Credentials.from_service_account_file(str(path), scopes=scopes)


class GcpHandle:
    """One test's view of the fake."""

    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.endpoints = fake.endpoints
        self.prow_project = seed.PROW_PROJECT
        self.build_project = seed.BUILD_PROJECT
        self.start_mark = fake.mark()

    def unique(self, prefix: str) -> str:
        """A name unused by other tests: ``prefix-<pid>-<n>`` (lowercase, DNS-safe)."""
        return f"{prefix}-{os.getpid() % 10000}-{next(_counter)}"

    def url(self, service: str, path: str) -> str:
        return self.endpoints[service] + path

    def credentials(self, who: str = "operator", scopes: list[str] | None = None) -> Any:
        return credentials(self.fake, who, scopes)

    def session(self, who: str = "operator", scopes: list[str] | None = None) -> Any:
        from google.auth.transport.requests import AuthorizedSession
        return AuthorizedSession(self.credentials(who, scopes))

    # The official clients, configured as the collection's modules configure them: base URL
    # from the endpoints map, credentials from a file, REST transport for GAPIC clients.

    def secretmanager(self, who: str = "operator") -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import secretmanager
        return secretmanager.SecretManagerServiceClient(
            credentials=self.credentials(who), transport="rest",
            client_options=ClientOptions(api_endpoint=self.endpoints["secretmanager"]))

    def storage(self, who: str = "operator") -> Any:
        from google.cloud import storage
        return storage.Client(project=self.build_project, credentials=self.credentials(who),
                              client_options={"api_endpoint": self.endpoints["storage"]})

    def container(self, who: str = "operator") -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import container_v1
        return container_v1.ClusterManagerClient(
            credentials=self.credentials(who), transport="rest",
            client_options=ClientOptions(api_endpoint=self.endpoints["container"]))

    def inject(self, **spec: Any) -> Fault:
        return self.fake.inject(**spec)

    def configure(self, **values: Any) -> None:
        self.fake.configure(**values)

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """Requests logged since the test started (filters as RequestLog.entries)."""
        return self.fake.requests(since=self.start_mark, **filters)

    def mark(self) -> int:
        return self.fake.mark()


def _clean(fake: FakeGCP) -> None:
    fake.faults.clear()
    with fake.state.lock:
        fake.state.config = Config()


@pytest.fixture(scope="session")
def gcp_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCP]:
    fake = FakeGCP(tmp_path_factory.mktemp("sandbox")).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gcp(gcp_fake: FakeGCP) -> Iterator[GcpHandle]:
    _clean(gcp_fake)
    yield GcpHandle(gcp_fake)
    _clean(gcp_fake)


def kube_sandbox_available() -> str | None:
    """None if GKE clusters can start (the kube-sandbox binary is built), else why not."""
    try:
        from prow_sandbox import build
        path = build.binary_path()
    except Exception as exc:  # noqa: BLE001 - e.g. no Go toolchain to compute the key
        return f"kube-sandbox binary unavailable: {exc}"
    if not path.exists():
        return f"kube-sandbox binary not built ({path}); run `make setup` or `prow-sandbox build`"
    return None
