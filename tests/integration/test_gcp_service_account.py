"""gcp_service_account through ansible-playbook against the GCP fake."""

from __future__ import annotations

import json

from conftest import gcp_env, gcp_writes

TASK = "gsa"


def gsa_task(name, **extra):
    return [{"name": TASK, "prow.build_cluster.gcp_service_account": {"name": name, **extra}}]


def test_check_real_check_real_then_absent(ansible, gcp):
    # Application Default Credentials (the modules' default auth_kind), as on a workstation.
    operator_env = {
        "GCP_API_ENDPOINTS": json.dumps(gcp.endpoints),
        "GOOGLE_APPLICATION_CREDENTIALS": str(gcp.fake.credentials["operator"]),
        "GCP_PROJECT": gcp.build_project,
    }
    name = gcp.unique("job-sa")
    email = f"{name}@{gcp.build_project}.iam.gserviceaccount.com"
    tasks = gsa_task(name, display_name="ProwJob default SA", description="uploads results")

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"]["after"]["displayName"] == "ProwJob default SA"
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True, real.stdout
    assert result["email"] == email
    assert result["service_account"]["displayName"] == "ProwJob default SA"
    assert gcp_writes(gcp, mark) == [f"POST /iam/v1/projects/{gcp.build_project}/serviceAccounts"]

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, env=operator_env, diff=True, **mode)
        assert again.task(TASK)["changed"] is False, (mode, again.stdout)
        assert gcp_writes(gcp, mark) == [], mode

    mark = gcp.mark()
    gone = ansible.run(gsa_task(name, state="absent"), env=operator_env)
    assert gone.task(TASK)["changed"] is True
    assert gcp_writes(gcp, mark) == [f"DELETE /iam/v1/projects/{gcp.build_project}/serviceAccounts/{email}"]
    assert ansible.run(gsa_task(name, state="absent"), env=operator_env).task(TASK)["changed"] is False


def test_display_name_and_description_are_patched_in_place(ansible, gcp, operator_env):
    name = gcp.unique("renamed-sa")
    email = f"{name}@{gcp.build_project}.iam.gserviceaccount.com"
    assert ansible.run(gsa_task(name, display_name="Old name", description="kept"), env=operator_env).task(TASK)["changed"]
    tasks = gsa_task(name, display_name="ProwJob default SA")

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"] == {"before": {"displayName": "Old name", "description": "kept"},
                                        "after": {"displayName": "ProwJob default SA", "description": "kept"}}
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True, real.stdout
    path = f"/iam/v1/projects/{gcp.build_project}/serviceAccounts/{email}"
    assert gcp_writes(gcp, mark) == [f"PATCH {path}"]
    # IAM answers a PATCH with the masked fields only; the module returns the whole account.
    assert result["service_account"]["displayName"] == "ProwJob default SA"
    assert result["service_account"]["description"] == "kept" and result["service_account"]["uniqueId"]
    got = gcp.session().get(gcp.url("iam", f"/v1/projects/-/serviceAccounts/{email}")).json()
    assert (got["displayName"], got["description"]) == ("ProwJob default SA", "kept")

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(tasks, env=operator_env, **mode).task(TASK)["changed"] is False, mode
        assert gcp_writes(gcp, mark) == [], mode

    # Clearing the description is a change too.
    mark = gcp.mark()
    cleared = ansible.run(gsa_task(name, description=""), env=operator_env).task(TASK)
    assert cleared["changed"] is True and "description" not in cleared["service_account"], cleared
    assert gcp_writes(gcp, mark) == [f"PATCH {path}"]
    assert ansible.run(gsa_task(name, description=""), env=operator_env).task(TASK)["changed"] is False


