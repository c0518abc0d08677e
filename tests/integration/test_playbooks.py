"""The product, end to end: playbooks/onboard.yml, verify.yml and rotate.yml against a whole sandbox.

One sandbox for the module (a Prow kube-apiserver with the real ESO CRDs (pinned, from the Go module proxy), and the GCP
fake, whose GKE API starts the build cluster's apiserver), driven exactly as a user does:
``ansible-playbook playbooks/onboard.yml -e @examples/sandbox-vars.yml`` with the sandbox's env.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from prow_sandbox import assets
from prow_sandbox.kube import list_clusters, settled_audit_events

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VARS = REPO / "examples" / "sandbox-vars.yml"
# Reviews persist nothing, and a server-side dry run (how kubernetes.core plans an apply)
# changes nothing: neither is a write.
REVIEWS = {"tokenreviews", "selfsubjectaccessreviews", "subjectaccessreviews"}


@contextlib.contextmanager
def running_sandbox(state):
    """A sandbox up in ``state`` with the ESO CRDs in its Prow cluster: (state, env); down after."""
    cli = [str(BIN / "prow-sandbox"), "--state-dir", str(state)]
    subprocess.run([*cli, "up"], check=True, capture_output=True, text=True)
    try:
        env = read_env(state / "env")
        subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "apply", "--server-side",
                        *(f"--filename={crd}" for crd in assets.files("eso-crds"))],
                       check=True, capture_output=True, text=True)
        yield state, env
    finally:
        subprocess.run([*cli, "down"], check=False, capture_output=True, text=True)


@pytest.fixture(scope="module", name="sandbox")
def fixture_sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as started:
        yield started


def read_env(path):
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def playbook(env, name, *args):
    run_env = dict(os.environ, **env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / name), *args],
                          capture_output=True, text=True, env=run_env, cwd=REPO, check=False)


def recap(proc, host=None):
    """The PLAY RECAP counters, summed over every host (the build clusters and localhost), or of ``host``."""
    totals = {}
    for line in proc.stdout.splitlines():
        name, _, counters = line.partition(" : ")
        if not counters.strip().startswith("ok=") or (host and name.strip() != host):
            continue
        for item in counters.split():
            key, _, value = item.partition("=")
            totals[key] = totals.get(key, 0) + int(value)
    assert totals, proc.stdout[-2000:]
    return totals


def changed_tasks(proc, play=None):
    """[(task name, host)] of every task result reported as changed (in ``play`` only, if given)."""
    changed, task, current = [], None, None
    for line in proc.stdout.splitlines():
        if line.startswith("PLAY ["):
            current = line[len("PLAY ["):line.rindex("]")]
        elif play and current != play:
            continue
        elif line.startswith("TASK ["):
            task = line[len("TASK ["):line.rindex("]")]
        elif line.startswith("changed: ["):
            changed.append((task, line[len("changed: ["):line.index("]")]))
    return changed


def gcp_writes(state, since):
    writes = []
    log = state / "gcp" / "requests.jsonl"
    for line in (log.read_text() if log.exists() else "").splitlines():  # no request yet, no log
        event = json.loads(line)
        # Times are cut to milliseconds: a write just before ``since`` may share its millisecond.
        if event["write"] and event["time"] > since.isoformat(timespec="milliseconds"):
            writes.append(f"{event['method']} {event['path']}")
    return writes


def kube_writes(state, since):
    """Client writes every cluster of the sandbox received since ``since``, read once each
    cluster's audit log has caught up (``settled_audit_events``)."""
    writes = []
    for cluster in list_clusters(state):
        for event in settled_audit_events(cluster, since=since):
            ref = event.get("objectRef") or {}
            if ref.get("resource") in REVIEWS or "dryRun=All" in event["requestURI"]:
                continue
            if (event.get("user") or {}).get("username") == "system:apiserver":
                continue  # the apiserver's own bookkeeping, not a client's
            writes.append(f"{cluster.name}: {event['verb']} {event['requestURI']}")
    return writes


@pytest.fixture(scope="module", name="onboarded")
def fixture_onboarded(sandbox):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    first = playbook(env, "onboard.yml", "-e", f"@{VARS}")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    first.since = since
    return state, env, first


