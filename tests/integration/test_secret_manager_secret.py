"""secret_manager_secret through ansible-playbook against the GCP fake: payload by hash, never shown."""

from __future__ import annotations

from conftest import gcp_writes

TASK = "secret"


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

    rotated = payload.replace("one", "two")
    tasks = secret_task(name, payload=rotated, labels={"cluster": "build-team"}, keep_versions=1)
    mark = gcp.mark()
    check_rotate = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check_rotate.task(TASK)["pruned"] == ["1"]
    assert check_rotate.task(TASK)["diff"]["before"]["payload"] != check_rotate.task(TASK)["diff"]["after"]["payload"]
    rotate = ansible.run(tasks, diff=True, env=operator_env)
    assert rotate.task(TASK)["version_added"] is True and rotate.task(TASK)["pruned"] == ["1"], rotate.stdout
    assert gcp_writes(gcp, mark) == [f"POST {base}/{name}:addVersion", f"POST {base}/{name}/versions/1:disable"]
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
    assert gcp_writes(gcp, mark) == [f"PATCH {base}", f"POST {base}/versions/1:destroy"]
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
