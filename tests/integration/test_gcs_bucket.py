"""gcs_bucket through ansible-playbook against the GCP fake."""

from __future__ import annotations

from conftest import gcp_writes

TASK = "bucket"


def bucket_task(name, **extra):
    return [{"name": TASK, "prow.build_cluster.gcs_bucket": {"name": name, **extra}}]


def test_check_real_check_real(ansible, gcp, operator_env):
    name = gcp.unique("results")
    tasks = bucket_task(f"gs://{name}", labels={"team": "sandbox"})

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"]["after"]["uniform_bucket_level_access"] is True
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True and result["url"] == f"gs://{name}", real.stdout
    assert result["bucket"]["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"] is True
    assert result["bucket"]["labels"] == {"team": "sandbox"}
    assert gcp_writes(gcp, mark) == ["POST /storage/storage/v1/b"]

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, env=operator_env, **mode)
        assert again.task(TASK)["changed"] is False, (mode, again.stdout)
        assert again.task(TASK)["owned"] is True
        assert gcp_writes(gcp, mark) == [], mode

    mark = gcp.mark()
    assert ansible.run(bucket_task(name, state="absent"), env=operator_env).task(TASK)["changed"] is True
    assert gcp_writes(gcp, mark) == [f"DELETE /storage/storage/v1/b/{name}"]


def test_a_name_taken_by_someone_else_is_a_clear_error(ansible, gcp, operator_env):
    name = gcp.unique("taken")
    gcp.storage("someone-else@prow-sandbox.test").create_bucket(name, project="prow-sandbox-other")
    mark = gcp.mark()
    run = ansible.run(bucket_task(name), env=operator_env)
    result = run.task(TASK)
    assert result.get("failed"), run.stdout
    assert "exists, but the caller cannot read it" in result["msg"] and "choose another" in result["msg"]
    assert gcp_writes(gcp, mark) == []


def test_bad_names_fail_before_any_call(ansible, gcp, operator_env):
    mark = gcp.mark()
    for name in ("Results", "ab", "my-google-results"):
        result = ansible.run(bucket_task(name), env=operator_env).task(TASK)
        assert result.get("failed") and "is not valid" in result["msg"], name
    assert gcp.fake.requests(since=mark) == []
