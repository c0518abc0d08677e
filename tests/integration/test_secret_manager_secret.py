"""secret_manager_secret through ansible-playbook against the GCP fake: payload by hash, never shown."""

from __future__ import annotations

import pytest
from conftest import gcp_writes, put_secret

TASK = "secret"
NUMBER = "100000000001"  # prow-sandbox-prow: Google names versions with the project number


def secret_task(name, **extra):
    return [{"name": TASK, "prow.build_cluster.secret_manager_secret": {"name": name, "project": "prow-sandbox-prow", **extra}}]


def versions(gcp, name):
    listed = gcp.session().get(gcp.url("secretmanager", f"/v1/projects/{gcp.prow_project}/secrets/{name}/versions")).json()
    return {v["name"].rsplit("/", 1)[1]: v["state"] for v in listed.get("versions", [])}


def test_check_real_check_real_rotation_and_pruning(ansible, gcp, operator_env):
    name = gcp.unique("kubeconfig_build")
    payload = "apiVersion: v1\nusers:\n- user: {token: s3cr3t-token-one}\n"
    tasks = secret_task(name, payload=payload, labels={"cluster": "build-team"}, keep_versions=1)
    base = f"/secretmanager/v1/projects/{gcp.prow_project}/secrets"

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True and check.task(TASK)["version_added"] is True, check.stdout
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, diff=True, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True, real.stdout
    assert result["version"].endswith("/versions/1") and result["payload_fingerprint"].startswith("sha256:")
    assert gcp_writes(gcp, mark) == [f"POST {base}", f"POST {base}/{name}:addVersion"]

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, diff=True, env=operator_env, **mode)
        assert again.task(TASK)["changed"] is False, (mode, again.stdout)
        assert gcp_writes(gcp, mark) == [], mode
        # A no-op costs three reads: the secret, its versions, the newest payload (no extra call from the client).
        reads = [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in gcp.fake.requests(since=mark, service="secretmanager")]
        assert reads == [("GET", name), ("GET", "versions"), ("GET", "1:access")], reads

    rotated = payload.replace("one", "two")
    tasks = secret_task(name, payload=rotated, labels={"cluster": "build-team"}, keep_versions=1)
    mark = gcp.mark()
    check_rotate = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check_rotate.task(TASK)["pruned"] == ["1"]
    assert check_rotate.task(TASK)["diff"]["before"]["payload"] != check_rotate.task(TASK)["diff"]["after"]["payload"]
    rotate = ansible.run(tasks, diff=True, env=operator_env)
    assert rotate.task(TASK)["version_added"] is True and rotate.task(TASK)["pruned"] == ["1"], rotate.stdout
    numbered = f"/secretmanager/v1/projects/{NUMBER}/secrets/{name}"
    assert gcp_writes(gcp, mark) == [f"POST {base}/{name}:addVersion", f"POST {numbered}/versions/1:disable"]
    assert versions(gcp, name) == {"2": "ENABLED", "1": "DISABLED"}
    assert ansible.run(tasks, env=operator_env).task(TASK)["changed"] is False

    for run in (check, real, again, check_rotate, rotate):
        out = run.stdout + run.stderr
        assert "s3cr3t-token" not in out, "a payload leaked into the output"


def test_destroy_older_versions_and_labels_update(ansible, gcp, operator_env):
    name = gcp.unique("pruned")
    for n in range(3):
        assert ansible.run(secret_task(name, payload=f"v{n}"), env=operator_env).task(TASK)["version_added"]
    mark = gcp.mark()
    run = ansible.run(secret_task(name, payload="v2", keep_versions=2, prune_action="destroy", labels={"team": "a"}), env=operator_env)
    assert run.task(TASK)["changed"] is True and run.task(TASK)["pruned"] == ["1"], run.stdout
    base = f"/secretmanager/v1/projects/{gcp.prow_project}/secrets/{name}"
    assert gcp_writes(gcp, mark) == [f"PATCH {base}", f"POST /secretmanager/v1/projects/{NUMBER}/secrets/{name}/versions/1:destroy"]
    assert versions(gcp, name) == {"3": "ENABLED", "2": "ENABLED", "1": "DESTROYED"}


