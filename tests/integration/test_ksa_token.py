"""ksa_token against the sandbox apiserver: minting, idempotence, rotation reasons, using the result, bad input."""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from kubernetes import client

TASK = "token"
PROW_POD_VERBS = ("create", "delete", "list", "watch", "get", "patch")  # prow: RequiredTestPodVerbs


@pytest.fixture
def sa(ansible, kube_cluster, kube_client, namespace):
    """A ServiceAccount bound to cluster-admin (gke_admin_ksa), and its binding's cleanup."""
    binding = f"{namespace}-crb"
    run = ansible.run([{"name": "sa", "prow.build_cluster.gke_admin_ksa": {
        "kubeconfig": str(kube_cluster.kubeconfig), "name": "prow-admin", "namespace": namespace, "binding_name": binding}}])
    assert run.task("sa")["changed"] is True
    yield {"service_account": "prow-admin", "namespace": namespace}
    client.RbacAuthorizationV1Api(kube_client).delete_cluster_role_binding(binding)


def token_task(kube_cluster, **params):
    return [{"name": TASK, "prow.build_cluster.ksa_token": {"kubeconfig": str(kube_cluster.kubeconfig), **params}}]


def token_in(path):
    return yaml.safe_load(open(path, encoding="utf-8"))["users"][0]["user"]["token"]


def scope(sa):
    return {"namespaces": (sa["namespace"],)}


def bound_secrets(kube_client, sa):
    """Names of the Secrets ksa_token bound tokens of ``sa`` to, oldest first."""
    items = client.CoreV1Api(kube_client).list_namespaced_secret(
        sa["namespace"], label_selector="app.kubernetes.io/managed-by=prow.build_cluster.ksa_token").items
    return [s.metadata.name for s in sorted(items, key=lambda s: (s.metadata.creation_timestamp, s.metadata.name))
            if (s.metadata.annotations or {}).get("prow.build-cluster/service-account") == sa["service_account"]]


def authenticated(kube_client, token):
    """What the apiserver's TokenReview (authentication.k8s.io/v1) says: (authenticated, username)."""
    review = client.AuthenticationV1Api(kube_client).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    return bool(review.status.authenticated), (review.status.user.username if review.status.user else None)