def test_first_run_onboards_and_the_write_counters_see_it(onboarded):
    state, _env, first = onboarded
    assert recap(first)["changed"] > 0
    assert recap(first)["failed"] == 0
    # The counters the no-op assertions rely on do see real writes.
    gcp = gcp_writes(state, first.since)
    kube = kube_writes(state, first.since)
    assert any("/clusters" in w for w in gcp) and any(":addVersion" in w for w in gcp)
    assert any("clusterrolebindings" in w for w in kube) and any("externalsecrets" in w for w in kube)


@pytest.mark.parametrize("limit", [[], ["--limit", "build-sandbox"]], ids=["all", "limit"])
def test_second_run_changes_nothing_and_writes_nothing(onboarded, limit):
    state, env, _first = onboarded
    since = datetime.now(timezone.utc)
    # Without sync records (test_sync_records.py), so that every task of every role runs.
    second = playbook(env, "onboard.yml", "-e", f"@{VARS}", "-e", "prow_sync_records=false", *limit)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second)["changed"] == 0, second.stdout[-4000:]
    # Every task of every role ran, and found everything in place.
    assert "prow.build_cluster.credentials : Mint a token" in second.stdout
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []


def test_check_mode_on_an_onboarded_cluster_predicts_no_change(onboarded):
    _state, env, _first = onboarded
    check = playbook(env, "onboard.yml", "-e", f"@{VARS}", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check)["changed"] == 0


def test_no_token_in_output_or_outputs_outside_0600_files(onboarded):
    state, env, first = onboarded
    composite = state / "out" / "composite.kubeconfig"
    assert oct(composite.stat().st_mode & 0o777) == "0o600"
    token = yaml.safe_load(composite.read_text())["users"][0]["user"]["token"]
    assert token not in first.stdout + first.stderr
    assert files_holding(state / "out", token) == [composite]


def files_holding(root, text):
    """Every file under root whose content holds text (binary files read leniently)."""
    return [path for path in sorted(root.rglob("*"))
            if path.is_file() and not path.is_symlink() and text in path.read_text(errors="replace")]


def test_no_token_at_vvvv_or_in_diffs_of_a_rotation(onboarded):
    """A rotation mints, reviews, stores and delivers a token; at -vvvv with --diff none of it shows,
    nor in the fake's request log; the only files holding it are the 0600 kubeconfigs."""
    state, env, _first = onboarded
    rotated = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "force_rotation=true", "-vvvv", "--diff")
    assert rotated.returncode == 0, rotated.stdout[-3000:]
    assert "rotated (force: true)" in " ".join(rotated.stdout.split())  # the rotation did happen
    composite = state / "out" / "composite.kubeconfig"
    token = yaml.safe_load(composite.read_text())["users"][0]["user"]["token"]
    assert len(token) > 100  # a real JWT, so "not in" below means something
    assert token not in rotated.stdout and token not in rotated.stderr
    assert token not in (state / "gcp" / "requests.jsonl").read_text()
    holding = files_holding(state, token)
    assert composite in holding
    for path in holding:
        assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_the_external_secret_is_accepted_by_the_real_eso_crd(onboarded):
    _state, env, _first = onboarded
    got = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "externalsecrets.external-secrets.io",
                          "-n", "default", "prow-build-clusters", "-o", "json"], capture_output=True, text=True, check=True)
    spec = json.loads(got.stdout)["spec"]
    # One ExternalSecret for every build cluster: a key per cluster, named after its alias.
    assert [(d["secretKey"], d["remoteRef"]["key"]) for d in spec["data"]] == [
        ("build-sandbox", "prow_build_cluster_kubeconfig_build-sandbox")]
    assert spec["target"]["name"] == "prow-build-clusters"
    assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "prow-gsm"}
    store = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "clustersecretstores.external-secrets.io",
                            "prow-gsm", "-o", "json"], capture_output=True, text=True, check=True)
    # latest or a sync error, never an older version (docs/architecture.md, "Secret Manager: what consumers read").
    assert json.loads(store.stdout)["spec"]["provider"]["gcpsm"]["secretVersionSelectionPolicy"] == "LatestOrFail"


