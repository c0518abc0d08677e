"""Secret Manager as the source of the current kubeconfig (ksa_token) and of members (composite_kubeconfig),
against the GCP fake; and the gke: connection through the fake's GKE API."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import gcp_env, put_secret
from kubernetes import client


@pytest.fixture
def sa(ansible, kube_cluster, kube_client, namespace):
    binding = f"{namespace}-crb"
    run = ansible.run([{"name": "sa", "prow.build_cluster.gke_admin_ksa": {
        "kubeconfig": str(kube_cluster.kubeconfig), "name": "prow-admin", "namespace": namespace, "binding_name": binding}}])
    assert run.failed == 0, run.stdout
    yield {"service_account": "prow-admin", "namespace": namespace}
    client.RbacAuthorizationV1Api(kube_client).delete_cluster_role_binding(binding)


def test_ksa_token_keeps_the_token_stored_in_secret_manager(ansible, kube_cluster, audit, sa, gcp, tmp_path):
    secret_id = gcp.unique("kubeconfig")
    secret = f"projects/{gcp.prow_project}/secrets/{secret_id}"
    task = {"name": "token", "no_log": True, "register": "token",
            "prow.build_cluster.ksa_token": {"kubeconfig": str(kube_cluster.kubeconfig), "alias": "build-team",
                                             "current": {"secret": secret}, "return_content": True, **sa}}
    # What a playbook would do next with secret_manager_secret; here the test stores it.
    save = {"name": "save", "ansible.builtin.copy": {"content": "{{ token.kubeconfig }}", "dest": "{{ out }}", "mode": "0600"},
            "no_log": True}
    summary = {"name": "summary", "ansible.builtin.debug": {
        "msg": "{{ {'rotated': token.rotated, 'reason': token.reason, 'fingerprint': token.fingerprint} }}"}}
    env = gcp_env(gcp)

    def run(out, check=False):
        return ansible.run([task, save, summary], check=check, env=env, extra_vars={"out": str(out)})

    # No secret yet (404): rotate.
    gcp_out = tmp_path / "returned.kubeconfig"
    first = run(gcp_out)
    assert first.failed == 0, first.stdout
    assert first.task("summary")["msg"]["rotated"] is True
    assert first.task("summary")["msg"]["reason"] == "no current kubeconfig"
    stored = gcp_out.read_text()
    put_secret(gcp, gcp.prow_project, secret_id, stored)
    token = yaml.safe_load(stored)["users"][0]["user"]["token"]

    for check_mode in (True, False):
        mark, since = gcp.mark(), audit.now()
        again = run(gcp_out, check=check_mode)
        assert again.task("summary")["msg"]["rotated"] is False, again.task("summary")
        assert again.task("summary")["msg"]["fingerprint"] == first.task("summary")["msg"]["fingerprint"]
        assert audit.writes_since(since, namespaces=(sa["namespace"],)) == []
        calls = gcp.fake.requests(since=mark, service="secretmanager")
        assert [(c["method"], c["write"]) for c in calls] == [("GET", False)], calls
        assert token not in again.stdout + again.stderr
    assert gcp_out.read_text() == stored, "the kept kubeconfig is returned byte for byte, so storing it again is a no-op"


def test_composite_members_from_secret_manager(ansible, tmp_path, gcp):
    def member(alias):
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": alias,
            "clusters": [{"name": alias, "cluster": {"server": f"https://{alias}.example", "certificate-authority-data": "Q0EK"}}],
            "users": [{"name": alias, "user": {"token": f"token-of-{alias}-0123456789"}}],
            "contexts": [{"name": alias, "context": {"cluster": alias, "user": alias}}],
        })

    ids = {alias: gcp.unique(f"kc-{alias}") for alias in ("default", "build-a")}
    for alias, secret_id in ids.items():
        put_secret(gcp, gcp.prow_project, secret_id, member(alias))
    put_secret(gcp, gcp.prow_project, ids["build-a"], "not: [yaml")  # a later, broken version
    dest = tmp_path / "composite"
    members = [{"secret": f"projects/{gcp.prow_project}/secrets/{ids['default']}"},
               {"secret": f"projects/{gcp.prow_project}/secrets/{ids['build-a']}/versions/1"}]
    tasks = [{"name": "merge", "prow.build_cluster.composite_kubeconfig": {"members": members, "dest": str(dest)}}]
    env = gcp_env(gcp)

    check = ansible.run(tasks, check=True, diff=True, env=env)
    assert check.task("merge")["changed"] is True, check.task("merge")
    assert not dest.exists()
    real = ansible.run(tasks, diff=True, env=env)
    assert real.task("merge")["changed"] is True
    assert [c["name"] for c in yaml.safe_load(dest.read_text())["contexts"]] == ["build-a", "default"]
    for check_mode in (True, False):
        mark = gcp.mark()
        again = ansible.run(tasks, check=check_mode, diff=True, env=env)
        assert again.task("merge")["changed"] is False
        assert not gcp.fake.requests(since=mark, service="secretmanager", writes_only=True)
    for run in (check, real):
        assert "token-of-" not in run.stdout + run.stderr

    # The latest version of build-a is broken: named in the error, before anything is written.
    members[1] = {"secret": f"projects/{gcp.prow_project}/secrets/{ids['build-a']}"}
    bad = ansible.run([{"name": "merge", "prow.build_cluster.composite_kubeconfig": {"members": members, "dest": str(tmp_path / "x")}}],
                      env=env).task("merge")
    assert bad["failed"] is True and f"secrets/{ids['build-a']}: not valid YAML" in bad["msg"], bad["msg"]
    missing = ansible.run([{"name": "merge", "prow.build_cluster.composite_kubeconfig": {
        "members": [{"secret": f"projects/{gcp.prow_project}/secrets/does-not-exist"}], "dest": str(tmp_path / "x")}}],
        env=env).task("merge")
    assert missing["failed"] is True and "no such secret" in missing["msg"]
    assert not (tmp_path / "x").exists()


def test_secret_manager_errors_carry_status_and_message(ansible, tmp_path, gcp):
    """A caller without access: the module reports the resource, the HTTP status and Google's message."""
    secret_id = gcp.unique("kc")
    put_secret(gcp, gcp.prow_project, secret_id, "apiVersion: v1")
    someone = next(who for who in gcp.fake.credentials if who.startswith("prow-crier@"))  # no Secret Manager role
    result = ansible.run([{"name": "merge", "prow.build_cluster.composite_kubeconfig": {
        "members": [{"secret": f"projects/{gcp.prow_project}/secrets/{secret_id}"}], "dest": str(tmp_path / "x")}}],
        env=gcp_env(gcp, someone)).task("merge")
    assert result["failed"] is True
    assert result["status"] == 403, json.dumps(result)
    assert f"secrets/{secret_id}/versions/latest" in result["msg"]


