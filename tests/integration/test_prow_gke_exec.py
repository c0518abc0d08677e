"""Real Prow schedules into a keyless (``credential_model: gke_exec``) build cluster.

Prow's own prow-controller-manager (plank) loads the cluster from the ConfigMap that onboarding
wrote, projected with the build clusters' Secret into its ``--kubeconfig-dir``; client-go runs
the gke-gcloud-auth-plugin stand-in, which hands it a Google access token of Prow's own GSA
(prow-controller-manager@, the process's Application Default Credentials, its Workload Identity
in production); the fake GKE authenticates it and RBAC (the ClusterRoleBinding naming that GSA
as a User) lets plank create the job's pod. No token of the build cluster exists anywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone

import kubernetes
import pytest
import yaml

from prow_sandbox import prow
from prow_sandbox.kube import list_clusters, settled_audit_events
from test_playbooks import VARS, fixture_sandbox, playbook  # noqa: F401  pylint: disable=unused-import  (the module fixture "sandbox")
from test_prow import wait_for

ALIAS = "build-keyless"
VOLUME = "prow-build-clusters"


@pytest.fixture(scope="module", name="onboarded")
def fixture_onboarded(sandbox, tmp_path_factory):
    state, env = sandbox
    prow.start(state)
    try:
        doc = yaml.safe_load(VARS.read_text())
        doc["build_clusters"] = [{"alias": ALIAS, "project": "prow-sandbox-build", "credential_model": "gke_exec",
                                  "gke": {"location": "us-east1-c", "name": "keyless-prow"}}]
        vars_file = tmp_path_factory.mktemp("vars") / "keyless.yml"
        vars_file.write_text(yaml.safe_dump(doc))
        before = prow.pod_status(state)["restarts"]
        run = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        mounted = prow.prow_state(state) / "pod" / "volumes" / VOLUME
        wait_for("the keyless cluster in Prow's kubeconfig dir", lambda: (mounted / ALIAS).exists())
        prow.wait_ready(state, restarts_above=before, timeout=120)
        prow.wait_loaded(state, ALIAS)
        yield state, env, mounted
    finally:
        prow.stop(state)


def test_prow_loads_the_exec_kubeconfig_from_the_projected_volume(onboarded):
    _state, _env, mounted = onboarded
    user = yaml.safe_load((mounted / ALIAS).read_text())["users"][0]["user"]
    assert set(user) == {"exec"} and user["exec"]["command"] == "gke-gcloud-auth-plugin"


def test_plank_creates_the_job_pod_as_its_own_gsa(onboarded):
    state, _env, _mounted = onboarded
    name = prow.create_prowjob(state, ALIAS)
    job = wait_for(f"ProwJob {name} pending with a pod",
                   lambda: (lambda pj: pj if pj.get("status", {}).get("pod_name") else None)(prow.get_prowjob(state, name)))
    cluster = next(c for c in list_clusters(state) if c.name.endswith("-keyless-prow"))
    with kubernetes.config.new_client_from_config(str(cluster.kubeconfig)) as admin:
        pod = kubernetes.client.CoreV1Api(admin).read_namespaced_pod(job["status"]["pod_name"], "test-pods")
    assert pod.metadata.labels["prow.k8s.io/job"] == prow.job_name(ALIAS)
    # Who created it: Prow's GSA, authenticated by GKE from the plugin's Google token.
    creates = [e for e in kube_events(cluster) if (e.get("objectRef") or {}).get("resource") == "pods"
               and e["verb"] == "create"]
    assert {e["user"]["username"] for e in creates} == {"prow-controller-manager@prow-sandbox-prow.iam.gserviceaccount.com"}


def kube_events(cluster):
    return settled_audit_events(cluster, since=datetime(2000, 1, 1, tzinfo=timezone.utc))