def test_the_generated_kubeconfig_works_with_kubectl(onboarded):
    state, _env, _first = onboarded
    composite = str(state / "out" / "composite.kubeconfig")

    def kubectl(*args):
        return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", composite, "--context", "build-sandbox", *args],
                              capture_output=True, text=True, check=False)

    assert kubectl("get", "pods", "--all-namespaces").returncode == 0
    for verb in ("create", "delete", "list", "watch", "get", "patch"):
        answer = kubectl("auth", "can-i", verb, "pods", "-n", "test-pods")
        assert answer.stdout.strip() == "yes", (verb, answer.stdout, answer.stderr)
    assert "system:serviceaccount:default:serviceaccount-cluster-admin" in kubectl("auth", "whoami").stdout


def test_verify_proves_the_credential_and_the_workload_identity_chain(onboarded):
    _state, env, _first = onboarded
    verified = playbook(env, "verify.yml", "-e", f"@{VARS}")
    assert verified.returncode == 0, verified.stdout[-4000:]
    for link in ("token: authenticates", "permissions: may create", "STS exchange", "bucket write: prowjob-default-sa@"):
        assert link in verified.stdout


def test_rotation_only_when_due_and_then_publishes_a_reviewed_token(onboarded):
    state, env, _first = onboarded
    since = datetime.now(timezone.utc)
    kept = playbook(env, "rotate.yml", "-e", f"@{VARS}")
    assert kept.returncode == 0 and recap(kept)["changed"] == 0, kept.stdout[-3000:]
    assert "build-sandbox: kept (still valid)" in " ".join(kept.stdout.split())
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []

    before = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())["users"][0]["user"]["token"]
    forced = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "force_rotation=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    assert "build-sandbox: rotated (force: true)" in " ".join(forced.stdout.split()), forced.stdout[-3000:]
    assert any(w.endswith(":addVersion") for w in gcp_writes(state, since))
    after = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())["users"][0]["user"]["token"]
    assert after != before
    assert before not in forced.stdout and after not in forced.stdout
    verified = playbook(env, "verify.yml", "-e", f"@{VARS}")
    assert verified.returncode == 0, verified.stdout[-3000:]


def build_cluster_of(state, alias="build-sandbox"):
    """The sandbox cluster the composite kubeconfig's context ``alias`` points at (its admin kubeconfig)."""
    config = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == alias)
    server = next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])
    return next(c for c in list_clusters(state) if c.server == server)


def token_of(state, alias="build-sandbox"):
    config = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    return next(u["user"]["token"] for u in config["users"] if u["name"] == alias)


