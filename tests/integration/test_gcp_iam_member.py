"""gcp_iam_member through ansible-playbook against the GCP fake: additive, etag-safe, retried."""

from __future__ import annotations

import threading

from conftest import Ansible, gcp_writes

TASK = "member"
ROLE = "roles/storage.objectAdmin"


def member_task(**args):
    return [{"name": TASK, "prow.build_cluster.gcp_iam_member": args}]


def make_bucket(ansible, gcp, operator_env):
    name = gcp.unique("iam-results")
    run = ansible.run([{"name": "b", "prow.build_cluster.gcs_bucket": {"name": name}}], env=operator_env)
    assert run.task("b")["changed"], run.stdout
    return name


def bucket_members(gcp, bucket, role=ROLE):
    policy = gcp.session().get(gcp.url("storage", f"/storage/v1/b/{bucket}/iam")).json()
    return {m for b in policy.get("bindings", []) if b["role"] == role for m in b["members"]}


def test_bucket_check_real_check_real_and_absent_keeps_others(ansible, gcp, operator_env):
    bucket = make_bucket(ansible, gcp, operator_env)
    crier = "serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"
    deck = "serviceAccount:prow-deck@prow-sandbox-prow.iam.gserviceaccount.com"
    assert ansible.run(member_task(resource_type="bucket", resource=bucket, role=ROLE, member=deck), env=operator_env).changed == 1
    tasks = member_task(resource_type="bucket", resource=f"gs://{bucket}", role=ROLE, member=crier)

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"]["after"]["members"] == sorted([crier, deck])
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    assert real.task(TASK)["changed"] is True, real.stdout
    assert gcp_writes(gcp, mark) == [f"PUT /storage/storage/v1/b/{bucket}/iam"]
    assert bucket_members(gcp, bucket) == {crier, deck}
    legacy = bucket_members(gcp, bucket, "roles/storage.legacyBucketOwner")
    assert legacy, "the bucket's default bindings must survive"

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(tasks, env=operator_env, **mode).task(TASK)["changed"] is False, mode
        assert gcp_writes(gcp, mark) == [], mode

    removed = ansible.run(member_task(resource_type="bucket", resource=bucket, role=ROLE, member=crier, state="absent"), env=operator_env)
    assert removed.task(TASK)["changed"] is True
    assert bucket_members(gcp, bucket) == {deck}
    assert bucket_members(gcp, bucket, "roles/storage.legacyBucketOwner") == legacy


def test_several_members_in_one_policy_write(ansible, gcp, operator_env):
    bucket = make_bucket(ansible, gcp, operator_env)
    members = ["serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com",
               "serviceAccount:prow-deck@prow-sandbox-prow.iam.gserviceaccount.com"]
    tasks = member_task(resource_type="bucket", resource=bucket, role=ROLE, members=members)

    mark = gcp.mark()
    real = ansible.run(tasks, env=operator_env)
    assert real.task(TASK)["changed"] is True, real.stdout
    assert gcp_writes(gcp, mark) == [f"PUT /storage/storage/v1/b/{bucket}/iam"], "one write for both members"
    assert bucket_members(gcp, bucket) == set(members)

    mark = gcp.mark()
    assert ansible.run(tasks, env=operator_env).task(TASK)["changed"] is False
    assert gcp_writes(gcp, mark) == []

    gone = ansible.run(member_task(resource_type="bucket", resource=bucket, role=ROLE, members=members, state="absent"), env=operator_env)
    assert gone.task(TASK)["changed"] is True
    assert bucket_members(gcp, bucket) == set()


def test_member_and_members_are_exclusive_and_one_is_required(ansible, operator_env):
    both = ansible.run(member_task(resource_type="project", role=ROLE, member="user:a@example.com",
                                   members=["user:b@example.com"]), env=operator_env)
    assert "mutually exclusive: member|members" in both.task(TASK)["msg"]
    none = ansible.run(member_task(resource_type="project", role=ROLE), env=operator_env)
    assert "one of the following is required: member, members" in none.task(TASK)["msg"]