@pytest.mark.parametrize("action", ["disable", "destroy"])
def test_a_disabled_newest_version_is_no_usable_token(ansible, kube_cluster, sa, gcp, tmp_path, action):
    """versions/latest is the newest created version: disabled or destroyed by hand (say, to retire a
    leaked token), nobody reading latest gets it. ksa_token mints a new token, saying why, and
    secret_manager_secret stores it as the version that makes latest readable again."""
    secret_id = gcp.unique("kubeconfig")
    secret = f"projects/{gcp.prow_project}/secrets/{secret_id}"
    token_task = {"name": "token", "no_log": True, "register": "token",
                  "prow.build_cluster.ksa_token": {"kubeconfig": str(kube_cluster.kubeconfig), "alias": "build-team",
                                                   "current": {"secret": secret}, "return_content": True, **sa}}
    store = {"name": "store", "when": "token.rotated and token.kubeconfig is defined",
             "prow.build_cluster.secret_manager_secret": {"project": gcp.prow_project, "name": secret_id,
                                                          "payload": "{{ token.kubeconfig }}", "keep_versions": 2}}
    summary = {"name": "summary", "ansible.builtin.debug": {"msg": "{{ {'rotated': token.rotated, 'reason': token.reason} }}"}}
    env = gcp_env(gcp)
    tasks = [token_task, summary, store]
    assert ansible.run(tasks, env=env).task("summary")["msg"]["rotated"] is True  # version 1
    assert ansible.run(tasks, env=env).task("summary")["msg"]["rotated"] is False
    getattr(gcp.secretmanager(), f"{action}_secret_version")(name=f"{secret}/versions/1")
    state = "DISABLED" if action == "disable" else "DESTROYED"

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, env=env)
    assert check.failed == 0, check.stdout
    assert check.task("summary")["msg"] == {"rotated": True, "reason": f"the stored kubeconfig's version 1 is {state} (unreadable)"}
    assert not gcp.fake.requests(since=mark, service="secretmanager", writes_only=True)

    real = ansible.run(tasks, env=env)
    assert real.task("summary")["msg"]["rotated"] is True and real.task("store")["version"].endswith("/versions/2"), real.stdout
    stored = gcp.secretmanager().access_secret_version(name=f"{secret}/versions/latest").payload.data.decode()
    assert yaml.safe_load(stored)["contexts"][0]["name"] == "build-team"
    assert ansible.run(tasks, env=env).task("summary")["msg"]["rotated"] is False


def test_composite_names_a_disabled_newest_version_and_its_fix(ansible, tmp_path, gcp):
    secret_id = gcp.unique("kc")
    put_secret(gcp, gcp.prow_project, secret_id, "apiVersion: v1")
    put_secret(gcp, gcp.prow_project, secret_id, "apiVersion: v1")
    gcp.secretmanager().disable_secret_version(name=f"projects/{gcp.prow_project}/secrets/{secret_id}/versions/2")
    dest = tmp_path / "composite"
    result = ansible.run([{"name": "merge", "prow.build_cluster.composite_kubeconfig": {
        "members": [{"secret": f"projects/{gcp.prow_project}/secrets/{secret_id}"}], "dest": str(dest)}}],
        env=gcp_env(gcp)).task("merge")
    assert result["failed"] is True and result["status"] == 400 and result["reason"] == "FAILED_PRECONDITION", result
    assert f"secrets/{secret_id}/versions/2] is in DISABLED state" in result["msg"]
    assert "new version" in result["msg"]
    assert not dest.exists()