def refused_within(kube_client, token, seconds=30):
    """Whether TokenReview refuses ``token`` within ``seconds``: the apiserver caches successful
    authentications for about 10 s, so a revocation shows once that cache expires."""
    deadline = time.monotonic() + seconds
    while authenticated(kube_client, token)[0]:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def test_check_real_check_real_and_the_kubeconfig_works(ansible, kube_cluster, kube_client, kubectl, audit, sa, tmp_path):
    dest = tmp_path / "build-team.kubeconfig"
    tasks = token_task(kube_cluster, alias="build-team", dest=str(dest), **sa)

    since = audit.now()
    check = ansible.run(tasks, check=True, diff=True)
    result = check.task(TASK)
    assert result["changed"] is True and result["rotated"] is True, result
    assert result["reason"] == "no current kubeconfig"
    assert result["fingerprint"] is None and result["expiration_timestamp"] is None
    assert not dest.exists()
    assert audit.writes_since(since, **scope(sa)) == [], "check mode must not mint"

    since = audit.now()
    real = ansible.run(tasks, diff=True)
    result = real.task(TASK)
    assert result["changed"] is True and result["rotated"] is True, result
    writes = audit.writes_since(since, **scope(sa))
    # The Secret the token is bound to (generateName: the audit log has no name for it), then the token.
    assert audit.describe(writes) == [f"create secrets {sa['namespace']}/", f"create serviceaccounts/token {sa['namespace']}/prow-admin"]
    assert result["bound_secret"].startswith("prow-admin-token-") and bound_secrets(kube_client, sa) == [result["bound_secret"]]
    # Owned by the ServiceAccount: deleting that by hand takes its token Secrets along (garbage collector).
    owners = client.CoreV1Api(kube_client).read_namespaced_secret(result["bound_secret"], sa["namespace"]).metadata.owner_references
    account = client.CoreV1Api(kube_client).read_namespaced_service_account("prow-admin", sa["namespace"])
    assert [(o.kind, o.name, o.uid) for o in owners] == [("ServiceAccount", "prow-admin", account.metadata.uid)]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    token = token_in(dest)
    # The expiry is the one the server granted: 48h from now, give or take the run's duration.
    expiry = datetime.fromisoformat(result["expiration_timestamp"])
    assert abs(expiry - (datetime.now(timezone.utc) + timedelta(hours=48))) < timedelta(minutes=2)
    assert result["service_account"] == f"system:serviceaccount:{sa['namespace']}:prow-admin"
    config = yaml.safe_load(dest.read_text())
    assert config["current-context"] == "build-team"
    assert config["clusters"][0] == {"name": "build-team", "cluster": {
        "server": kube_cluster.server, "certificate-authority-data": kube_cluster.ca_data}}
    mtime = dest.stat().st_mtime_ns

    for check_mode in (True, False):
        since = audit.now()
        again = ansible.run(tasks, check=check_mode, diff=True)
        result = again.task(TASK)
        assert result["changed"] is False and result["rotated"] is False, result
        assert result["reason"] is None
        assert result["fingerprint"] == real.task(TASK)["fingerprint"]
        assert audit.writes_since(since, **scope(sa)) == [], f"re-run (check={check_mode}) must not write"
        assert token not in again.stdout + again.stderr
    assert dest.stat().st_mtime_ns == mtime

    for run in (check, real):
        assert token not in run.stdout + run.stderr
    assert real.task(TASK)["diff"]["after"]["token"].startswith("sha256:")

    # The kubeconfig works for what Prow does: list pods everywhere, and every pod verb in test-pods.
    kubectl("get", "pods", "--all-namespaces", kubeconfig=dest)
    for verb in PROW_POD_VERBS:
        answer = kubectl("auth", "can-i", verb, "pods", "--namespace", "test-pods", kubeconfig=dest, check=False)
        assert answer.stdout.strip() == "yes", (verb, answer.stdout, answer.stderr)
    whoami = kubectl("auth", "whoami", "-o", "json", kubeconfig=dest)
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{sa['namespace']}:prow-admin"


def test_least_privilege_role_gives_exactly_prows_pod_verbs(ansible, kube_cluster, kube_client, kubectl, namespace, tmp_path):
    rbac = client.RbacAuthorizationV1Api(kube_client)
    role = f"{namespace}-pods"
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=role), rules=[
        client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=list(PROW_POD_VERBS))]))
    dest = tmp_path / "kc"
    try:
        run = ansible.run([
            {"name": "sa", "prow.build_cluster.gke_admin_ksa": {
                "kubeconfig": str(kube_cluster.kubeconfig), "name": "prow", "namespace": namespace,
                "binding_name": role, "cluster_role": role}},
            *token_task(kube_cluster, alias="default", dest=str(dest), service_account="prow", namespace=namespace),
        ])
        assert run.failed == 0, run.stdout
        for verb in PROW_POD_VERBS:
            assert kubectl("auth", "can-i", verb, "pods", "-n", "test-pods", kubeconfig=dest, check=False).stdout.strip() == "yes"
        assert kubectl("auth", "can-i", "get", "secrets", "-n", "test-pods", kubeconfig=dest, check=False).stdout.strip() == "no"
    finally:
        rbac.delete_cluster_role_binding(role)
        rbac.delete_cluster_role(role)


