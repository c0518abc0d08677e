"""Harness for integration tests: run the collection's modules the way users do.

Each test writes a small playbook and runs the real ``ansible-playbook`` with the JSON
callback, then asserts on the per-task results. The play is ``-c local`` on this Python, so
the modules run in the worker process (plugin_utils/inprocess.py), as on an operator's
controller; test_inprocess.py runs tasks both ways and compares the results. The sandbox fixtures (clusters, the GCP
fake) come from the prow_sandbox pytest plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class PlaybookRun:
    """What one ansible-playbook run did: per-task results in order, stats, raw output."""

    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)  # [(task name, result dict)]
    stats: dict = field(default_factory=dict)

    def task(self, name):
        """Result of the task with this name (the last one if it ran more than once)."""
        matches = [res for task_name, res in self.results if task_name == name]
        if not matches:
            raise KeyError(f"task {name!r} did not run; ran: {[n for n, _ in self.results]}")
        return matches[-1]

    @property
    def changed(self):
        return sum(host["changed"] for host in self.stats.values())

    @property
    def failed(self):
        return sum(host["failures"] + host["unreachable"] for host in self.stats.values())


class Ansible:
    """Runs playbooks from a temp dir against localhost, with the collection from this checkout."""

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def run(self, tasks, *, check=False, diff=False, extra_vars=None, env=None, play_vars=None) -> PlaybookRun:
        play = {"name": "integration", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        if play_vars:
            play["vars"] = play_vars
        playbook = self.workdir / "playbook.yml"
        playbook.write_text(yaml.safe_dump([play], sort_keys=False))
        return self.run_file(playbook, check=check, diff=diff, extra_vars=extra_vars, env=env)

    def run_file(self, playbook, *, check=False, diff=False, extra_vars=None, env=None) -> PlaybookRun:
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        run_env = dict(os.environ)
        run_env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=REPO, check=False)
        return parse_json_callback(proc)


def parse_json_callback(proc) -> PlaybookRun:
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible-playbook printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    results = []
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            for _host, res in task.get("hosts", {}).items():
                results.append((task["task"]["name"], res))
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results, doc.get("stats", {}))


@pytest.fixture
def ansible(tmp_path) -> Ansible:
    return Ansible(tmp_path)


# ---------------------------------------------------------------- audit-log write counting
# Reviews (TokenReview, SelfSubjectAccessReview, ...) are POSTs the audit log records as
# "create", but nothing is stored: they are reads in effect and modules may make them on
# every run. Everything else a client creates, updates, patches or deletes is a write,
# including a TokenRequest (it mints a credential).
REVIEW_GROUPS = frozenset({"authentication.k8s.io", "authorization.k8s.io"})


class AuditLog:
    """Counts the writes a cluster received, reliably: see :meth:`writes_since`."""

    def __init__(self, cluster):
        self.cluster = cluster

    @staticmethod
    def now():
        from datetime import datetime, timezone  # pylint: disable=import-outside-toplevel
        return datetime.now(timezone.utc)

    def writes_since(self, since, *, namespaces=(), names=(), timeout=10.0):
        """Stored writes received since ``since`` (an aware datetime), excluding reviews.

        With ``namespaces`` or ``names``, only writes in those namespaces or to objects of
        those names count: the cluster may be the shared ``make sandbox`` one. The log is
        read once it has caught up (``prow_sandbox.kube.settled_audit_events``).
        """
        from prow_sandbox.kube import settled_audit_events  # pylint: disable=import-outside-toplevel

        def counted(event):
            ref = event.get("objectRef") or {}
            if ref.get("apiGroup") in REVIEW_GROUPS:
                return False
            if not (namespaces or names):
                return True
            return ref.get("namespace") in namespaces or ref.get("name") in names

        return [e for e in settled_audit_events(self.cluster, since=since, timeout=timeout) if counted(e)]

    @staticmethod
    def describe(events):
        """``verb resource[/subresource] namespace/name`` per event, for assertion messages."""
        out = []
        for event in events:
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            out.append(f"{event['verb']} {resource} {ref.get('namespace', '')}/{ref.get('name', '')}")
        return out


@pytest.fixture
def audit(kube_cluster) -> AuditLog:
    return AuditLog(kube_cluster)


# ---------------------------------------------------------------- GCP modules against the fake


@pytest.fixture
def operator_env(gcp):
    """gcp_env (below) plus the build project as the modules' default project (GCP_PROJECT)."""
    return dict(gcp_env(gcp), GCP_PROJECT=gcp.build_project)


# Token exchanges are POSTs the fake logs as writes, but they change no resource.
TOKEN_SERVICES = ("oauth2", "sts", "iamcredentials")


def gcp_writes(gcp, since=0):
    """State-changing API calls the fake logged since ``since`` (a mark), as 'METHOD path'."""
    return [f"{e['method']} {e['path']}" for e in gcp.fake.requests(since=since, writes_only=True)
            if e["service"] not in TOKEN_SERVICES]


# ---------------------------------------------------------------- the GCP fake
# Its fixtures (gcp_fake, gcp) until the sandbox's pytest plugin registers them itself.
from prow_sandbox.gcp.testing import gcp, gcp_fake  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


def gcp_env(gcp_handle, who="operator"):
    """Environment that points the collection's modules at the fake, as ``who``."""
    return {
        "GCP_AUTH_KIND": "serviceaccount",
        "GCP_SERVICE_ACCOUNT_FILE": str(gcp_handle.fake.credentials[who]),
        "GCP_API_ENDPOINTS": json.dumps(gcp_handle.endpoints),
    }


def put_secret(gcp_handle, project, secret_id, payload):
    """Create ``secret_id`` if needed and add a version with ``payload``; the version's name."""
    import base64  # pylint: disable=import-outside-toplevel

    session = gcp_handle.session()
    base = gcp_handle.url("secretmanager", f"/v1/projects/{project}/secrets")
    response = session.get(f"{base}/{secret_id}")
    if response.status_code == 404:
        session.post(base, params={"secretId": secret_id}, json={"replication": {"automatic": {}}}).raise_for_status()
    added = session.post(f"{base}/{secret_id}:addVersion", json={"payload": {"data": base64.b64encode(payload.encode()).decode()}})
    added.raise_for_status()
    return added.json()["name"]
