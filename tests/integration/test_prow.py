"""Real Prow consumes what onboarding produced: plank schedules a ProwJob into the build cluster.

One sandbox for the module (the same fixture as test_playbooks.py) plus the sandbox's Prow
(prow_sandbox.prow: Prow's own prow-controller-manager with plank, and the stand-ins for the
kubelet, ESO and the config repository). Onboarding runs as a user runs it; Prow then loads
the build cluster from the Secret the ExternalSecret delivers (the contract in
docs/architecture.md: Secret ``prow-build-clusters``, one key per alias, ``--kubeconfig-dir``).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone

import pytest
import yaml

from prow_sandbox import kube, prow
from test_playbooks import BIN, VARS, build_cluster_of, fixture_sandbox, playbook  # noqa: F401  pylint: disable=unused-import  (the module fixture "sandbox")

ALIAS = "build-sandbox"
JOB_KSA = "prowjob-default-sa"
CONTRACT_SECRET = "prow-build-clusters"


def wait_for(what, probe, timeout=120.0, interval=1.0):
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def kubectl_json(kubeconfig, *args, context=None):
    cmd = [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig)]
    if context:
        cmd += ["--context", context]
    done = subprocess.run([*cmd, *args, "-o", "json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def mounted_clusters(state):
    """Aliases in the materialised Secret volume Prow's --kubeconfig-dir points at."""
    volume = prow.prow_state(state) / "pod" / "volumes" / CONTRACT_SECRET
    return sorted(p.name for p in volume.iterdir() if not p.name.startswith(".")) if volume.exists() else []


@pytest.fixture(scope="module", name="prow_sandbox")
def fixture_prow_sandbox(sandbox):
    state, env = sandbox
    prow.start(state)
    try:
        yield state, env
    finally:
        prow.stop(state)


@pytest.fixture(scope="module", name="onboarded")
def fixture_onboarded(prow_sandbox):
    state, env = prow_sandbox
    before = prow.pod_status(state)["restarts"]
    run = playbook(env, "onboard.yml", "-e", f"@{VARS}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # Onboarding delivered the one ExternalSecret of the contract, an entry per cluster.
    external = kubectl_json(env["PROW_KUBECONFIG"], "get", "externalsecrets.external-secrets.io", "-n",
                            prow.PROW_NAMESPACE, CONTRACT_SECRET)
    assert [e["secretKey"] for e in external["spec"]["data"]] == [ALIAS]
    wait_for("the build cluster in Prow's kubeconfig dir", lambda: ALIAS in mounted_clusters(state))
    # Prow exits on the kubeconfig change; the stand-in kubelet starts it again, and this
    # run parses the new context.
    prow.wait_ready(state, restarts_above=before, timeout=120)
    prow.wait_loaded(state, ALIAS)
    return state, env


def landed_pod(state, env, name, context=ALIAS, kubeconfig=None):
    """Wait until plank reports the ProwJob pending with a pod; return (ProwJob, pod)."""
    job = wait_for(f"ProwJob {name} pending", lambda: (lambda pj: pj if pj.get("status", {}).get("pod_name") else None)(
        prow.get_prowjob(state, name)))
    pod = kubectl_json(kubeconfig or state / "out" / "composite.kubeconfig", "get", "pod", "-n", "test-pods",
                       job["status"]["pod_name"], context=context)
    return job, pod


def gcs_key_volumes(pod):
    return [v for v in pod["spec"].get("volumes", []) if (v.get("secret") or {}).get("secretName")]


def test_a_decorated_prowjob_lands_in_the_build_cluster(onboarded):
    state, env = onboarded
    name = prow.create_prowjob(state, ALIAS)
    job, pod = landed_pod(state, env, name)
    assert job["spec"]["cluster"] == ALIAS and job["spec"]["decoration_config"]["gcs_credentials_secret"] == ""
    assert job["status"]["state"] == "pending"
    assert pod["spec"]["serviceAccountName"] == JOB_KSA
    assert gcs_key_volumes(pod) == []
    assert pod["metadata"]["labels"]["prow.k8s.io/job"] == prow.job_name(ALIAS)
    assert pod["status"]["phase"] == "Pending"  # no kubelet in the sandbox: nothing runs it


def test_the_status_file_says_reachable_for_the_onboarded_cluster(onboarded):
    # plank writes it (once a minute) into the bucket; the alias is there only once Prow
    # loaded the cluster, which the fixture waited for.
    state, _env = onboarded
    statuses = wait_for(f"{ALIAS} in plank's status file",
                        lambda: (lambda st: st if st and ALIAS in st else None)(prow.cluster_status(state)),
                        timeout=180, interval=3)
    assert statuses[ALIAS] == "Reachable", statuses
    assert ALIAS in prow.loaded_clusters(state)


def test_without_the_generated_entry_a_job_gets_the_key_file_volume(onboarded):
    # The failing side of the test above: the default cluster has only the instance's base
    # decoration, so its pod mounts the GCS key-file Secret and runs as `default`.
    state, env = onboarded
    name = prow.create_prowjob(state, "default")
    _job, pod = landed_pod(state, env, name, context=None, kubeconfig=env["PROW_KUBECONFIG"])
    assert pod["spec"]["serviceAccountName"] == "default"
    assert [v["secret"]["secretName"] for v in gcs_key_volumes(pod)] == ["gcs-credentials"]


def test_a_prowjob_for_a_cluster_prow_does_not_know_is_not_scheduled(onboarded):
    state, _env = onboarded
    name = prow.create_prowjob(state, ALIAS, cluster="not-onboarded")
    job = wait_for("plank's verdict", lambda: (lambda pj: pj if pj.get("status", {}).get("state") == "error" else None)(
        prow.get_prowjob(state, name)))
    assert "not-onboarded" in job["status"]["description"]
    assert "pod_name" not in job["status"]


def test_checkconfig_accepts_the_generated_config_and_refuses_a_broken_one(onboarded, tmp_path):
    state, _env = onboarded
    entries = prow.decoration_entries(state / "out")
    assert [e["cluster"] for e in entries] == [ALIAS]
    config, jobs = prow.render_config(entries, "gs://prow-sandbox-results/build-cluster-status.json")
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "jobs.yaml").write_text(jobs)
    accepted = prow.checkconfig(tmp_path / "config.yaml", tmp_path / "jobs.yaml")
    assert accepted.returncode == 0, accepted.stderr[-2000:]

    broken = yaml.safe_load(config)
    broken["plank"]["default_decoration_config_entries"][1]["config"]["timeout"] = "forever"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    refused = prow.checkconfig(tmp_path / "broken.yaml", tmp_path / "jobs.yaml")
    assert refused.returncode != 0
    assert "forever" in refused.stderr