def token_review(cluster, token):
    """TokenReview (authentication.k8s.io/v1) with the cluster's admin credentials: whether ``token`` authenticates."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    out = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "create", "-o", "json", "-f", "-"],
                         input=json.dumps(review), capture_output=True, text=True, check=True).stdout
    return bool(json.loads(out)["status"].get("authenticated"))


def refused_within(cluster, token, seconds=30):
    """The apiserver caches successful authentications for about 10 s: a revocation shows after that."""
    deadline = time.monotonic() + seconds
    while token_review(cluster, token):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def test_rotation_revokes_the_old_token_only_after_revoke_after_and_a_rerun_is_a_no_op(onboarded):
    state, env, _first = onboarded
    cluster = build_cluster_of(state)
    old = token_of(state)
    forced = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "force_rotation=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    new = token_of(state)
    assert new != old
    # Published, but younger than revoke_after (15m): the old token still works, and is pending.
    assert "pending (younger than 15m)" in " ".join(forced.stdout.split()), forced.stdout[-3000:]
    assert token_review(cluster, old) and token_review(cluster, new)

    since = datetime.now(timezone.utc)
    revoked = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "credentials_revoke_after=0")
    assert revoked.returncode == 0, revoked.stdout[-3000:]
    assert [task for task, host in changed_tasks(revoked) if host == "build-sandbox"] == [
        "prow.build_cluster.credentials : Revoke the other tokens of Prow's ServiceAccount in build-sandbox"], revoked.stdout[-3000:]
    writes = kube_writes(state, since)
    assert writes and all(w.split(": ", 1)[1].startswith("delete /api/v1/namespaces/default/secrets/") for w in writes), writes
    assert refused_within(cluster, old), "the old token still authenticates after its revocation"
    assert token_review(cluster, new)
    assert token_of(state) == new

    since = datetime.now(timezone.utc)
    again = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "credentials_revoke_after=0")
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-3000:]
    assert kube_writes(state, since) == [] and gcp_writes(state, since) == []
    verified = playbook(env, "verify.yml", "-e", f"@{VARS}")
    assert verified.returncode == 0, verified.stdout[-3000:]


def test_offboarding_revokes_every_token_of_the_cluster(onboarded):
    state, env, _first = onboarded
    cluster = build_cluster_of(state)
    token = token_of(state)
    assert token_review(cluster, token)
    off = playbook(env, "offboard.yml", "-e", f"@{VARS}", "--limit", "build-sandbox")
    assert off.returncode == 0, off.stdout[-4000:]
    assert ("prow.build_cluster.credentials : Revoke every token of Prow's ServiceAccount in build-sandbox",
            "build-sandbox") in changed_tasks(off), changed_tasks(off)
    assert refused_within(cluster, token), "an offboarded cluster's token still authenticates"
    bound = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "secrets", "-A", "-o", "name",
                            "-l", "app.kubernetes.io/managed-by=prow.build_cluster.ksa_token"],
                           capture_output=True, text=True, check=True).stdout
    assert bound.strip() == ""
    # The partner: onboarding again mints a token that authenticates; its re-run is a no-op.
    back = playbook(env, "onboard.yml", "-e", f"@{VARS}")
    assert back.returncode == 0, back.stdout[-4000:]
    assert token_review(cluster, token_of(state)) and not token_review(cluster, token)
    again = playbook(env, "onboard.yml", "-e", f"@{VARS}")
    assert recap(again)["changed"] == 0, again.stdout[-3000:]


def build_kubectl(state, *args):
    composite = str(state / "out" / "composite.kubeconfig")
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", composite, "--context", "build-sandbox", *args],
                          capture_output=True, text=True, check=True).stdout


def drift_is_found_and_repaired(env, task, *args):
    """Onboard again: ``task`` must report a change for build-sandbox (and nothing else but the
    Prow instance's tasks that follow from it), and a third run nothing."""
    run = playbook(env, "onboard.yml", "-e", f"@{VARS}", *args)
    assert run.returncode == 0, run.stdout[-4000:]
    assert any(name.endswith(task) and host == "build-sandbox" for name, host in changed_tasks(run)), \
        (task, changed_tasks(run), run.stdout[-3000:])
    again = playbook(env, "onboard.yml", "-e", f"@{VARS}", *args)
    assert recap(again)["changed"] == 0, again.stdout[-4000:]
    return run


def test_a_rerun_sees_drift_in_the_build_cluster(onboarded):
    state, env, _first = onboarded
    build_kubectl(state, "-n", "test-pods", "annotate", "serviceaccount", "prowjob-default-sa", "iam.gke.io/gcp-service-account-")
    drift_is_found_and_repaired(env, "Bind the job KSA to the job GSA through Workload Identity")
    annotation = build_kubectl(state, "-n", "test-pods", "get", "serviceaccount", "prowjob-default-sa",
                               "-o", "jsonpath={.metadata.annotations.iam\\.gke\\.io/gcp-service-account}")
    assert annotation == "prowjob-default-sa@prow-sandbox-build.iam.gserviceaccount.com"


def test_a_rerun_sees_a_changed_output_file(onboarded):
    state, env, _first = onboarded
    entry = state / "out" / "build-sandbox" / "decoration-config.yaml"
    original = entry.read_text()
    entry.write_text(original.replace("prow-sandbox-results", "another-bucket"))
    drift_is_found_and_repaired(env, "Write the Prow configuration files for build-sandbox")
    assert entry.read_text() == original


def test_a_rerun_sees_a_changed_variable(onboarded, tmp_path):
    _state, env, _first = onboarded
    more = bad_vars(tmp_path, lambda doc: doc["prow"]["control_plane_service_accounts"].append(
        "external-secrets@prow-sandbox-prow.iam.gserviceaccount.com"))
    run = playbook(env, "onboard.yml", "-e", f"@{more}")
    assert run.returncode == 0, run.stdout[-4000:]
    assert ("prow.build_cluster.gcs_access : Grant write access on the bucket to the job GSA and Prow's control plane",
            "build-sandbox") in changed_tasks(run), changed_tasks(run)


def two_clusters(tmp_path):
    """The sandbox's vars with a second GKE cluster, build-two, with its own job GSA (offboarding it
    deletes that GSA, and the projects are the same)."""
    return bad_vars(tmp_path, lambda doc: doc["build_clusters"].append(
        dict(doc["build_clusters"][0], alias="build-two", job_service_account="prowjob-two",
             gke=dict(doc["build_clusters"][0]["gke"], name="prow-build-2"))))


def test_each_cluster_is_a_host_with_its_own_settings_and_limit_touches_one(onboarded, tmp_path):
    state, env, _first = onboarded
    two = two_clusters(tmp_path)
    component = {p.name: p.read_text() for p in (state / "out" / "prow").iterdir() if p.name != "external-secret.yaml"}
    first = playbook(env, "onboard.yml", "-e", f"@{two}")
    assert first.returncode == 0, first.stdout[-4000:]
    # The Prow instance's play runs once, on the first host: its changes are the instance's.
    per_cluster = changed_tasks(first, "Onboard each build cluster")
    assert [task for task, host in per_cluster if host == "build-sandbox"] == [], first.stdout[-4000:]
    assert [task for task, host in per_cluster if host == "build-two"]
    # A second cluster changes only the Secret's data: one more ExternalSecret entry, the same
    # deployment changes.
    assert external_secret_keys(env) == ["build-sandbox", "build-two"]
    assert {p.name: p.read_text() for p in (state / "out" / "prow").iterdir() if p.name != "external-secret.yaml"} == component

    composite = state / "out" / "composite.kubeconfig"
    subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(composite), "--context", "build-two", "-n", "test-pods",
                    "annotate", "serviceaccount", "prowjob-two", "iam.gke.io/gcp-service-account-"],
                   check=True, capture_output=True)
    # --limit build-sandbox: build-two's drift is not looked at, and the composite and the
    # ExternalSecret keep it.
    since = datetime.now(timezone.utc)
    limited = playbook(env, "onboard.yml", "-e", f"@{two}", "--limit", "build-sandbox")
    assert limited.returncode == 0 and recap(limited)["changed"] == 0, limited.stdout[-4000:]
    assert "build-two" not in {host for line in limited.stdout.splitlines() if line.startswith(("ok: [", "changed: ["))
                               for host in [line.split("[", 1)[1].split("]", 1)[0]]}
    assert sorted(c["name"] for c in yaml.safe_load(composite.read_text())["contexts"]) == ["build-sandbox", "build-two"]
    assert external_secret_keys(env) == ["build-sandbox", "build-two"]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []
    # --limit build-two repairs it, and only it.
    since = datetime.now(timezone.utc)
    repaired = playbook(env, "onboard.yml", "-e", f"@{two}", "--limit", "build-two")
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert changed_tasks(repaired) == [
        ("prow.build_cluster.gcs_access : Bind the job KSA to the job GSA through Workload Identity", "build-two")]
    repairs = [w for w in kube_writes(state, since) if "serviceaccounts/prowjob-two" in w]
    assert len(repairs) == 1, repairs
    third = playbook(env, "onboard.yml", "-e", f"@{two}")
    assert recap(third)["changed"] == 0, third.stdout[-3000:]

    # Offboarding build-two (--limit) removes it through the roles; build-sandbox stays everywhere.
    refused = playbook(env, "offboard.yml", "-e", f"@{two}")
    assert refused.returncode != 0 and "choose them with --limit" in refused.stdout
    off = playbook(env, "offboard.yml", "-e", f"@{two}", "--limit", "build-two", "-e", "delete_clusters=true")
    assert off.returncode == 0, off.stdout[-4000:]
    assert external_secret_keys(env) == ["build-sandbox"]
    assert [c["name"] for c in yaml.safe_load(composite.read_text())["contexts"]] == ["build-sandbox"]
    assert not (state / "out" / "build-two").exists()
    again = playbook(env, "onboard.yml", "-e", f"@{VARS}")
    assert recap(again)["changed"] == 0, again.stdout[-3000:]


