"""Issue #15: the token cap of the cluster's platform (build_clusters[].platform), on the sandbox's kubeconfig-only
build cluster declared ``platform: eks``.

EKS grants no service-account token longer than 24h: ``token_duration: 48h`` stops onboarding in the pre-flight with
one message naming token_duration and platform, with no write in the GCP fake's request log nor in any cluster's
audit log; ``24h`` onboards, and the token minted has that lifetime. A platform that contradicts a ``gke:`` cluster
and a bad federation name are pre-flight errors naming their key too.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from prow_sandbox.gcp.testing import kube_sandbox_available
from test_playbooks import bad_vars, fixture_sandbox, gcp_writes, kube_writes, playbook, recap, set_in, token_of  # noqa: F401
from test_job_identity_direct import fake
from test_preflight import flat

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

ALIAS = "build-eks"
AT = f"build_clusters[{ALIAS}]"
PROVIDER = f"/v1/projects/prow-sandbox-build/locations/global/workloadIdentityPools/prow-build-clusters/providers/{ALIAS}"


def eks_vars(tmp_path, **settings):
    return bad_vars(tmp_path, set_in(["build_clusters", 0], {
        "alias": ALIAS, "project": "prow-sandbox-build", "platform": "eks",
        "kubeconfig": "{{ lookup('ansible.builtin.env', 'BUILD_KUBECONFIG') }}", **settings}))


def refused_in_preflight(state, env, path, since):
    run = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert run.returncode != 0
    assert recap(run)["changed"] == 0 and recap(run)["failed"] == 1, run.stdout[-3000:]
    failed_task = [line for line in run.stdout.splitlines() if line.startswith("TASK [")][-1]
    assert "Check" in failed_task, failed_task  # a pre-flight check, before any other task
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []
    return flat(run.stdout)


def test_a_48h_token_on_eks_is_refused_before_any_write(sandbox, tmp_path):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    output = refused_in_preflight(state, env, eks_vars(tmp_path, token_duration="48h"), since)
    assert (f"{AT}: token_duration 48h exceeds 24h, the longest token EKS grants (platform eks)") in output, output[-3000:]


@pytest.mark.parametrize(("case", "settings", "text"), [
    ("a platform that is not one", {"platform": "openshift"}, "value of platform must be one of: gke, eks, aks, other"),
    ("a bad federation pool", {"job_identity": "federated", "federation": {"pool": "gcp-pool"}},
     f"{AT}.federation.pool (gcs_access_federation_pool): ID 'gcp-pool' is not a valid ID"),
    ("a bad federation provider", {"job_identity": "federated", "federation": {"provider": "P"}},
     f"{AT}.federation.provider, else its alias (gcs_access_federation_provider): ID 'P' is not a valid ID"),
    ("a bad credentials Secret", {"job_identity": "federated", "gcs_credentials_secret": "GCS_Creds"},
     f"{AT}.gcs_credentials_secret (gcs_access_credentials_secret): name 'GCS_Creds' is not a valid name"),
])
def test_bad_platform_and_federation_keys_are_refused_naming_the_key(sandbox, tmp_path, case, settings, text):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    output = refused_in_preflight(state, env, eks_vars(tmp_path, token_duration="24h", rotate_before="12h", **settings), since)
    assert text in output, (case, output[-3000:])


def test_eks_on_a_gke_cluster_is_refused_naming_the_key(sandbox, tmp_path):
    state, env = sandbox
    since = datetime.now(timezone.utc)
    path = bad_vars(tmp_path, set_in(["build_clusters", 0, "platform"], "eks"))
    output = refused_in_preflight(state, env, path, since)
    assert "build_clusters[build-sandbox].platform: eks does not fit a GKE cluster (gke:)" in output, output[-3000:]


def claims(token):
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_a_24h_token_on_eks_is_accepted_and_minted_for_24h_and_the_provider_allows_the_eks_audience(sandbox, tmp_path):
    state, env = sandbox
    path = eks_vars(tmp_path, token_duration="24h", rotate_before="12h", job_identity="federated")
    run = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    token = claims(token_of(state, ALIAS))
    assert abs(token["exp"] - token["iat"] - 24 * 3600) <= 60, token
    # platform eks: the pods' automounted tokens carry https://kubernetes.default.svc (EKS's --api-audiences).
    endpoints, operator = fake(state)
    provider = operator.get(f"{endpoints['iam']}{PROVIDER}").json()
    assert "https://kubernetes.default.svc" in provider["oidc"]["allowedAudiences"], provider
    # A re-run changes and writes nothing.
    since = datetime.now(timezone.utc)
    again = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []
