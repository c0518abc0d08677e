"""gcs_bucket through ansible-playbook against the GCP fake."""

from __future__ import annotations

import threading
import time

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


def test_check_mode_fails_where_the_real_create_would_be_refused(ansible, gcp, operator_env):
    """A project the caller may not create buckets in: check mode (the pre-flight) says so, as the real
    create then does; in the caller's own project check mode passes (test_check_real_check_real)."""
    tasks = bucket_task(gcp.unique("not-mine"), project="prow-sandbox-other")
    mark = gcp.mark()
    check = ansible.run(tasks, check=True, env=operator_env).task(TASK)
    assert check.get("failed") and "may not create buckets there (storage.buckets.create)" in check["msg"], check
    assert gcp_writes(gcp, mark) == []
    real = ansible.run(tasks, env=operator_env).task(TASK)
    assert real.get("failed") and real["status"] == 403, real


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


def test_an_existing_bucket_is_patched_in_place_once(ansible, gcp, operator_env):
    name = gcp.unique("patch-me")
    made = ansible.run(bucket_task(name, location="us-west1", labels={"team": "a"}, uniform_bucket_level_access=False),
                       env=operator_env)
    assert made.task(TASK)["bucket"]["location"] == "US-WEST1", made.stdout  # as GCS reports it
    assert made.task(TASK)["bucket"]["storageClass"] == "STANDARD"
    # Labels someone else set are kept: the module only adds or corrects its own.
    other = gcp.storage().get_bucket(name)
    other.labels = {"team": "a", "cost-center": "ci"}
    other.patch()
    tasks = bucket_task(name, location="us-west1", labels={"team": "b"}, storage_class="NEARLINE")

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"]["after"] == {"location": "US-WEST1", "storage_class": "NEARLINE", "uniform_bucket_level_access": True,
                                                 "labels": {"team": "b", "cost-center": "ci"}}
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True, real.stdout
    assert gcp_writes(gcp, mark) == [f"PATCH /storage/storage/v1/b/{name}"]
    patch = gcp.fake.requests(since=mark, method="PATCH")[0]
    assert patch["query"] == "ifMetagenerationMatch=2" and patch["status"] == 200
    got = gcp.storage().get_bucket(name)
    assert (got.storage_class, got.labels, got.location) == ("NEARLINE", {"team": "b", "cost-center": "ci"}, "US-WEST1")
    assert got.iam_configuration.uniform_bucket_level_access_enabled and got.metageneration == 3
    assert result["bucket"]["metageneration"] == "3"

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(tasks, env=operator_env, **mode).task(TASK)["changed"] is False, mode
        assert gcp_writes(gcp, mark) == [], mode


def while_held_back(gcp, method, path, action):
    """Hold the module's next ``method`` request to ``path`` back for 3 s and, meanwhile, run
    ``action`` in a thread (another writer): (the thread, {"ok": True} once action ran)."""
    rule = gcp.inject(kind="latency", delay=3.0, method=method, path=path, times=1)
    done = {}

    def other_writer():
        deadline = time.monotonic() + 60
        while any(f.id == rule.id for f in gcp.fake.faults.list()):  # the module's request took the rule
            assert time.monotonic() < deadline
            time.sleep(0.05)
        action()
        done["ok"] = True

    thread = threading.Thread(target=other_writer)
    thread.start()
    return thread, done


def test_a_write_between_read_and_patch_is_not_overwritten(ansible, gcp, operator_env):
    name = gcp.unique("race")
    assert ansible.run(bucket_task(name), env=operator_env).task(TASK)["changed"]
    # The module's PATCH is held back; meanwhile someone else changes the bucket. The
    # module's ifMetagenerationMatch then fails (412), and it reads again and re-patches.

    def someone_else():
        theirs = gcp.storage().get_bucket(name)
        theirs.labels = {"owner": "them"}
        theirs.patch()

    thread, done = while_held_back(gcp, "PATCH", f"/b/{name}$", someone_else)
    mark = gcp.mark()
    run = ansible.run(bucket_task(name, labels={"team": "sandbox"}), env=operator_env)
    thread.join()
    assert done and run.task(TASK)["changed"] is True, run.stdout
    patches = [(e["query"], e["status"]) for e in gcp.fake.requests(since=mark, method="PATCH", path=f"/b/{name}$")]
    assert ("ifMetagenerationMatch=1", 412) in patches and patches[-1] == ("ifMetagenerationMatch=2", 200), patches
    assert gcp.storage().get_bucket(name).labels == {"owner": "them", "team": "sandbox"}