def test_project_service_account_and_secret_policies(ansible, gcp, operator_env):
    secret = gcp.unique("iam-secret")
    setup = ansible.run([{"name": "s", "prow.build_cluster.secret_manager_secret": {"name": secret, "project": gcp.prow_project}}],
                        env=operator_env)
    assert setup.task("s")["changed"], setup.stdout
    rotator = "serviceAccount:gencred-refresher@prow-sandbox-prow.iam.gserviceaccount.com"
    cases = [
        ({"resource_type": "project", "role": "roles/container.admin"}, f"POST /cloudresourcemanager/v1/projects/{gcp.build_project}:setIamPolicy"),
        ({"resource_type": "service_account", "resource": "prow-crier@prow-sandbox-prow.iam.gserviceaccount.com",
          "role": "roles/iam.serviceAccountTokenCreator"},
         "POST /iam/v1/projects/-/serviceAccounts/prow-crier@prow-sandbox-prow.iam.gserviceaccount.com:setIamPolicy"),
        ({"resource_type": "secret", "resource": f"projects/{gcp.prow_project}/secrets/{secret}",
          "role": "roles/secretmanager.secretVersionAdder"},
         f"POST /secretmanager/v1/projects/{gcp.prow_project}/secrets/{secret}:setIamPolicy"),
    ]
    for args, write in cases:
        tasks = member_task(member=rotator, **args)
        mark = gcp.mark()
        assert ansible.run(tasks, check=True, env=operator_env).task(TASK)["changed"] is True, args
        first = ansible.run(tasks, env=operator_env)
        assert first.task(TASK)["changed"] is True, first.stdout
        assert rotator in first.task(TASK)["members"]
        assert ansible.run(tasks, env=operator_env).task(TASK)["changed"] is False, args
        assert gcp_writes(gcp, mark) == [write]
        ansible.run(member_task(member=rotator, state="absent", **args), env=operator_env)


def test_survives_an_etag_race_and_a_503(ansible, gcp, operator_env):
    bucket = make_bucket(ansible, gcp, operator_env)
    member = "serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"
    gcp.inject(kind="etag_race", path=f"/b/{bucket}/iam$", method="PUT", times=1)
    gcp.inject(kind="error", status=503, path=f"/b/{bucket}/iam$", method="GET", times=1)
    mark = gcp.mark()
    run = ansible.run(member_task(resource_type="bucket", resource=bucket, role=ROLE, member=member), env=operator_env)
    assert run.task(TASK)["changed"] is True, run.stdout
    statuses = [(e["method"], e["status"]) for e in gcp.fake.requests(since=mark, service="storage")]
    assert statuses == [("GET", 503), ("GET", 200), ("PUT", 412), ("GET", 200), ("PUT", 200)]
    assert member in bucket_members(gcp, bucket)


def test_concurrent_runs_never_lose_a_binding(gcp, operator_env, tmp_path):
    members = [f"serviceAccount:{sa}@prow-sandbox-prow.iam.gserviceaccount.com"
               for sa in ("prow-crier", "prow-deck", "prow-controller-manager", "external-secrets")]
    # The fake sleeps before it handles a request: slow writes make every run read the policy
    # (and its etag) before the first write lands, so all but one must re-read and retry.
    gcp.inject(kind="latency", delay=3.0, method="POST", path=f"/projects/{gcp.build_project}:setIamPolicy", times=len(members))
    role = "roles/container.developer"
    results = {}

    def run(index, member):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        results[member] = Ansible(workdir).run(member_task(resource_type="project", role=role, member=member), env=operator_env)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for member, result in results.items():
        assert result.task(TASK)["changed"] is True, result.stdout
    policy = gcp.session().post(gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}:getIamPolicy")).json()
    held = {m for b in policy["bindings"] if b["role"] == role for m in b["members"]}
    assert set(members) <= held
    conflicts = [e for e in gcp.requests(path=":setIamPolicy") if e["status"] == 409]
    assert conflicts, "the runs should have collided at least once"


def test_bad_inputs_fail_before_any_call(ansible, gcp, operator_env):
    cases = [
        ({"resource_type": "bucket", "resource": "r", "role": ROLE, "member": "serviceAccount:x@p.iam.gserviceaccount.com"}, "bucket name"),
        ({"resource_type": "project", "role": "storage.objectAdmin", "member": "user:a@example.com"}, "roles/NAME"),
        ({"resource_type": "project", "role": ROLE, "member": "prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"}, "no TYPE"),
        ({"resource_type": "project", "resource": "Prow_Project", "role": ROLE, "member": "user:a@example.com"}, "not a project ID"),
        ({"resource_type": "service_account", "resource": "crier", "role": ROLE, "member": "user:a@example.com"}, "service account email"),
        ({"resource_type": "secret", "resource": "a/b", "role": ROLE, "member": "user:a@example.com"}, "secret ID"),
        # A pool names its project by NUMBER; a project ID there is refused by IAM, so before any call.
        ({"resource_type": "bucket", "resource": "prow-sandbox-results", "role": ROLE, "member":
          "principal://iam.googleapis.com/projects/prow-sandbox-build/locations/global/workloadIdentityPools/"
          "prow-sandbox-build.svc.id.goog/subject/ns/test-pods/sa/prowjob-default-sa"}, "NUMBER"),
    ]
    mark = gcp.mark()
    for args, message in cases:
        result = ansible.run(member_task(**args), env=operator_env).task(TASK)
        assert result.get("failed") and message in result["msg"], (args, result.get("msg"))
    assert gcp.fake.requests(since=mark) == []