def test_rotates_within_rotate_before_and_on_force(ansible, kube_cluster, audit, sa, tmp_path):
    dest = tmp_path / "kc"
    first = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), duration="1h", rotate_before="30m", **sa))
    assert first.task(TASK)["rotated"] is True
    old = token_in(dest)

    # Kept: 1h left, rotate_before 30m.
    assert ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), duration="1h", rotate_before="30m", **sa)
                       ).task(TASK)["rotated"] is False
    # Rotated: 1h left is within a 2h rotate_before.
    run = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), duration="3h", rotate_before="2h", **sa))
    result = run.task(TASK)
    assert result["rotated"] is True and "within rotate_before" in result["reason"], result
    assert token_in(dest) != old
    assert abs(datetime.fromisoformat(result["expiration_timestamp"]) - (datetime.now(timezone.utc) + timedelta(hours=3))) < timedelta(minutes=2)

    since = audit.now()
    forced = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), force=True, **sa), check=True)
    assert forced.task(TASK)["rotated"] is True and forced.task(TASK)["reason"] == "force: true"
    assert audit.writes_since(since, **scope(sa)) == []


def test_revoked_token_is_rotated_by_token_review(ansible, kube_cluster, kube_client, sa, tmp_path):
    dest = tmp_path / "kc"
    tasks = token_task(kube_cluster, alias="default", dest=str(dest), **sa)
    ansible.run(tasks)
    # Re-creating the ServiceAccount gives it a new UID: tokens bound to the old one stop working.
    core = client.CoreV1Api(kube_client)
    core.delete_namespaced_service_account(sa["service_account"], sa["namespace"])
    core.create_namespaced_service_account(sa["namespace"], client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa["service_account"])))
    # The apiserver caches successful authentications for about 10 s (and ksa_token reviewed
    # this token right after minting it), so the revocation shows after that cache expires.
    deadline = time.monotonic() + 30
    while True:
        check = ansible.run(tasks, check=True)
        if check.task(TASK)["rotated"] or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert check.task(TASK)["rotated"] is True
    assert check.task(TASK)["reason"].startswith("the API server rejects the token"), check.task(TASK)["reason"]
    assert ansible.run(tasks).task(TASK)["rotated"] is True
    assert ansible.run(tasks).task(TASK)["rotated"] is False


def test_current_from_inline_content_for_another_alias_or_service_account(ansible, kube_cluster, sa, tmp_path, namespace):
    dest = tmp_path / "kc"
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa))
    content = dest.read_text()
    token = token_in(dest)

    run = ansible.run(token_task(kube_cluster, alias="default", current={"content": content}, return_content=True, **sa))
    # return_content without no_log is refused, before any call.
    assert run.task(TASK)["failed"] is True
    assert "set no_log: true" in run.task(TASK)["msg"]

    tasks = [{**token_task(kube_cluster, alias="default", current={"content": content}, return_content=True, **sa)[0],
              "no_log": True, "register": "token_out"},
             {"name": "copy", "ansible.builtin.copy": {"content": "{{ token_out.kubeconfig }}", "dest": str(tmp_path / "copy"), "mode": "0600"},
              "no_log": True}]
    run = ansible.run(tasks)
    assert run.failed == 0, run.stdout
    assert yaml.safe_load((tmp_path / "copy").read_text()) == yaml.safe_load(content), "the registered kubeconfig is the real one"
    assert token not in run.stdout + run.stderr

    other = ansible.run(token_task(kube_cluster, alias="build-x", current={"content": content}, return_content=True, **sa), check=True)
    assert other.task(TASK)["failed"] is True  # still needs no_log, even in check mode
    other = ansible.run([dict(token_task(kube_cluster, alias="build-x", current={"content": content}, dest=str(tmp_path / "x"), **sa)[0])],
                        check=True)
    assert other.task(TASK)["reason"] == "the current kubeconfig has no context 'build-x'"
    renamed = ansible.run(token_task(kube_cluster, alias="default", current={"content": content}, dest=str(tmp_path / "y"),
                                     service_account="someone-else", namespace=namespace), check=True)
    assert renamed.task(TASK)["reason"].startswith("the token authenticates as system:serviceaccount:"), renamed.task(TASK)