def test_survives_a_503_and_bad_inputs_fail_before_any_call(ansible, gcp, operator_env):
    name = gcp.unique("flaky")
    gcp.inject(kind="error", status=503, service="secretmanager", method="POST", path=":addVersion$", times=2)
    run = ansible.run(secret_task(name, payload="x"), env=operator_env)
    assert run.task(TASK)["version_added"] is True, run.stdout
    assert versions(gcp, name) == {"1": "ENABLED"}

    mark = gcp.mark()
    for args, message in [({"name": "bad/id"}, "secret ID"), ({"name": "ok", "payload": ""}, "empty"),
                          ({"name": "ok", "keep_versions": 0}, "at least 1"), ({"name": "ok", "labels": {"Team": "a"}}, "label key")]:
        result = ansible.run(secret_task(**args), env=operator_env).task(TASK)
        assert result.get("failed") and message in result["msg"], (args, result.get("msg"))
    assert gcp.fake.requests(since=mark) == []


def set_state(gcp, name, number, action):
    client = gcp.secretmanager()
    getattr(client, f"{action}_secret_version")(name=f"projects/{gcp.prow_project}/secrets/{name}/versions/{number}")


def latest_payload(gcp, name):
    return gcp.secretmanager().access_secret_version(name=f"projects/{gcp.prow_project}/secrets/{name}/versions/latest").payload.data


@pytest.mark.parametrize("action", ["disable", "destroy"])
def test_repairs_latest_when_the_newest_version_was_disabled_or_destroyed_by_hand(ansible, gcp, operator_env, action):
    """What consumers read is versions/latest, the newest created version: when someone disables or destroys
    it, they all fail, even though an older version holds the same payload. The module adds a version."""
    name = gcp.unique("repair")
    for payload in ("same", "other", "same"):  # versions 1..3; 1 and 3 hold the same payload
        put_secret(gcp, gcp.prow_project, name, payload)
    set_state(gcp, name, 3, action)
    tasks = secret_task(name, payload="same", keep_versions=2)

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env).task(TASK)
    assert check["changed"] is True and check["version_added"] is True, check
    assert "version (3) is " + ("DISABLED" if action == "disable" else "DESTROYED") in check["reason"]
    assert check["diff"]["before"]["state"] in ("DISABLED", "DESTROYED") and check["diff"]["after"]["state"] == "ENABLED"
    assert check["diff"]["after"]["version"] == 4 and check["pruned"] == ["1"]
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, diff=True, env=operator_env).task(TASK)
    assert real["version"].endswith("/versions/4") and real["pruned"] == ["1"], real
    assert latest_payload(gcp, name) == b"same"
    # Version 3 stays as the human left it (it is between kept ones), 2 is the other kept one.
    assert versions(gcp, name) == {"4": "ENABLED", "3": "DISABLED" if action == "disable" else "DESTROYED",
                                   "2": "ENABLED", "1": "DISABLED"}
    mark = gcp.mark()
    assert ansible.run(tasks, env=operator_env).task(TASK)["changed"] is False
    assert gcp_writes(gcp, mark) == []


def test_never_prunes_the_newest_version(ansible, gcp, operator_env):
    """Without a payload the module cannot repair latest, but pruning never touches it and it warns."""
    name = gcp.unique("newest")
    for payload in ("a", "b", "c"):
        put_secret(gcp, gcp.prow_project, name, payload)
    set_state(gcp, name, 3, "disable")
    run = ansible.run(secret_task(name, keep_versions=1, prune_action="destroy"), env=operator_env)
    result = run.task(TASK)
    assert result["pruned"] == ["1"] and result["latest_state"] == "DISABLED", result
    assert "newest version (3) is DISABLED" in run.stdout + run.stderr
    assert versions(gcp, name) == {"3": "DISABLED", "2": "ENABLED", "1": "DESTROYED"}


def test_versions_are_added_with_a_checksum_and_read_back_verified(ansible, gcp, operator_env):
    name = gcp.unique("crc")
    assert ansible.run(secret_task(name, payload="kubeconfig-one"), env=operator_env).task(TASK)["version_added"]
    version = gcp.secretmanager().get_secret_version(name=f"projects/{gcp.prow_project}/secrets/{name}/versions/1")
    assert version.client_specified_payload_checksum, "addVersion must carry data_crc32c"

    # A read corrupted in transit is caught by its checksum and read again: no needless new version.
    gcp.configure(secretmanager_corrupt_next_access=1)
    mark = gcp.mark()
    again = ansible.run(secret_task(name, payload="kubeconfig-one"), env=operator_env).task(TASK)
    assert again["changed"] is False, again
    accesses = [c for c in gcp.fake.requests(since=mark, service="secretmanager") if c["path"].endswith(":access")]
    assert len(accesses) == 2 and gcp_writes(gcp, mark) == []  # unchecked, the flipped byte would have added a version