CONDITION = {"title": "until-2030", "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")'}


def test_conditional_bindings_only_on_uniform_buckets_and_kept_intact(ansible, gcp, operator_env):
    crier = "serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"
    deck = "serviceAccount:prow-deck@prow-sandbox-prow.iam.gserviceaccount.com"
    fine_grained = gcp.unique("acl-results")
    gcp.storage().create_bucket(fine_grained)  # uniform access off
    mark = gcp.mark()
    refused = ansible.run(member_task(resource_type="bucket", resource=fine_grained, role=ROLE, member=crier, condition=CONDITION),
                          env=operator_env).task(TASK)
    assert refused.get("failed") and refused["status"] == 400 and "uniform bucket-level access" in refused["msg"], refused
    assert [e["status"] for e in gcp.fake.requests(since=mark, method="PUT")] == [400]

    bucket = make_bucket(ansible, gcp, operator_env)  # the module's default: uniform access on
    conditional = member_task(resource_type="bucket", resource=bucket, role=ROLE, member=crier, condition=CONDITION)
    plain = member_task(resource_type="bucket", resource=bucket, role=ROLE, member=deck)
    mark = gcp.mark()
    first = ansible.run(conditional + plain, env=operator_env)
    assert first.failed == 0 and first.changed == 2, first.stdout
    assert gcp_writes(gcp, mark) == [f"PUT /storage/storage/v1/b/{bucket}/iam"] * 2
    # Every read asked for version 3 (a version 1 read of a conditional bucket policy is refused).
    reads = gcp.fake.requests(since=mark, method="GET", path=f"/b/{bucket}/iam$")
    assert reads and all(e["query"] == "optionsRequestedPolicyVersion=3" for e in reads)
    policy = gcp.storage().get_bucket(bucket).get_iam_policy(requested_policy_version=3)
    assert policy.version == 3
    assert {"role": ROLE, "members": {crier}, "condition": CONDITION} in policy.bindings
    assert {"role": ROLE, "members": {deck}} in policy.bindings

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(conditional + plain, env=operator_env, **mode).changed == 0, mode
        assert gcp_writes(gcp, mark) == [], mode

    # Removing the unconditional member keeps the conditional binding, and the other way round.
    removed = ansible.run([dict(plain[0], **{"prow.build_cluster.gcp_iam_member": dict(plain[0]["prow.build_cluster.gcp_iam_member"], state="absent")})],
                          env=operator_env)
    assert removed.task(TASK)["changed"] is True, removed.stdout
    policy = gcp.storage().get_bucket(bucket).get_iam_policy(requested_policy_version=3)
    assert {"role": ROLE, "members": {crier}, "condition": CONDITION} in policy.bindings
    gone = ansible.run([dict(conditional[0], **{"prow.build_cluster.gcp_iam_member": dict(conditional[0]["prow.build_cluster.gcp_iam_member"], state="absent")})],
                       env=operator_env)
    assert gone.task(TASK)["changed"] is True, gone.stdout  # the last condition goes: a version 3 write
    assert bucket_members(gcp, bucket) == set()


def test_conditional_project_binding_survives_a_plain_one(ansible, gcp, operator_env):
    rotator = "serviceAccount:gencred-refresher@prow-sandbox-prow.iam.gserviceaccount.com"
    role = "roles/container.clusterViewer"
    conditional = member_task(resource_type="project", role=role, member=rotator, condition=CONDITION)
    plain = member_task(resource_type="project", role=role, member=rotator)
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}:getIamPolicy")
    try:
        run = ansible.run(conditional + plain, env=operator_env)
        assert run.changed == 2, run.stdout
        v3 = gcp.session().post(url, json={"options": {"requestedPolicyVersion": 3}}).json()
        assert {"role": role, "members": [rotator], "condition": CONDITION} in v3["bindings"]
        assert {"role": role, "members": [rotator]} in v3["bindings"]
        assert ansible.run(conditional + plain, env=operator_env).changed == 0
    finally:
        absent = [dict(t, **{"prow.build_cluster.gcp_iam_member": dict(t["prow.build_cluster.gcp_iam_member"], state="absent")})
                  for t in conditional + plain]
        ansible.run(absent, env=operator_env)
    v3 = gcp.session().post(url, json={"options": {"requestedPolicyVersion": 3}}).json()
    assert not any(b["role"] == role for b in v3["bindings"])