@pytest.mark.slow
def test_token_of_another_cluster_is_rotated(ansible, kube_cluster, sa, tmp_path, tmp_path_factory):
    """A kubeconfig pointing at this cluster but holding another cluster's token: TokenReview says no."""
    from prow_sandbox import kube  # pylint: disable=import-outside-toplevel

    name = f"other-{os.getpid()}"
    other = kube.start_cluster(name, tmp_path_factory.mktemp("other-state"))
    try:
        theirs = tmp_path / "theirs"
        run = ansible.run([
            {"name": "sa", "prow.build_cluster.gke_admin_ksa": {"kubeconfig": str(other.kubeconfig), "name": "x", "binding_name": "x"}},
            {"name": TASK, "prow.build_cluster.ksa_token": {"kubeconfig": str(other.kubeconfig), "alias": "default",
                                                            "service_account": "x", "dest": str(theirs)}},
        ])
        assert run.failed == 0, run.stdout
        foreign = yaml.safe_load(theirs.read_text())
        # Same alias, same server and CA as ours: only the token is foreign.
        foreign["clusters"][0]["cluster"] = {"server": kube_cluster.server, "certificate-authority-data": kube_cluster.ca_data}
        dest = tmp_path / "ours"
        dest.write_text(yaml.safe_dump(foreign))
        dest.chmod(0o600)
        result = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa), check=True).task(TASK)
        assert result["rotated"] is True
        assert result["reason"].startswith("the API server rejects the token"), result["reason"]

        # And a kubeconfig of the other cluster as a whole: it points elsewhere, no call needed to tell.
        result = ansible.run(token_task(kube_cluster, alias="default", current={"path": str(theirs)}, dest=str(tmp_path / "z"), **sa),
                             check=True).task(TASK)
        assert result["reason"] == f"context 'default' points at {other.server}, not {kube_cluster.server}"
    finally:
        kube.stop_cluster(name, other.dir.parent.parent)


def test_rotation_then_revoke_others_refuses_the_old_token_and_keeps_the_new(ansible, kube_cluster, kube_client, audit, sa, tmp_path):
    dest = tmp_path / "kc"
    first = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa)).task(TASK)
    old, old_secret = token_in(dest), first["bound_secret"]
    rotated = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), force=True, **sa)).task(TASK)
    new, new_secret = token_in(dest), rotated["bound_secret"]
    assert new != old and new_secret != old_secret
    assert bound_secrets(kube_client, sa) == [old_secret, new_secret]
    user = f"system:serviceaccount:{sa['namespace']}:prow-admin"
    # Published but not revoked yet: both tokens work (Prow may still hold the old one).
    assert authenticated(kube_client, old) == (True, user) and authenticated(kube_client, new) == (True, user)

    revoke = token_task(kube_cluster, alias="default", dest=str(dest), state="revoke_others", **sa)
    since = audit.now()
    check = ansible.run(revoke, check=True, diff=True).task(TASK)
    assert check["changed"] is True and check["revoked"] == [old_secret] and check["kept"] == new_secret, check
    assert audit.writes_since(since, **scope(sa)) == [], "check mode must not revoke"
    assert authenticated(kube_client, old)[0] is True

    since = audit.now()
    real = ansible.run(revoke, diff=True)
    result = real.task(TASK)
    assert result["changed"] is True and result["revoked"] == [old_secret], result
    assert result["diff"] == {"before": {"bound_secrets": [old_secret, new_secret]}, "after": {"bound_secrets": [new_secret]}}
    assert audit.describe(audit.writes_since(since, **scope(sa))) == [f"delete secrets {sa['namespace']}/{old_secret}"]
    assert old not in real.stdout + real.stderr and new not in real.stdout + real.stderr
    assert refused_within(kube_client, old), "the revoked token still authenticates"
    assert authenticated(kube_client, new) == (True, user)

    # Re-runs: nothing to revoke, nothing to mint, no write.
    since = audit.now()
    for tasks in (revoke, token_task(kube_cluster, alias="default", dest=str(dest), **sa)):
        for check_mode in (True, False):
            again = ansible.run(tasks, check=check_mode).task(TASK)
            assert again["changed"] is False, again
    assert audit.writes_since(since, **scope(sa)) == []
    assert token_in(dest) == new