def test_a_new_account_that_answers_404_and_403_then_flips_is_survived(ansible, gcp, operator_env):
    """Right after creation IAM may answer 404 or 403 for the account, and vanish once more
    after a first success: creating it, binding on it and binding it all go through."""
    gcp.configure(iam_new_sa_visibility="404,403,200,404,403,200,404")
    name = gcp.unique("fresh-sa")
    email = f"{name}@{gcp.build_project}.iam.gserviceaccount.com"
    bucket = gcp.unique("fresh-results")
    gcp.storage().create_bucket(bucket)
    tasks = gsa_task(name, display_name="ProwJob default SA") + [
        {"name": "on-gsa", "prow.build_cluster.gcp_iam_member": {
            "resource_type": "service_account", "resource": email, "role": "roles/iam.serviceAccountUser",
            "member": "serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"}},
        {"name": "on-bucket", "prow.build_cluster.gcp_iam_member": {
            "resource_type": "bucket", "resource": bucket, "role": "roles/storage.objectAdmin", "member": f"serviceAccount:{email}"}},
    ]
    mark = gcp.mark()
    run = ansible.run(tasks, env=operator_env)
    assert run.failed == 0, run.stdout
    assert [run.task(t)["changed"] for t in (TASK, "on-gsa", "on-bucket")] == [True, True, True]
    assert run.task(TASK)["service_account"]["email"] == email
    seen = {e["status"] for e in gcp.fake.requests(since=mark, service="iam") if email in e["path"]}
    assert {403, 404} <= seen, seen  # the module met both, and retried them

    gcp.configure(iam_new_sa_visibility="")
    mark = gcp.mark()
    again = ansible.run(tasks, env=operator_env)
    assert again.changed == 0, again.stdout
    assert gcp_writes(gcp, mark) == []


def test_a_caller_without_access_still_fails_with_the_403(ansible, gcp):
    crier_env = dict(gcp_env(gcp, "prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"), GCP_PROJECT=gcp.build_project)
    mark = gcp.mark()
    result = ansible.run(gsa_task(gcp.unique("denied-sa")), env=crier_env).task(TASK)
    assert result.get("failed") and result["status"] == 403, result
    assert result["error_info"]["reason"] == "IAM_PERMISSION_DENIED"
    assert gcp_writes(gcp, mark) == []


def test_an_account_created_meanwhile_is_adopted_not_recreated(ansible, gcp, operator_env):
    """The module reads 'not found' while someone else's create lands (or IAM has not caught
    up): its create gets 409, it reads the account, and changes only what differs."""
    gcp.configure(iam_new_sa_visibility="404,404")
    name = gcp.unique("raced-sa")
    email = f"{name}@{gcp.build_project}.iam.gserviceaccount.com"
    made = gcp.session().post(gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts"),
                              json={"accountId": name, "serviceAccount": {"displayName": "Theirs"}})
    assert made.status_code == 200, made.text
    mark = gcp.mark()
    run = ansible.run(gsa_task(name, display_name="Ours"), env=operator_env, diff=True)
    result = run.task(TASK)
    assert result["changed"] is True and result["service_account"]["displayName"] == "Ours", run.stdout
    assert result["diff"]["before"]["displayName"] == "Theirs"
    path = f"/iam/v1/projects/{gcp.build_project}/serviceAccounts"
    assert gcp_writes(gcp, mark) == [f"POST {path}", f"PATCH {path}/{email}"]
    assert [e["status"] for e in gcp.fake.requests(since=mark, method="POST", path="/serviceAccounts$")] == [409]

    # The same race when the account already matches: nothing of ours changed.
    gcp.configure(iam_new_sa_visibility="404,404")
    other = gcp.unique("raced-sa")
    gcp.session().post(gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts"),
                       json={"accountId": other, "serviceAccount": {"displayName": "Same"}}).raise_for_status()
    mark = gcp.mark()
    same = ansible.run(gsa_task(other, display_name="Same"), env=operator_env).task(TASK)
    assert same["changed"] is False and same["service_account"]["displayName"] == "Same", same
    assert gcp_writes(gcp, mark) == [f"POST {path}"]  # the create that met 409, nothing else