def test_user_managed_replication_mismatch_and_deletion(ansible, gcp, operator_env):
    name = gcp.unique("regional")
    tasks = secret_task(name, payload="regional-payload", replication_locations=["us-east1", "europe-west1"])
    created = ansible.run(tasks, env=operator_env).task(TASK)
    assert created["changed"] is True, created
    replicas = created["secret"]["replication"]["userManaged"]["replicas"]
    assert sorted(r["location"] for r in replicas) == ["europe-west1", "us-east1"]
    mark = gcp.mark()
    assert ansible.run(tasks, env=operator_env).task(TASK)["changed"] is False
    other = ansible.run(secret_task(name, payload="regional-payload", replication_locations=["us-west1"]), env=operator_env).task(TASK)
    assert other.get("failed") and "replication cannot change" in other["msg"], other
    assert gcp_writes(gcp, mark) == []

    gone = secret_task(name, state="absent")
    check = ansible.run(gone, check=True, diff=True, env=operator_env).task(TASK)
    assert check["changed"] is True and check["diff"]["before"]["replication"] == ["europe-west1", "us-east1"]
    assert gcp_writes(gcp, mark) == []
    assert ansible.run(gone, env=operator_env).task(TASK)["changed"] is True
    assert gcp_writes(gcp, mark) == [f"DELETE /secretmanager/v1/projects/{gcp.prow_project}/secrets/{name}"]
    assert ansible.run(gone, env=operator_env).task(TASK)["changed"] is False


@pytest.mark.parametrize("existing", [False, True], ids=["new-secret", "rotation"])
def test_a_lost_answer_of_add_version_stores_no_duplicate(ansible, gcp, operator_env, existing):
    """addVersion applied, answer lost (503 after the write): the module's retry finds the version it stored
    instead of storing the payload twice (a blind retry does: sandbox/tests/gcp/test_gcp_faults.py)."""
    name = gcp.unique("lost")
    if existing:
        put_secret(gcp, gcp.prow_project, name, "the old payload")
    gcp.inject(status=503, service="secretmanager", method="POST", path=":addVersion$", after=True, times=1)
    mark = gcp.mark()
    run = ansible.run(secret_task(name, payload="the new payload"), env=operator_env)
    result = run.task(TASK)
    number = "2" if existing else "1"
    assert result["changed"] is True and result["version"].endswith(f"/versions/{number}"), run.stdout
    assert versions(gcp, name) == ({"2": "ENABLED", "1": "ENABLED"} if existing else {"1": "ENABLED"})
    adds = gcp.fake.requests(since=mark, method="POST", path=":addVersion$")
    assert [(e["status"], e.get("answer_lost")) for e in adds] == [(503, 200)]
    assert ansible.run(secret_task(name, payload="the new payload"), env=operator_env).task(TASK)["changed"] is False


def test_a_refused_add_version_is_added_by_the_retry(ansible, gcp, operator_env):
    """The partner: a failure that stored nothing (503 before the write) is retried with a real add, though
    the newest version (another payload) is enabled."""
    name = gcp.unique("refused")
    put_secret(gcp, gcp.prow_project, name, "the old payload")
    gcp.inject(status=503, service="secretmanager", method="POST", path=":addVersion$", times=1)
    mark = gcp.mark()
    run = ansible.run(secret_task(name, payload="the new payload"), env=operator_env)
    assert run.task(TASK)["version"].endswith("/versions/2"), run.stdout
    adds = gcp.fake.requests(since=mark, method="POST", path=":addVersion$")
    assert [e["status"] for e in adds] == [503, 200]
    assert latest_payload(gcp, name) == b"the new payload"


def test_a_lost_answer_of_the_secret_create_is_no_failure(ansible, gcp, operator_env):
    name = gcp.unique("lost_create")
    gcp.inject(status=503, service="secretmanager", method="POST", path=r"/secrets$", after=True, times=1)
    run = ansible.run(secret_task(name, payload="x", labels={"team": "a"}), env=operator_env)
    result = run.task(TASK)
    assert result["changed"] is True and result["version"].endswith("/versions/1"), run.stdout
    assert result["secret"]["labels"] == {"team": "a"}
    assert versions(gcp, name) == {"1": "ENABLED"}