def test_revoke_after_keeps_the_old_token_until_the_new_one_is_that_old(ansible, kube_cluster, kube_client, audit, sa, tmp_path):
    dest = tmp_path / "kc"
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa))
    old = token_in(dest)
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), force=True, **sa))
    old_secret, new_secret = bound_secrets(kube_client, sa)
    since = audit.now()
    kept = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), state="revoke_others", revoke_after="1h", **sa))
    result = kept.task(TASK)
    assert result["changed"] is False and result["revoked"] == [] and result["pending"] == [old_secret], result
    assert audit.writes_since(since, **scope(sa)) == []
    assert authenticated(kube_client, old)[0] is True
    # The partner: a few seconds are enough with revoke_after 2s.
    time.sleep(3)
    result = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), state="revoke_others", revoke_after="2s", **sa)).task(TASK)
    assert result["changed"] is True and result["revoked"] == [old_secret], result
    assert bound_secrets(kube_client, sa) == [new_secret]
    assert refused_within(kube_client, old)


def test_a_token_minted_but_never_published_is_revoked_and_the_published_one_kept(ansible, kube_cluster, kube_client, sa, tmp_path):
    """A run that minted but failed before publishing: the published kubeconfig still holds the
    first token; the next revoke_others removes the unpublished one, not the published one."""
    published = tmp_path / "published"
    ansible.run(token_task(kube_cluster, alias="default", dest=str(published), **sa))
    ansible.run(token_task(kube_cluster, alias="default", dest=str(tmp_path / "lost"), **sa))
    lost = token_in(tmp_path / "lost")
    first, second = bound_secrets(kube_client, sa)
    result = ansible.run(token_task(kube_cluster, alias="default", current={"path": str(published)}, dest=str(published),
                                    state="revoke_others", **sa)).task(TASK)
    assert result["revoked"] == [second] and result["kept"] == first, result
    assert refused_within(kube_client, lost)
    assert authenticated(kube_client, token_in(published))[0] is True


def test_absent_revokes_every_token_and_revoke_others_then_refuses(ansible, kube_cluster, kube_client, audit, sa, tmp_path):
    dest = tmp_path / "kc"
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa))
    old = token_in(dest)
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), force=True, **sa))
    new = token_in(dest)
    secrets = bound_secrets(kube_client, sa)
    absent = [{"name": TASK, "prow.build_cluster.ksa_token": {"kubeconfig": str(kube_cluster.kubeconfig), "state": "absent", **sa}}]

    since = audit.now()
    check = ansible.run(absent, check=True).task(TASK)
    assert check["changed"] is True and check["revoked"] == secrets, check
    assert audit.writes_since(since, **scope(sa)) == []
    assert authenticated(kube_client, new)[0] is True

    result = ansible.run(absent).task(TASK)
    assert result["changed"] is True and result["revoked"] == secrets, result
    assert bound_secrets(kube_client, sa) == []
    assert refused_within(kube_client, old) and refused_within(kube_client, new)
    since = audit.now()
    assert ansible.run(absent).task(TASK)["changed"] is False
    assert audit.writes_since(since, **scope(sa)) == []

    # Nothing published works any more: revoke_others refuses (a real run fails, check mode says no change).
    revoke = token_task(kube_cluster, alias="default", dest=str(dest), state="revoke_others", **sa)
    refused = ansible.run(revoke).task(TASK)
    assert refused["failed"] is True and "nothing revoked: the published token cannot be kept" in refused["msg"], refused
    assert ansible.run(revoke, check=True).task(TASK)["changed"] is False
    # And the next present run mints a new, bound token.
    assert ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa)).task(TASK)["rotated"] is True
    assert len(bound_secrets(kube_client, sa)) == 1