def test_a_bucket_another_run_of_this_project_creates_meanwhile_is_taken_as_it_is(ansible, gcp, operator_env):
    # Build clusters run in parallel: two hosts may both find no bucket and both create it.
    name = gcp.unique("both")
    thread, done = while_held_back(gcp, "POST", r"/storage/v1/b$",
                                   lambda: gcp.storage().create_bucket(name, project=gcp.build_project))
    mark = gcp.mark()
    run = ansible.run(bucket_task(name, labels={"team": "sandbox"}), env=operator_env)
    thread.join()
    result = run.task(TASK)
    assert done and not result.get("failed"), run.stdout
    creates = [e["status"] for e in gcp.fake.requests(since=mark, method="POST", path=r"/storage/v1/b$")]
    assert creates.count(409) == 1, creates  # the module's own create lost the race...
    assert result["changed"] is True and gcp.storage().get_bucket(name).labels == {"team": "sandbox"}  # ...and it went on


def test_a_bucket_another_project_creates_meanwhile_is_still_an_error(ansible, gcp, operator_env):
    name = gcp.unique("stolen")
    thread, _done = while_held_back(
        gcp, "POST", r"/storage/v1/b$",
        lambda: gcp.storage("someone-else@prow-sandbox.test").create_bucket(name, project="prow-sandbox-other"))
    run = ansible.run(bucket_task(name), env=operator_env)
    thread.join()
    result = run.task(TASK)
    assert result.get("failed"), run.stdout
    assert "choose another" in result["msg"]


def test_a_location_that_differs_fails_and_changes_nothing(ansible, gcp, operator_env):
    name = gcp.unique("moved")
    assert ansible.run(bucket_task(name, location="EU"), env=operator_env).task(TASK)["changed"]
    mark = gcp.mark()
    result = ansible.run(bucket_task(name, location="us-west1", storage_class="COLDLINE"), env=operator_env).task(TASK)
    assert result.get("failed") and "cannot change" in result["msg"] and "EU" in result["msg"], result
    assert gcp_writes(gcp, mark) == []
    assert gcp.storage().get_bucket(name).storage_class == "STANDARD"
    # The same location in lower case is the same location.
    assert ansible.run(bucket_task(name, location="eu"), env=operator_env).task(TASK)["changed"] is False


def test_a_shared_bucket_of_another_project_is_used_as_it_is(ansible, gcp, operator_env):
    # Prow's own results bucket lives in the Prow project; the operator may read it.
    name = gcp.unique("prow-shared")
    legacy = gcp.storage().bucket(name)
    legacy.labels = {"owner": "infra"}
    gcp.storage().create_bucket(legacy, project=gcp.prow_project)  # uniform access off, as old buckets are
    mark = gcp.mark()
    refused = ansible.run(bucket_task(name), env=operator_env).task(TASK)
    assert refused.get("failed") and "belongs to another project" in refused["msg"] and "shared: true" in refused["msg"], refused
    run = ansible.run(bucket_task(name, shared=True, labels={"team": "sandbox"}), env=operator_env)
    result = run.task(TASK)
    assert result["changed"] is False and result["owned"] is False, run.stdout
    assert "does not have uniform bucket-level access" in " ".join(result.get("warnings", []))
    assert gcp_writes(gcp, mark) == []
    assert gcp.storage().get_bucket(name).labels == {"owner": "infra"}
    missing = ansible.run(bucket_task(gcp.unique("no-such-shared"), shared=True), env=operator_env).task(TASK)
    assert missing.get("failed") and "is not created" in missing["msg"]
    absent = ansible.run(bucket_task(name, shared=True, state="absent"), env=operator_env).task(TASK)
    assert absent.get("failed") and "never deleted" in absent["msg"]
    assert gcp_writes(gcp, mark) == []


def test_absent_when_already_gone_writes_nothing(ansible, gcp, operator_env):
    mark = gcp.mark()
    for mode in ({"check": True}, {}):
        result = ansible.run(bucket_task(gcp.unique("never-made"), state="absent"), env=operator_env, diff=True, **mode).task(TASK)
        assert result["changed"] is False and result["diff"] == {"before": {}, "after": {}}, (mode, result)
    assert gcp_writes(gcp, mark) == []
