"""Fixtures for the module_utils unit tests."""

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session


@pytest.fixture(name="fresh_shared_sessions")
def fixture_fresh_shared_sessions(monkeypatch):
    """Sessions and clients are shared per auth settings within a process; each test scripts its own."""
    monkeypatch.setattr(_gcp_session, "_SHARED", {})
