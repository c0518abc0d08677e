"""GKE's authorization, as the fake plays it: after RBAC, the apiserver asks the fake's
authorization webhook (SubjectAccessReview v1), which answers from the caller's IAM roles on
the cluster's project, read at request time. And the gke-gcloud-auth-plugin stand-in: a
kubeconfig whose user is the exec plugin, loaded by the official kubernetes client.

Everything goes through the official clients: google-cloud-container for the cluster,
google-auth's AuthorizedSession for Cloud Resource Manager's IAM policy, the kubernetes
client for the apiserver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
from google.cloud import container_v1

from prow_sandbox.gcp import FakeGCP
from prow_sandbox.gcp.seed import BUILD_PROJECT, CONTROLLER_MANAGER, CRIER, DECK, ROTATOR
from prow_sandbox.gcp.testing import GcpHandle, kube_sandbox_available

pytestmark = pytest.mark.skipif(kube_sandbox_available() is not None,
                                reason=str(kube_sandbox_available()))

LOCATION = "europe-west4-a"
PARENT = f"projects/{BUILD_PROJECT}/locations/{LOCATION}"
# The apiserver caches webhook answers for 2 s (kube.py); polls wait longer than that.
CACHE_WAIT = 30
ApiException = kubernetes.client.ApiException


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpHandle]:
    fake = FakeGCP(tmp_path_factory.mktemp("gke-authz")).start()
    try:
        yield GcpHandle(fake)
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def cluster(env: GcpHandle) -> container_v1.Cluster:
    client = env.container()
    op = client.create_cluster(parent=PARENT, cluster={"name": "authz", "initial_node_count": 1})
    deadline = time.monotonic() + 120
    while op.status != container_v1.Operation.Status.DONE:
        assert time.monotonic() < deadline, "create did not finish"
        time.sleep(0.3)
        op = client.get_operation(name=f"{PARENT}/operations/{op.name}")
    assert not op.error.message
    found = client.get_cluster(name=f"{PARENT}/clusters/authz")
    with api_as(env, found) as api:  # the operator (project owner) prepares a namespace
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "test-pods"}})
        # No controller-manager makes it; without it ServiceAccount admission refuses pods.
        core.create_namespaced_service_account("test-pods", {"metadata": {"name": "default"}})
        # view, edit and admin are aggregated ClusterRoles: empty without a controller-manager.
        kubernetes.client.RbacAuthorizationV1Api(api).create_cluster_role({
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]})
    return found


def api_as(env: GcpHandle, cluster: container_v1.Cluster, who: str = "operator") -> kubernetes.client.ApiClient:
    import google.auth.transport.requests
    creds = env.credentials(who)
    creds.refresh(google.auth.transport.requests.Request())
    cfg = kubernetes.client.Configuration()
    cfg.host = f"https://{cluster.endpoint}"
    cfg.ssl_ca_cert = kubernetes.config.kube_config.FileOrData(
        {"certificate-authority-data": cluster.master_auth.cluster_ca_certificate},
        "certificate-authority").as_file()
    cfg.api_key = {"authorization": creds.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return kubernetes.client.ApiClient(cfg)


def set_project_role(env: GcpHandle, role: str, member: str, *, present: bool = True) -> None:
    """Add or remove one member of one role on the build project (read-modify-write, etag)."""
    crm = env.session()
    url = env.url("cloudresourcemanager", f"/v1/projects/{BUILD_PROJECT}")
    policy = crm.post(f"{url}:getIamPolicy", json={}).json()
    bindings = [b for b in policy.get("bindings", []) if b["role"] != role]
    members = set(next((b["members"] for b in policy.get("bindings", []) if b["role"] == role), []))
    members = members | {member} if present else members - {member}
    if members:
        bindings.append({"role": role, "members": sorted(members)})
    answer = crm.post(f"{url}:setIamPolicy", json={"policy": {**policy, "bindings": bindings}})
    assert answer.status_code == 200, answer.text


def status_of(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as exc:
        return exc.status
    return 200


def eventually(call: Callable[[], object], expected: int) -> int:
    """The status of ``call`` once the apiserver's webhook cache has caught up (or the last)."""
    deadline = time.monotonic() + CACHE_WAIT
    while True:
        status = status_of(call)
        if status == expected or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def pod(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_owner_gets_everything_from_iam_not_from_a_group(env, cluster):
    with api_as(env, cluster) as api:
        review = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert review.status.user_info.username.startswith("sandbox-operator@")
        assert "system:masters" not in (review.status.user_info.groups or [])
        # bind on cluster-admin is asked of the authorizer too: IAM's owner may.
        kubernetes.client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
            "metadata": {"name": "owner-made"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "nobody@example.com"}]})