def test_a_token_bound_to_no_secret_is_rotated(ansible, kube_cluster, kube_client, sa, tmp_path):
    """A token minted before bound tokens (or by hand) cannot be revoked: it is replaced by a bound one."""
    dest = tmp_path / "kc"
    ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa))
    config = yaml.safe_load(dest.read_text())
    unbound = client.CoreV1Api(kube_client).create_namespaced_service_account_token(
        sa["service_account"], sa["namespace"], client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=48 * 3600))).status.token
    config["users"][0]["user"]["token"] = unbound
    dest.write_text(yaml.safe_dump(config))
    result = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa), check=True).task(TASK)
    assert result["rotated"] is True and result["reason"] == "the token is not bound to a Secret, so it could not be revoked", result
    # The partner: a bound token in the same kubeconfig is kept.
    assert ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa)).task(TASK)["rotated"] is True
    assert ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa)).task(TASK)["rotated"] is False


@pytest.mark.parametrize(("params", "message"), [
    ({"duration": "72h", "platform": "gke"}, "duration 72h exceeds 48h, the longest token GKE grants"),
    ({"duration": "72h", "gke": "projects/p/locations/l/clusters/c", "kubeconfig": None},
     "duration 72h exceeds 48h, the longest token GKE grants"),
    ({"namespace": "Test_Pods"}, "namespace 'Test_Pods' is not a valid name"),
    ({"duration": "5m"}, "shorter than 10m"),
    ({"duration": "2 days"}, "duration: invalid duration '2 days'"),
    ({"rotate_before": "48h"}, "rotate_before (48h) must be shorter than duration (48h)"),
    ({"alias": "build/team"}, "alias 'build/team' is not usable"),
    ({"dest": None}, "set dest, or return_content: true"),
    ({"current": {"secret": "my-secret"}}, "current: secret 'my-secret' is not of the form projects/PROJECT/secrets/SECRET"),
    ({"state": "revoke_others", "revoke_after": "soon"}, "revoke_after: invalid duration 'soon'"),
    ({"state": "revoke_others", "alias": None}, "alias is required with state revoke_others"),
])
def test_bad_input_fails_before_any_call(ansible, kube_cluster, audit, sa, tmp_path, params, message):
    args = {"kubeconfig": str(kube_cluster.kubeconfig), "alias": "default", "dest": str(tmp_path / "kc"), **sa, **params}
    since = audit.now()
    # No GCP endpoints are configured: a call to the GKE API would fail differently (and slowly).
    run = ansible.run([{"name": TASK, "prow.build_cluster.ksa_token": {k: v for k, v in args.items() if v is not None}}],
                      env={"GCP_API_ENDPOINTS": json.dumps({"container": "http://127.0.0.1:9"})})
    result = run.task(TASK)
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert audit.writes_since(since, **scope(sa)) == []
    assert not (tmp_path / "kc").exists()


def test_duration_over_48h_is_fine_off_gke_and_the_granted_expiry_is_reported(ansible, kube_cluster, sa, tmp_path):
    result = ansible.run(token_task(kube_cluster, alias="default", dest=str(tmp_path / "kc"), duration="72h", **sa)).task(TASK)
    assert result["rotated"] is True, result
    assert abs(datetime.fromisoformat(result["expiration_timestamp"]) - (datetime.now(timezone.utc) + timedelta(hours=72))) < timedelta(minutes=2)


def test_not_a_kubeconfig_in_dest_fails_unless_forced(ansible, kube_cluster, audit, sa, tmp_path):
    dest = tmp_path / "kc"
    dest.write_text("users: [")
    since = audit.now()
    result = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), **sa)).task(TASK)
    assert result["failed"] is True and "not valid YAML" in result["msg"] and "force: true" in result["msg"]
    assert audit.writes_since(since, **scope(sa)) == []
    result = ansible.run(token_task(kube_cluster, alias="default", dest=str(dest), force=True, **sa)).task(TASK)
    assert result["rotated"] is True
    assert yaml.safe_load(dest.read_text())["current-context"] == "default"