def test_rotation_restarts_prow_and_the_next_job_still_lands(onboarded):
    state, env = onboarded
    volume = prow.prow_state(state) / "pod" / "volumes" / CONTRACT_SECRET / ALIAS
    token_before = yaml.safe_load(volume.read_text())["users"][0]["user"]["token"]
    restarts = prow.pod_status(state)["restarts"]
    forced = playbook(env, "rotate.yml", "-e", f"@{VARS}", "-e", "force_rotation=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    # The new Secret Manager version reaches the mounted file through ESO and the kubelet...
    rotated = wait_for("the rotated token in Prow's kubeconfig dir",
                       lambda: (lambda t: t if t != token_before else None)(
                           yaml.safe_load(volume.read_text())["users"][0]["user"]["token"]))
    composite = yaml.safe_load((state / "out" / "composite.kubeconfig").read_text())
    assert rotated == composite["users"][0]["user"]["token"]
    # ...Prow exits on the change and runs again with it.
    prow.wait_ready(state, restarts_above=restarts, timeout=120)
    _job, pod = landed_pod(state, env, prow.create_prowjob(state, ALIAS))
    assert pod["spec"]["serviceAccountName"] == JOB_KSA


def test_offboarding_removes_the_cluster_from_prow_without_a_crash_loop(onboarded):
    state, env = onboarded
    restarts = prow.pod_status(state)["restarts"]
    run = playbook(env, "offboard.yml", "-e", f"@{VARS}", "--limit", ALIAS)
    assert run.returncode == 0, run.stdout[-4000:]
    left = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "-n", prow.PROW_NAMESPACE,
                           "externalsecrets.external-secrets.io", CONTRACT_SECRET, "--ignore-not-found", "-o", "json"],
                          capture_output=True, text=True, check=True).stdout
    assert ALIAS not in [e["secretKey"] for e in (json.loads(left)["spec"].get("data") or [] if left.strip() else [])]
    wait_for("the build cluster gone from Prow's kubeconfig dir", lambda: ALIAS not in mounted_clusters(state))
    prow.wait_ready(state, restarts_above=restarts, timeout=120)
    status = prow.wait_loaded(state, ALIAS, present=False)
    # Its decoration entry left Prow's config with the output files; a job naming it anyway:
    job, pod = prow.job_pod(state, prow.create_prowjob(state, "default", cluster=ALIAS))
    assert pod is None and job["status"]["state"] == "error", job["status"]
    assert ALIAS in job["status"]["description"]
    # Still up, scheduling, and not restarted again: the default cluster's job lands too.
    landed_pod(state, env, prow.create_prowjob(state, "default"), context=None, kubeconfig=env["PROW_KUBECONFIG"])
    after = prow.pod_status(state)
    assert after["state"] == "running" and after["restarts"] == status["restarts"], after
    assert ALIAS not in prow.loaded_clusters(state)
    statuses = wait_for("a status file without the offboarded cluster",
                        lambda: (lambda st: st if st is not None and ALIAS not in st else None)(prow.cluster_status(state)),
                        timeout=180, interval=3)
    assert statuses["default"] == "Reachable", statuses


def test_with_per_component_access_plank_schedules_as_its_own_service_account(onboarded, tmp_path):
    """Last: after offboarding, the cluster onboarded again with the token model's per-component access.
    Prow's controller manager loads it from its own Secret (``prow-build-clusters-controller-manager``,
    projected beside the shared one, which no longer has the cluster) and creates the job's pod as its
    own ServiceAccount, which may do no more than that."""
    state, env = onboarded
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"][0]["access"] = "per-component"
    per_component = tmp_path / "per-component.yml"
    per_component.write_text(yaml.safe_dump(doc))
    restarts = prow.pod_status(state)["restarts"]
    run = playbook(env, "onboard.yml", "-e", f"@{per_component}")
    assert run.returncode == 0, run.stdout[-4000:]
    shared = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", env["PROW_KUBECONFIG"], "get", "-n", prow.PROW_NAMESPACE,
                             "externalsecrets.external-secrets.io", CONTRACT_SECRET, "--ignore-not-found", "-o", "name"],
                            capture_output=True, text=True, check=True).stdout
    assert shared.strip() == "", "the shared Secret must not hold a per-component cluster"
    wait_for("the build cluster in Prow's kubeconfig dir", lambda: ALIAS in mounted_clusters(state))
    prow.wait_ready(state, restarts_above=restarts, timeout=120)
    prow.wait_loaded(state, ALIAS)
    since = datetime.now(timezone.utc)
    _job, pod = landed_pod(state, env, prow.create_prowjob(state, ALIAS))
    assert pod["spec"]["serviceAccountName"] == JOB_KSA
    cluster = build_cluster_of(state, ALIAS)
    creators = {(e.get("user") or {}).get("username") for e in kube.settled_audit_events(cluster, since=since)
                if e["verb"] == "create" and (e.get("objectRef") or {}).get("resource") == "pods"
                and (e.get("objectRef") or {}).get("namespace") == "test-pods"}
    assert creators == {"system:serviceaccount:default:prow-controller-manager"}, creators