def test_developer_iam_alone_can_create_pods(env, cluster):
    with api_as(env, cluster, CRIER) as api:
        core = kubernetes.client.CoreV1Api(api)
        assert status_of(lambda: core.create_namespaced_pod("test-pods", pod("before"))) == 403
        set_project_role(env, "roles/container.developer", f"serviceAccount:{CRIER}")
        try:
            assert eventually(lambda: core.create_namespaced_pod("test-pods", pod("dev")), 200) == 200
            assert status_of(lambda: core.list_namespaced_pod("test-pods")) == 200
            assert status_of(lambda: core.read_namespaced_secret("nope", "test-pods")) == 404  # may read
            rbac = kubernetes.client.RbacAuthorizationV1Api(api)
            # but hands out no rights, and changes no cluster-scoped object but namespaces
            assert status_of(lambda: rbac.create_namespaced_role_binding("test-pods", {
                "metadata": {"name": "dev-grant"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": DECK}]})) == 403
            assert status_of(lambda: core.create_node({"metadata": {"name": "n1"}})) == 403
        finally:
            set_project_role(env, "roles/container.developer", f"serviceAccount:{CRIER}", present=False)


def test_viewer_reads_but_not_secrets_nor_writes(env, cluster):
    set_project_role(env, "roles/container.viewer", f"serviceAccount:{ROTATOR}")
    try:
        with api_as(env, cluster, ROTATOR) as api:
            core = kubernetes.client.CoreV1Api(api)
            assert eventually(lambda: core.list_namespaced_pod("test-pods"), 200) == 200
            assert status_of(lambda: core.list_namespaced_secret("test-pods")) == 403
            assert status_of(lambda: core.create_namespaced_pod("test-pods", pod("viewer"))) == 403
    finally:
        set_project_role(env, "roles/container.viewer", f"serviceAccount:{ROTATOR}", present=False)


def test_cluster_viewer_has_no_kubernetes_rights_until_rbac_grants_them(env, cluster):
    set_project_role(env, "roles/container.clusterViewer", f"serviceAccount:{DECK}")
    try:
        # It may see the cluster through the GKE API ...
        assert env.container(DECK).get_cluster(name=f"{PARENT}/clusters/authz").endpoint == cluster.endpoint
        with api_as(env, cluster, DECK) as api:
            core = kubernetes.client.CoreV1Api(api)
            # ... but nothing inside it,
            assert status_of(lambda: core.list_namespaced_pod("test-pods")) == 403
            with api_as(env, cluster) as admin:  # until RBAC names the GSA as a User.
                kubernetes.client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding("test-pods", {
                    "metadata": {"name": "deck-view"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DECK}]})
            assert eventually(lambda: core.list_namespaced_pod("test-pods"), 200) == 200
            assert status_of(lambda: core.list_namespaced_pod("default")) == 403  # only where bound
    finally:
        set_project_role(env, "roles/container.clusterViewer", f"serviceAccount:{DECK}", present=False)


def test_revoked_iam_role_is_refused(env, cluster):
    member = f"serviceAccount:{CONTROLLER_MANAGER}"
    set_project_role(env, "roles/container.developer", member)
    with api_as(env, cluster, CONTROLLER_MANAGER) as api:
        core = kubernetes.client.CoreV1Api(api)
        assert eventually(lambda: core.list_namespaced_pod("test-pods"), 200) == 200
        set_project_role(env, "roles/container.developer", member, present=False)
        assert eventually(lambda: core.list_namespaced_pod("test-pods"), 403) == 403


def test_webhook_answers_sar_from_iam(env, cluster):
    """The webhook itself, as the apiserver calls it (no cache in between)."""
    uid = next(c for c in env.fake.state.clusters.values() if c.name == "authz").uid

    def review(user: str, **attrs: str) -> bool:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attrs}}
        import requests
        answer = requests.post(f"{env.fake.base_url}/_gke/authorize/{uid}", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["kind"] == "SubjectAccessReview"
        return answer.json()["status"]["allowed"]

    assert review("sandbox-operator@prow-sandbox-build.iam.gserviceaccount.com", verb="delete", resource="nodes")
    assert not review(CRIER, verb="get", namespace="test-pods", resource="pods")
    assert not review("system:serviceaccount:default:x", verb="get", resource="pods")


# ---------------------------------------------------------------- the exec plugin stand-in


def exec_kubeconfig(cluster: container_v1.Cluster) -> dict:
    """What the gke_exec credential model delivers: no secret, only the plugin to run."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "authz",
        "clusters": [{"name": "authz", "cluster": {
            "server": f"https://{cluster.endpoint}",
            "certificate-authority-data": cluster.master_auth.cluster_ca_certificate}}],
        "contexts": [{"name": "authz", "context": {"cluster": "authz", "user": "authz"}}],
        "users": [{"name": "authz", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "args": ["--use_application_default_credentials"],
            "provideClusterInfo": True,
            "interactiveMode": "Never"}}}],
    }


@pytest.fixture
def adc_of(env: GcpHandle, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make a seeded principal the Application Default Credentials, and the venv's
    console scripts (the plugin) reachable on PATH, as in a Prow pod."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def use(who: str) -> None:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(env.fake.credentials[who]))
    return use


def test_exec_kubeconfig_lists_pods_as_the_gsa(env, cluster, adc_of):
    adc_of(CONTROLLER_MANAGER)
    with api_as(env, cluster) as admin:
        kubernetes.client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding("test-pods", {
            "metadata": {"name": "pcm-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_MANAGER}]})
    api = kubernetes.config.new_client_from_config_dict(exec_kubeconfig(cluster))
    with api:
        core = kubernetes.client.CoreV1Api(api)
        assert eventually(lambda: core.list_namespaced_pod("test-pods"), 200) == 200
        who = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert who.status.user_info.username == CONTROLLER_MANAGER


def test_exec_kubeconfig_of_an_unbound_gsa_is_refused(env, cluster, adc_of):
    adc_of(CRIER)  # no IAM role, no RBAC binding
    with kubernetes.config.new_client_from_config_dict(exec_kubeconfig(cluster)) as api:
        assert status_of(lambda: kubernetes.client.CoreV1Api(api).list_namespaced_pod("test-pods")) == 403


def run_plugin(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "gke-gcloud-auth-plugin"), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_plugin_speaks_exec_credential(env):
    info = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "spec": {"interactive": False, "cluster": {"server": "https://127.0.0.1:1"}}}
    done = run_plugin("--use_application_default_credentials", KUBERNETES_EXEC_INFO=json.dumps(info),
                      GOOGLE_APPLICATION_CREDENTIALS=str(env.fake.credentials[DECK]))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["apiVersion"] == "client.authentication.k8s.io/v1" and answer["kind"] == "ExecCredential"
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    with env.fake.state.lock:  # a token the fake issued, to that principal
        assert env.fake.state.token(answer["status"]["token"]).principal.email == DECK


@pytest.mark.parametrize("args, exec_info, expected", [
    ((), None, "use_application_default_credentials"),
    (("--use_application_default_credentials",), {"apiVersion": "client.authentication.k8s.io/v1alpha1",
                                                   "kind": "ExecCredential"}, "unsupported"),
    (("--use_application_default_credentials",), "not json", "not JSON"),
])
def test_plugin_refuses_what_it_cannot_serve(env, args, exec_info, expected):
    extra = {} if exec_info is None else {
        "KUBERNETES_EXEC_INFO": exec_info if isinstance(exec_info, str) else json.dumps(exec_info)}
    done = run_plugin(*args, GOOGLE_APPLICATION_CREDENTIALS=str(env.fake.credentials[DECK]), **extra)
    assert done.returncode == 1 and expected in done.stderr and not done.stdout


def test_plugin_without_credentials_fails(tmp_path):
    done = run_plugin("--use_application_default_credentials",
                      GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"))
    assert done.returncode == 1 and "Application Default Credentials" in done.stderr

