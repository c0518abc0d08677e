"""Sync records (docs/architecture.md): a no-op onboarding replays the last in-sync run's calls in
check mode and skips the roles; drift, a changed input, a due token, a corrupt record or
prow_sync_records=false each give the full run. Against a sandbox of its own, as test_playbooks.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone

import yaml

from test_playbooks import (  # noqa: F401  pylint: disable=unused-import  (the module fixtures "sandbox", "onboarded")
    BIN,
    REPO,
    VARS,
    bad_vars,
    build_kubectl,
    changed_tasks,
    files_holding,
    fixture_onboarded,
    fixture_sandbox,
    gcp_writes,
    kube_writes,
    playbook,
    recap,
    two_clusters,
)

ALIAS = "build-sandbox"
MINT = "prow.build_cluster.credentials : Mint a token"


def record_of(state):
    return state / "out" / ".sync" / f"{ALIAS}.json"


def onboard(env, *args):
    run = playbook(env, "onboard.yml", "-e", f"@{VARS}", "-v", *args)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def said(run, text):
    """Whether the run's output (-v results are YAML, wrapped) says ``text``."""
    return text in " ".join((run.stdout + run.stderr).split())


def skipped_the_roles(run):
    """Whether the roles did not run for the build cluster (its record replayed in sync)."""
    roles = ("prow.build_cluster.cluster :", "prow.build_cluster.gcs_access :", MINT, "Check the alias of")
    return not any(task in run.stdout for task in roles) and \
        said(run, "recorded calls replayed in check mode without a change")


def stored_token(state):
    return yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())["users"][0]["user"]["token"]


def in_sync_again(env, state):
    """The next run (after a repair) replays the fresh record: roles skipped, nothing changed or written."""
    since = datetime.now(timezone.utc)
    again = onboard(env)
    assert skipped_the_roles(again), again.stdout[again.stdout.find("Replay the sync"):][:3000]
    assert recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_the_first_onboarding_writes_a_record_0600_without_any_secret(onboarded):
    state, _env, _first = onboarded
    record = record_of(state)
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(record.read_text())
    assert doc["format"] == 1 and len(doc["key"]) == 64
    modules = [call["module"] for call in doc["calls"]]
    # Every role's calls, the pre-flight checks' too (each call once), but the payload's store.
    for module in ("gke_cluster", "k8s_namespace", "gcs_bucket", "gcp_service_account", "workload_identity_binding",
                   "gcp_iam_member", "gke_admin_ksa", "ksa_token", "yaml_files"):
        assert module in modules, modules
    # No store of a payload; what is there reads only (the per-component probe, state absent in check mode).
    stores = [call["args"] for call in doc["calls"] if call["module"] == "secret_manager_secret"]
    assert stores and all(args.get("state") == "absent" and "payload" not in args for args in stores), stores
    token = stored_token(state)
    assert len(token) > 100 and token not in record.read_text()
    # Neither the operator's key nor the journal stays around.
    assert "private_key" not in record.read_text() and not (state / "out" / ".sync" / f"{ALIAS}.journal").exists()
    for path in files_holding(state / "out", token):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_a_no_op_run_replays_the_record_and_skips_the_roles(onboarded):
    state, env, _first = onboarded
    since = datetime.now(timezone.utc)
    run = onboard(env)
    assert skipped_the_roles(run), run.stdout[-4000:]
    assert recap(run)["changed"] == 0, run.stdout[-3000:]
    assert "Merge the composite kubeconfig" in run.stdout  # the Prow instance's play still runs
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_without_records_the_roles_run(onboarded):
    state, env, _first = onboarded
    before = record_of(state).read_text()
    run = onboard(env, "-e", "prow_sync_records=false")
    assert MINT in run.stdout and not said(run, "recorded calls replayed") and not said(run, "not in sync")
    assert recap(run)["changed"] == 0
    assert record_of(state).read_text() == before  # neither used nor rewritten


def test_check_mode_does_not_use_the_record(onboarded):
    _state, env, _first = onboarded
    run = onboard(env, "--check")
    assert MINT in run.stdout and not said(run, "recorded calls replayed") and recap(run)["changed"] == 0


def repaired(env, state, task):
    """Onboard: ``task`` must report a change for the build cluster (the full run), then a fresh
    record must make the next run skip the roles again."""
    before = record_of(state).stat().st_mtime_ns
    run = onboard(env)
    assert MINT in run.stdout, run.stdout[-4000:]
    assert any(name.endswith(task) and host == ALIAS for name, host in changed_tasks(run)), (task, changed_tasks(run))
    assert said(run, "would change")  # the replay said which call differs
    assert record_of(state).stat().st_mtime_ns != before
    in_sync_again(env, state)


def test_a_removed_annotation_of_the_job_ksa_is_repaired_with_a_record(onboarded):
    state, env, _first = onboarded
    build_kubectl(state, "-n", "test-pods", "annotate", "serviceaccount", "prowjob-default-sa", "iam.gke.io/gcp-service-account-")
    repaired(env, state, "Bind the job KSA to the job GSA through Workload Identity")


def test_a_deleted_cluster_role_binding_is_repaired_with_a_record(onboarded):
    state, env, _first = onboarded
    build_kubectl(state, "delete", "clusterrolebinding", "serviceaccount-cluster-admin-crb")
    repaired(env, state, "Ensure Prow's ServiceAccount and its ClusterRoleBinding in build-sandbox")


