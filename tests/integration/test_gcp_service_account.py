"""gcp_service_account through ansible-playbook against the GCP fake."""

from __future__ import annotations

import json

from conftest import gcp_writes

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