def test_an_inventory_of_your_own_with_host_vars_is_the_same_as_the_vars_file(onboarded, tmp_path):
    state, env, _first = onboarded
    doc = yaml.safe_load(VARS.read_text())
    inventory = tmp_path / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "group_vars").mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump(
        {"prow_build_clusters": {"hosts": {c["alias"]: None for c in doc["build_clusters"]}}}))
    for cluster in doc["build_clusters"]:
        settings = {k: v for k, v in cluster.items() if k != "alias"}
        (inventory / "host_vars" / f"{cluster['alias']}.yml").write_text(yaml.safe_dump({"build_cluster": settings}))
    (inventory / "group_vars" / "prow_build_clusters.yml").write_text(yaml.safe_dump({"prow": doc["prow"]}))
    since = datetime.now(timezone.utc)
    run = playbook(env, "onboard.yml", "-i", str(inventory / "hosts.yml"), "-e", "prow_sync_records=false")
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run)["changed"] == 0, run.stdout[-4000:]
    assert "prow.build_cluster.credentials : Mint a token" in run.stdout  # the roles did run, for build-sandbox
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_a_failing_cluster_does_not_stop_the_others_nor_leave_prow(onboarded, tmp_path):
    state, env, _first = onboarded
    with_far = bad_vars(tmp_path, lambda doc: doc["build_clusters"].append(
        {"alias": "far", "project": "prow-sandbox-build",
         "kubeconfig": str(Path(__file__).parent / "data" / "unreachable.kubeconfig")}))
    since = datetime.now(timezone.utc)
    run = playbook(env, "onboard.yml", "-e", f"@{with_far}", "-e", "prow_sync_records=false")
    assert run.returncode != 0
    assert recap(run, "far")["failed"] == 1 and "cannot reach https://127.0.0.1:1" in run.stdout
    assert recap(run, "build-sandbox")["failed"] == 0
    assert "prow.build_cluster.credentials : Mint a token" in run.stdout  # build-sandbox went on
    # far never stored a kubeconfig: it is left out of what Prow loads, build-sandbox stays.
    assert "far: no such secret yet; left out" in run.stderr, run.stderr[-3000:]
    assert external_secret_keys(env) == ["build-sandbox"]
    composite = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    assert [c["name"] for c in composite["contexts"]] == ["build-sandbox"]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_direct_delivery_writes_one_secret_with_a_key_per_cluster(onboarded, tmp_path):
    state, env, _first = onboarded
    direct = bad_vars(tmp_path, set_in(["prow", "delivery"], "direct"))
    run = playbook(env, "onboard.yml", "-e", f"@{direct}")
    assert run.returncode == 0, run.stdout[-4000:]
    delivered = direct_secret(env)
    assert sorted(delivered) == ["build-sandbox"]
    member = delivered["build-sandbox"]
    assert [c["name"] for c in member["contexts"]] == ["build-sandbox"]
    since = datetime.now(timezone.utc)
    again = playbook(env, "onboard.yml", "-e", f"@{direct}")
    assert recap(again)["changed"] == 0 and kube_writes(state, since) == [], again.stdout[-3000:]

    # A forced rotation with direct delivery rotates what Prow reads: the Secret holds the new token
    # (the one in Secret Manager's latest version, which the composite is built from), and then
    # onboarding has nothing left to do.
    rotated = playbook(env, "rotate.yml", "-e", f"@{direct}", "-e", "force_rotation=true")
    assert rotated.returncode == 0, rotated.stdout[-3000:]
    new_token = direct_secret(env)["build-sandbox"]["users"][0]["user"]["token"]
    assert new_token != member["users"][0]["user"]["token"]
    composite = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    assert new_token == composite["users"][0]["user"]["token"]
    since = datetime.now(timezone.utc)
    after = playbook(env, "onboard.yml", "-e", f"@{direct}")
    assert recap(after)["changed"] == 0 and kube_writes(state, since) == [], after.stdout[-3000:]


def direct_secret(env):
    """The build clusters' Secret in the Prow cluster: key -> kubeconfig."""
    got = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "secret", "-n", "default",
                          "prow-build-clusters", "-o", "json"], capture_output=True, text=True, check=True)
    return {key: yaml.safe_load(base64.b64decode(value)) for key, value in json.loads(got.stdout)["data"].items()}


def external_secret_keys(env):
    got = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "externalsecrets.external-secrets.io",
                          "-n", "default", "prow-build-clusters", "-o", "json"], capture_output=True, text=True, check=True)
    return [d["secretKey"] for d in json.loads(got.stdout)["spec"]["data"]]


def bad_vars(tmp_path, mutate):
    doc = yaml.safe_load(VARS.read_text())
    mutate(doc)
    path = tmp_path / f"vars-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def set_in(path, value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


# The bad inputs, each stopped by the pre-flight before any write: test_preflight.py.