def ad_hoc(env, module, args):
    """One collection module, ad hoc, with the sandbox's credentials: a change made by hand."""
    run_env = dict(os.environ, **env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", f"prow.build_cluster.{module}",
                           "-a", json.dumps(args)], capture_output=True, text=True, env=run_env, cwd=REPO, check=False)
    assert proc.returncode == 0 and "CHANGED" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_removed_iam_member_is_repaired_with_a_record(onboarded):
    state, env, _first = onboarded
    ad_hoc(env, "gcp_iam_member", {"resource_type": "bucket", "resource": "prow-sandbox-results",
                                   "role": "roles/storage.objectAdmin", "state": "absent",
                                   "member": "serviceAccount:prowjob-default-sa@prow-sandbox-build.iam.gserviceaccount.com"})
    repaired(env, state, "Grant write access on the bucket to the job GSA and Prow's control plane")


def test_a_token_due_for_rotation_is_rotated_with_a_record(onboarded):
    """Same inputs, same code: only the stored token's expiry tells that a rotation is due, and
    ksa_token's replay sees it."""
    state, env, _first = onboarded
    composite = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    short = build_kubectl(state, "-n", "default", "create", "token", "serviceaccount-cluster-admin", "--duration", "10m").strip()
    composite["users"][0]["user"]["token"] = short
    ad_hoc(env, "secret_manager_secret", {"project": "prow-sandbox-prow", "name": f"prow_build_cluster_kubeconfig_{ALIAS}",
                                          "payload": yaml.safe_dump(composite)})
    run = onboard(env)
    assert any(name.startswith(MINT) and host == ALIAS for name, host in changed_tasks(run)), run.stdout[-4000:]
    assert said(run, "ksa_token, would change"), run.stdout[-4000:]
    assert stored_token(state) != short
    in_sync_again(env, state)


def test_a_changed_input_gives_the_full_run(onboarded, tmp_path):
    state, env, _first = onboarded
    shorter = bad_vars(tmp_path, lambda doc: doc["build_clusters"][0].update(token_duration="36h"))
    run = playbook(env, "onboard.yml", "-e", f"@{shorter}", "-v")
    assert run.returncode == 0, run.stdout[-4000:]
    assert MINT in run.stdout and said(run, "the inputs or the collection changed"), run.stdout[-4000:]
    # Back to the usual inputs: another key again, so the full run, then in sync.
    back = onboard(env)
    assert MINT in back.stdout and recap(back)["changed"] == 0, back.stdout[-4000:]
    in_sync_again(env, state)


def test_a_corrupt_record_gives_the_full_run_with_a_warning(onboarded):
    state, env, _first = onboarded
    record_of(state).write_text('{"format": 1, "calls": [')
    run = onboard(env)
    assert MINT in run.stdout and recap(run)["changed"] == 0 and recap(run)["failed"] == 0
    assert said(run, "is corrupt") and "[WARNING]" in run.stderr + run.stdout
    assert json.loads(record_of(state).read_text())["format"] == 1  # written anew
    in_sync_again(env, state)


def roles_ran_for(run, host):
    """Whether a task of the roles reported a result for ``host`` in the build clusters' play (a host in
    sync ends it first; the instance play runs roles' tasks on the first host in any case)."""
    task, play = "", ""
    for line in run.stdout.splitlines():
        if line.startswith("PLAY ["):
            play, task = line[len("PLAY ["):], ""
        elif not play.startswith("Onboard each build cluster"):
            continue
        elif line.startswith("TASK ["):
            task = line[len("TASK ["):]
        elif task.startswith("prow.build_cluster.") and line.startswith(("ok: [", "changed: [", "skipping: [", "fatal: [")):
            if line.split("[", 1)[1].split("]", 1)[0] == host:
                return True
    return False


def test_two_clusters_are_replayed_in_one_task_each_on_its_own_record(onboarded, tmp_path):
    # Last in this file: it adds build-two, and offboards it at the end.
    state, env, _first = onboarded
    two = two_clusters(tmp_path)
    first = onboard(env, "-e", f"@{two}")
    assert roles_ran_for(first, "build-two") and not roles_ran_for(first, ALIAS), first.stdout[-3000:]
    records = state / "out" / ".sync"
    assert (records / "build-two.json").exists() and record_of(state).exists()

    # One task replays both records (in two forked processes): both hosts end their play there.
    since = datetime.now(timezone.utc)
    again = onboard(env, "-e", f"@{two}")
    assert again.stdout.count("TASK [Replay the sync records of the build clusters]") == 1
    assert said(again, "2 of 2 build clusters in sync"), again.stdout[again.stdout.find("Replay the sync"):][:3000]
    assert not roles_ran_for(again, "build-two") and not roles_ran_for(again, ALIAS)
    assert recap(again)["changed"] == 0 and gcp_writes(state, since) == [] and kube_writes(state, since) == []

    # Drift in build-two only: its replay says so and its roles repair it; build-sandbox stays in sync.
    subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(state / "out" / "composite.kubeconfig"), "--context", "build-two",
         "-n", "test-pods", "annotate", "serviceaccount", "prowjob-two", "iam.gke.io/gcp-service-account-"],
        check=True, capture_output=True)
    repaired = onboard(env, "-e", f"@{two}")
    assert said(repaired, "1 of 2 build clusters in sync"), repaired.stdout[repaired.stdout.find("Replay the sync"):][:3000]
    assert changed_tasks(repaired, "Onboard each build cluster") == [
        ("prow.build_cluster.gcs_access : Bind the job KSA to the job GSA through Workload Identity", "build-two")]
    assert not roles_ran_for(repaired, ALIAS)

    off = playbook(env, "offboard.yml", "-e", f"@{two}", "--limit", "build-two", "-e", "delete_clusters=true")
    assert off.returncode == 0, off.stdout[-4000:]
