"""Per-component access in the token model (``access: per-component``, issue #14).

A sandbox of its own: the sandbox's GKE build cluster onboarded with cluster-admin access, then switched
to per-component access. Each Prow component then has a ServiceAccount of its own, bound to exactly the
verbs Prow checks, and its own token in its own Secret Manager secret: SelfSubjectAccessReviews with
each stored token, answered by the real kube-apiserver, say so. The cluster-admin ServiceAccount and its
secret are gone, each component's ExternalSecret in the Prow cluster lists the cluster, a re-run writes
nothing, verify proves each component (and names the one that lost its binding), and switching back
removes every per-component object and revokes the components' tokens.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import kubernetes
import pytest
import yaml
from test_gke_exec import operator
from test_gke_exec_per_component import ALLOWED, DENIED, OBJECTS, onboard, present
from test_gke_exec_switch import exists
from test_playbooks import (  # noqa: F401  pylint: disable=unused-import
    VARS, build_cluster_of, fixture_sandbox, gcp_writes, kube_writes, playbook, recap, refused_within, token_of,
)

from prow_sandbox.gcp.testing import kube_sandbox_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

ALIAS = "build-sandbox"
PROW_PROJECT = "prow-sandbox-prow"
COMPONENTS = {"prow-controller-manager": "prow-controller-manager", "sinker": "prow-sinker",
              "crier": "prow-crier", "deck": "prow-deck"}
SECRET = f"prow_build_cluster_kubeconfig_{ALIAS}"
SECRETS = {"prow-controller-manager": f"{SECRET}-controller-manager", "sinker": f"{SECRET}-sinker",
           "crier": f"{SECRET}-crier", "deck": f"{SECRET}-deck"}
ES_NAMES = {component: "prow-build-clusters-" + secret[len(SECRET) + 1:] for component, secret in SECRETS.items()}


def access_vars(tmp_path, access):
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"][0]["access"] = access
    path = tmp_path / f"vars-{access}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stored_kubeconfig(state, secret):
    """The latest version of a Secret Manager secret of the fake, parsed; None when the secret is gone."""
    session, endpoints = operator(state)
    got = session.get(f"{endpoints['secretmanager']}/v1/projects/{PROW_PROJECT}/secrets/{secret}/versions/latest:access")
    if got.status_code == 404:
        return None
    assert got.status_code == 200, got.text
    return yaml.safe_load(base64.b64decode(got.json()["payload"]["data"]))


def token_client(state, secret):
    """A client of the build cluster with the stored kubeconfig's token (the cluster's CA and server)."""
    config = stored_kubeconfig(state, secret)
    assert [c["name"] for c in config["contexts"]] == [ALIAS]
    return kubernetes.config.new_client_from_config_dict(config, context=ALIAS), config["users"][0]["user"]["token"]


def may(api, verb, resource, subresource, namespace):
    attributes = {"verb": verb, "resource": resource, "version": "v1", "group": ""}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    review = kubernetes.client.AuthorizationV1Api(api).create_self_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attributes}})
    return review.status.allowed


def admin(state):
    return kubernetes.config.new_client_from_config(str(build_cluster_of(state).kubeconfig))


def external_secret(env, name):
    """The ExternalSecret ``name`` in the Prow cluster's namespace, or None."""
    api = kubernetes.config.new_client_from_config(env["PROW_KUBECONFIG"])
    try:
        return kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            "external-secrets.io", "v1", "default", "externalsecrets", name)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture(scope="module", name="per_component")
def fixture_per_component(sandbox, tmp_path_factory):
    state, env = sandbox
    tmp = tmp_path_factory.mktemp("vars")
    onboard(env, access_vars(tmp, "cluster-admin"))
    admin_token = token_of(state)
    vars_file = access_vars(tmp, "per-component")
    switched = onboard(env, vars_file)
    assert recap(switched)["changed"] > 0
    return state, env, tmp, vars_file, admin_token


def test_the_cluster_admin_account_and_secret_are_replaced_by_one_per_component(per_component):
    state, _env, _tmp, _vars, admin_token = per_component
    core = kubernetes.client.CoreV1Api(admin(state))
    assert not exists(lambda: core.read_namespaced_service_account("serviceaccount-cluster-admin", "default"))
    assert all(exists(lambda n=name: core.read_namespaced_service_account(n, "default")) for name in COMPONENTS.values())
    assert all(present(admin(state), kind, name) for kind, name in OBJECTS)
    assert stored_kubeconfig(state, SECRET) is None
    assert refused_within(build_cluster_of(state), admin_token), "the cluster-admin token still authenticates"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_each_components_stored_token_may_do_exactly_its_verbs(per_component, component):
    api, _token = token_client(per_component[0], SECRETS[component])
    refused = [check for check in ALLOWED[component] if not may(api, *check)]
    assert refused == [], f"{component}'s token is refused what Prow needs"
    granted = [check for check in DENIED[component] if may(api, *check)]
    assert granted == [], f"{component}'s token may do more than Prow needs"


