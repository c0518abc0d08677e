"""Fixtures for the GCP fake's contract tests (the fixtures live in prow_sandbox.gcp.testing;
the clients come from GcpHandle.secretmanager()/storage()/container()/session())."""

from __future__ import annotations

import pytest

from prow_sandbox.gcp.testing import GcpHandle, gcp, gcp_fake  # noqa: F401 - fixtures


@pytest.fixture
def operator(gcp: GcpHandle):  # noqa: F811
    """AuthorizedSession of the seeded operator (owner of the Prow and build projects)."""
    return gcp.session("operator")
