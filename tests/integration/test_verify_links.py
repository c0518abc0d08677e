"""verify.yml can fail at every link: each test breaks one link of an onboarded sandbox and
expects verify to fail naming that link and its fix, having written nothing.

One onboarding for the module (test_playbooks' fixtures, its own sandbox: these tests break
it); each test breaks one thing, runs ``playbooks/verify.yml`` as a user does, and mends
what it broke so that the next test starts from a cluster verify passes on. Breaking is done
as someone else would: the operator through the fake's Google APIs, an admin through the
build cluster's API.

"Nothing written": the fake's request log has no write (token exchanges are not writes), and
no cluster received a write besides the job KSA's TokenRequest, which mints the short-lived
token the Workload Identity chain starts with and stores nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from datetime import datetime, timezone

import jwt
import pytest
import yaml
from conftest import parse_json_callback
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from prow_sandbox.kube import list_clusters
# The product's sandbox and onboarding, shared with the playbook tests (a module-scoped
# sandbox each: the fixtures are registered in this module by importing them).
from test_playbooks import (  # noqa: F401  pylint: disable=unused-import
    BIN, VARS, fixture_onboarded, fixture_sandbox, gcp_writes, kube_writes, playbook,
)

ALIAS = "build-sandbox"
BUILD_PROJECT = "prow-sandbox-build"
POOL = f"{BUILD_PROJECT}.svc.id.goog"
KSA = "prowjob-default-sa"
GSA = f"{KSA}@{BUILD_PROJECT}.iam.gserviceaccount.com"
BUCKET = "prow-sandbox-results"
SECRET = f"projects/prow-sandbox-prow/secrets/prow_build_cluster_kubeconfig_{ALIAS}"
ADMIN_KSA = ("default", "serviceaccount-cluster-admin")
ADMIN_CRB = "serviceaccount-cluster-admin-crb"
TOKEN_REQUEST = f"create /api/v1/namespaces/test-pods/serviceaccounts/{KSA}/token"


class Sandbox:
    """The onboarded sandbox, as an operator (Google APIs) and a cluster admin see it."""

    def __init__(self, state, env):
        self.state, self.env = state, env
        with open(env["GCP_API_ENDPOINTS"], encoding="utf-8") as handle:
            self.endpoints = json.load(handle)
        creds = service_account.Credentials.from_service_account_file(
            env["GOOGLE_APPLICATION_CREDENTIALS"], scopes=["https://www.googleapis.com/auth/cloud-platform"])
        self.google = AuthorizedSession(creds)
        self.operator = f"serviceAccount:{creds.service_account_email}"
        composite = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
        server = next(c["cluster"]["server"] for c in composite["clusters"] if c["name"] == ALIAS)
        self.build = next(c for c in list_clusters(state) if c.server == server)

    def call(self, method, service, path, body=None):
        response = self.google.request(method, self.endpoints[service] + path, json=body)
        response.raise_for_status()
        return response.json() if response.content else {}

    def kubectl(self, *args, stdin=None):
        """kubectl on the build cluster as its admin (system:masters), not as Prow's token."""
        return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(self.build.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, check=True).stdout

    # -- the stored kubeconfig (Secret Manager)
    def stored_text(self):
        data = self.call("GET", "secretmanager", f"/v1/{SECRET}/versions/latest:access")["payload"]["data"]
        return base64.b64decode(data).decode()

    def store(self, text):
        """Add a version: what consumers read (the newest version) from now on."""
        return self.call("POST", "secretmanager", f"/v1/{SECRET}:addVersion",
                         {"payload": {"data": base64.b64encode(text.encode()).decode()}})["name"]

    def newest_version(self):
        versions = self.call("GET", "secretmanager", f"/v1/{SECRET}/versions")["versions"]
        return max(versions, key=lambda v: int(v["name"].rsplit("/", 1)[1]))

    # -- IAM policies (read, changed, written back with their etag)
    def bucket_policy(self, change):
        path = f"/storage/v1/b/{BUCKET}/iam"
        policy = self.call("GET", "storage", path)
        change(policy)
        self.call("PUT", "storage", path, policy)

    def gsa_policy(self, change):
        path = f"/v1/projects/{BUILD_PROJECT}/serviceAccounts/{GSA}"
        policy = self.call("POST", "iam", f"{path}:getIamPolicy", {})
        change(policy)
        self.call("POST", "iam", f"{path}:setIamPolicy", {"policy": policy})

    def gcp_log(self, since):
        lines = (self.state / "gcp" / "requests.jsonl").read_text().splitlines()
        # The log's times are cut to milliseconds: a request the test made just before ``since``
        # can carry the same millisecond, so only later ones count (verify's own calls come
        # a whole ansible-playbook start later).
        return [e for e in map(json.loads, lines) if e["time"] > since.isoformat(timespec="milliseconds")]


def without(role, member):
    return lambda policy: next(b for b in policy["bindings"] if b["role"] == role)["members"].remove(member)