def test_each_component_has_its_own_external_secret_and_the_composite_the_controller_managers(per_component):
    state, env, _tmp, _vars, _admin = per_component
    for component, name in ES_NAMES.items():
        document = external_secret(env, name)
        assert document, f"no ExternalSecret {name}"
        assert [(d["secretKey"], d["remoteRef"]["key"]) for d in document["spec"]["data"]] == [(ALIAS, SECRETS[component])]
    assert not external_secret(env, "prow-build-clusters"), "the shared ExternalSecret holds no cluster any more"
    _api, token = token_client(state, SECRETS["prow-controller-manager"])
    assert token_of(state) == token
    patch = yaml.safe_load((state / "out" / "prow" / "sinker-patch.yaml").read_text())
    sources = next(op["value"]["projected"]["sources"] for op in patch if op["path"].endswith("/volumes/-"))
    assert {"secret": {"name": ES_NAMES["sinker"], "optional": True}} in sources


def test_a_rerun_changes_nothing_and_writes_nothing(per_component):
    state, env, _tmp, vars_file, _admin = per_component
    since = datetime.now(timezone.utc)
    again = onboard(env, vars_file)
    assert recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []


def test_verify_proves_each_component_and_names_the_one_that_lost_its_binding(per_component):
    state, env, _tmp, vars_file, _admin = per_component
    verified = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    text = " ".join(verified.stdout.split())
    assert verified.returncode == 0, verified.stdout[-6000:]
    for component, account in COMPONENTS.items():
        assert f"ok permissions of {component}: system:serviceaccount:default:{account} may" in text, (component, text[-6000:])
        assert f"ok token of {component}: authenticates as system:serviceaccount:default:{account}" in text
    # The partner: sinker's RoleBinding gone, verify names sinker's link; onboarding puts it back.
    kubernetes.client.RbacAuthorizationV1Api(admin(state)).delete_namespaced_role_binding("prow-sinker", "test-pods")
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    said = " ".join(broken.stdout.split())
    assert broken.returncode != 0 and "BROKEN permissions of sinker: system:serviceaccount:default:prow-sinker cannot" in said, \
        broken.stdout[-6000:]
    assert "ok permissions of crier:" in said, "the other components are still checked"
    onboard(env, vars_file)
    assert playbook(env, "verify.yml", "-e", f"@{vars_file}").returncode == 0


def test_a_forced_rotation_rotates_every_components_token(per_component):
    state, env, _tmp, vars_file, _admin = per_component
    before = {component: token_client(state, secret)[1] for component, secret in SECRETS.items()}
    rotated = playbook(env, "rotate.yml", "-e", f"@{vars_file}", "-e", "force_rotation=true")
    assert rotated.returncode == 0, rotated.stdout[-4000:]
    after = {component: token_client(state, secret)[1] for component, secret in SECRETS.items()}
    assert [c for c in SECRETS if before[c] == after[c]] == []


def test_direct_delivery_writes_each_components_secret_with_its_own_token(per_component):
    state, env, tmp, _vars, _admin = per_component
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"][0]["access"] = "per-component"
    doc["prow"]["delivery"] = "direct"
    direct = tmp / "vars-direct.yml"
    direct.write_text(yaml.safe_dump(doc))
    onboard(env, direct)
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(env["PROW_KUBECONFIG"]))
    for component, name in ES_NAMES.items():
        data = core.read_namespaced_secret(name, "default").data
        assert sorted(data) == [ALIAS], (name, sorted(data))
        delivered = yaml.safe_load(base64.b64decode(data[ALIAS]))
        assert delivered["users"][0]["user"]["token"] == token_client(state, SECRETS[component])[1], component
    since = datetime.now(timezone.utc)
    again = onboard(env, direct)
    assert recap(again)["changed"] == 0 and kube_writes(state, since) == [], again.stdout[-3000:]


def test_switching_back_to_cluster_admin_removes_every_per_component_object(per_component):
    """Last in this module: it changes the cluster's access for good."""
    state, env, tmp, _vars, _admin = per_component
    tokens = {component: token_client(state, secret)[1] for component, secret in SECRETS.items()}
    onboard(env, access_vars(tmp, "cluster-admin"))
    api = admin(state)
    core = kubernetes.client.CoreV1Api(api)
    assert [name for name in COMPONENTS.values() if exists(lambda n=name: core.read_namespaced_service_account(n, "default"))] == []
    assert [obj for obj in OBJECTS if present(api, *obj)] == []
    assert [s for s in SECRETS.values() if stored_kubeconfig(state, s) is not None] == []
    assert [name for name in ES_NAMES.values() if external_secret(env, name)] == []
    assert stored_kubeconfig(state, SECRET) is not None
    cluster = build_cluster_of(state)
    assert all(refused_within(cluster, token) for token in tokens.values())