def with_(role, member):
    def add(policy):
        bindings = policy.setdefault("bindings", [])
        binding = next((b for b in bindings if b["role"] == role), None)
        if binding is None:  # the last member's removal removed the binding
            bindings.append(binding := {"role": role, "members": []})
        binding["members"].append(member)
    return add


def verify(sandbox, *args):
    """verify.yml as a user runs it; its JSON callback output parsed, plus its default output."""
    run = playbook(dict(sandbox.env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"), "verify.yml", "-e", f"@{VARS}", *args)
    parsed = parse_json_callback(run)
    result = parsed.task(f"prow.build_cluster.credentials : Verify {ALIAS}")
    # The report a user reads: one line per link, also when verify failed.
    result["report"] = [item["msg"] for item in parsed.task(f"prow.build_cluster.credentials : Report {ALIAS}")["results"]]
    return parsed, result


@pytest.fixture(scope="module", name="sandbox")
def fixture_verify_sandbox(onboarded):
    state, env, _first = onboarded
    return Sandbox(state, env)


def expect_broken(sandbox, link, *fix_words):
    """Run verify: it must fail at ``link`` (the first broken link of its chain), name a fix
    with ``fix_words``, and write nothing."""
    since = datetime.now(timezone.utc)
    parsed, result = verify(sandbox)
    assert parsed.returncode != 0 and result.get("failed"), result
    broken = [c for c in result["checks"] if c["ok"] is False]
    assert [c["link"] for c in broken] == [link], result["checks"]
    for word in fix_words:
        assert word in broken[0]["fix"], broken[0]
    assert f"{link}: " in result["msg"] and broken[0]["fix"] in result["msg"], result["msg"]
    assert f"BROKEN {link}: {broken[0]['detail']} -- fix: {broken[0]['fix']}" in result["report"], result["report"]
    # A refused write (the probe upload the GSA may not make) wrote nothing: only accepted ones count.
    assert [f"{e['method']} {e['path']}" for e in sandbox.gcp_log(since) if e["write"] and e["status"] < 400] == []
    assert [w for w in kube_writes(sandbox.state, since) if not w.endswith(TOKEN_REQUEST)] == []
    return broken[0]


def test_verify_passes_on_an_onboarded_cluster_and_its_only_write_is_the_probe(sandbox):
    since = datetime.now(timezone.utc)
    parsed, result = verify(sandbox)
    assert parsed.returncode == 0, result
    assert [c["link"] for c in result["checks"] if c["ok"]] == [
        "stored kubeconfig", "token", "permissions", "expiry",
        "job KSA", "STS exchange", "impersonation", "bucket write"]
    # The write counters see the probe: written and deleted by the job GSA, nothing else.
    writes = gcp_writes(sandbox.state, since)
    assert [w.split(" ")[0] for w in writes] == ["POST", "DELETE"], writes
    assert writes[0].endswith(f"/upload/storage/v1/b/{BUCKET}/o") and f"/storage/v1/b/{BUCKET}/o/" in writes[1], writes
    by = {e["principal"] for e in sandbox.gcp_log(since) if e["service"] == "storage" and e["write"]}
    assert by == {f"serviceAccount:{GSA}"}, by
    assert sandbox.call("GET", "storage", f"/storage/v1/b/{BUCKET}/o").get("items", []) == []


def test_check_mode_skips_only_the_write_and_says_so(sandbox):
    since = datetime.now(timezone.utc)
    parsed, result = verify(sandbox, "--check")
    assert parsed.returncode == 0, result
    assert result["checks"][-1] == {"link": "bucket write", "ok": None, "detail": "not written in check mode", "fix": None}
    assert result["report"][-1] == "not checked bucket write: not written in check mode"
    assert all(c["ok"] for c in result["checks"][:-1]), result["checks"]
    assert gcp_writes(sandbox.state, since) == []


def test_bucket_binding_removed(sandbox):
    binding = ("roles/storage.objectAdmin", f"serviceAccount:{GSA}")
    sandbox.bucket_policy(without(*binding))
    since = datetime.now(timezone.utc)
    try:
        broken = expect_broken(sandbox, "bucket write", *binding, f"gs://{BUCKET}")
        assert "403" in broken["detail"], broken
        refused = [e for e in sandbox.gcp_log(since) if e["write"]]
        assert [(e["method"], e["principal"], e["status"]) for e in refused] == [("POST", f"serviceAccount:{GSA}", 403)], refused
    finally:
        sandbox.bucket_policy(with_(*binding))


def test_bucket_role_that_cannot_delete(sandbox):
    # objectCreator writes new objects but cannot delete (nor overwrite) them: the link is
    # broken, and the probe the GSA left is deleted by the operator, so no object remains.
    admin = ("roles/storage.objectAdmin", f"serviceAccount:{GSA}")
    creator = ("roles/storage.objectCreator", f"serviceAccount:{GSA}")
    sandbox.bucket_policy(lambda policy: (without(*admin)(policy), with_(*creator)(policy)))
    since = datetime.now(timezone.utc)
    try:
        _parsed, result = verify(sandbox)
        broken = [c for c in result["checks"] if c["ok"] is False]
        assert [c["link"] for c in broken] == ["bucket write"], result["checks"]
        assert "cannot delete it (the operator deleted the probe)" in broken[0]["detail"], broken
        assert "roles/storage.objectAdmin" in broken[0]["fix"], broken
        accepted = [(e["method"], e["principal"]) for e in sandbox.gcp_log(since) if e["write"] and e["status"] < 400]
        assert accepted == [("POST", f"serviceAccount:{GSA}"), ("DELETE", sandbox.operator)], accepted
        assert sandbox.call("GET", "storage", f"/storage/v1/b/{BUCKET}/o").get("items", []) == []
    finally:
        sandbox.bucket_policy(lambda policy: (without(*creator)(policy), with_(*admin)(policy)))


def test_workload_identity_user_removed(sandbox):
    binding = ("roles/iam.workloadIdentityUser", f"serviceAccount:{POOL}[test-pods/{KSA}]")
    sandbox.gsa_policy(without(*binding))
    try:
        expect_broken(sandbox, "impersonation", *binding, GSA)
    finally:
        sandbox.gsa_policy(with_(*binding))


def test_ksa_annotated_with_another_gsa(sandbox):
    other = f"someone-else@{BUILD_PROJECT}.iam.gserviceaccount.com"
    annotate = ("-n", "test-pods", "annotate", "--overwrite", "serviceaccount", KSA)
    sandbox.kubectl(*annotate, f"iam.gke.io/gcp-service-account={other}")
    try:
        broken = expect_broken(sandbox, "job KSA", "iam.gke.io/gcp-service-account", GSA)
        assert other in broken["detail"], broken
    finally:
        sandbox.kubectl(*annotate, f"iam.gke.io/gcp-service-account={GSA}")


def test_admin_cluster_role_binding_removed(sandbox):
    saved = json.loads(sandbox.kubectl("get", "clusterrolebinding", ADMIN_CRB, "-o", "json"))
    sandbox.kubectl("delete", "clusterrolebinding", ADMIN_CRB)
    try:
        expect_broken(sandbox, "permissions", "cluster-admin")
    finally:
        saved["metadata"] = {"name": ADMIN_CRB, "labels": saved["metadata"].get("labels", {})}
        sandbox.kubectl("create", "-f", "-", stdin=json.dumps(saved))


def test_stored_token_expired(sandbox):
    # The stored token, re-issued by the cluster's own signing key with its lifetime in the
    # past: the same ServiceAccount's credential, expired an hour ago.
    original = sandbox.stored_text()
    config = yaml.safe_load(original)
    user = next(u for u in config["users"] if u["name"] == next(
        c["context"]["user"] for c in config["contexts"] if c["name"] == ALIAS))["user"]
    claims = jwt.decode(user["token"], options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    key = (sandbox.build.dir / "pki" / "sa.key").read_bytes()
    user["token"] = jwt.encode(claims, key, algorithm="RS256", headers={"kid": jwt.get_unverified_header(user["token"])["kid"]})
    sandbox.store(yaml.safe_dump(config))
    try:
        broken = expect_broken(sandbox, "token", "rotate.yml")
        assert "expired at" in broken["detail"], broken
    finally:
        sandbox.store(original)


def test_newest_secret_version_disabled(sandbox):
    # What consumers read as `latest` is the newest version, whatever its state (Secret
    # Manager then refuses to serve it): verify must not prove an older one instead.
    sandbox.store(sandbox.stored_text())  # an enabled older version holds the same kubeconfig
    newest = sandbox.newest_version()["name"]
    sandbox.call("POST", "secretmanager", f"/v1/{newest}:disable", {})
    try:
        broken = expect_broken(sandbox, "stored kubeconfig", "enable", "rotate.yml")
        assert newest.rsplit("/", 1)[1] in broken["detail"] and "DISABLED" in broken["detail"], broken
    finally:
        sandbox.call("POST", "secretmanager", f"/v1/{newest}:enable", {})


def test_admin_service_account_deleted_and_onboarding_mends_it(sandbox):
    # Last: deleting the ServiceAccount revokes its tokens for good; the fix verify names
    # (onboarding again) must make verify pass again.
    sandbox.kubectl("-n", ADMIN_KSA[0], "delete", "serviceaccount", ADMIN_KSA[1])
    # The apiserver caches a successful authentication for about 10 s (the tests before this
    # one reviewed the same token), so the deletion shows once that cache entry expires.
    deadline = time.monotonic() + 30
    while verify(sandbox)[0].returncode == 0 and time.monotonic() < deadline:
        time.sleep(2)
    broken = expect_broken(sandbox, "token", "onboard.yml")
    assert f"ServiceAccount {ADMIN_KSA[0]}/{ADMIN_KSA[1]} no longer exists" in broken["detail"], broken
    mended = playbook(sandbox.env, "onboard.yml", "-e", f"@{VARS}")
    assert mended.returncode == 0, mended.stdout[-4000:]
    parsed, result = verify(sandbox)
    assert parsed.returncode == 0, result
