"""The filters that derive a build cluster's names from its settings (plugins/filter/build_cluster.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.filter import build_cluster as f

PROW = {"project": "prow-project"}
GKE = {"alias": "build-a", "project": "team-a", "gke": {"location": "us-central1", "name": "build"}}
KUBECONFIG = {"alias": "build-b", "project": "team-b", "kubeconfig": "/k/b", "context": "b"}


def test_a_gke_cluster_is_reached_through_the_gke_api():
    assert f.cluster_connection(GKE) == {"gke": "projects/team-a/locations/us-central1/clusters/build"}


def test_any_other_cluster_by_its_kubeconfig_and_context_when_given():
    assert f.cluster_connection(KUBECONFIG) == {"kubeconfig": "/k/b", "context": "b"}
    assert f.cluster_connection(dict(KUBECONFIG, context=None)) == {"kubeconfig": "/k/b"}


@pytest.mark.parametrize("bad", [None, "build-a", {"project": "p"}])
def test_settings_without_an_alias_are_refused(bad):
    with pytest.raises(AnsibleFilterError, match="cluster_connection"):
        f.cluster_connection(bad)


def test_the_secret_is_named_after_the_alias_in_the_prow_project_unless_set():
    assert f.cluster_secret(GKE, PROW) == "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a"
    assert f.cluster_secret(dict(GKE, secret_project="team-a", secret_name="kc"), PROW) == "projects/team-a/secrets/kc"


def test_members_carry_the_alias_the_secret_and_whether_they_may_be_missing():
    assert f.cluster_members([GKE, dict(KUBECONFIG, optional=True)], PROW) == [
        {"name": "build-a", "secret": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a", "optional": False},
        {"name": "build-b", "secret": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-b", "optional": True},
    ]


HOSTVARS = {
    "build-a": {"build_cluster": {"project": "team-a", "gke": GKE["gke"]}},
    "build-b": {"build_cluster": {"project": "team-b", "kubeconfig": "/k/b", "state": "absent"}},
    "build-c": {"build_cluster": {"project": "team-c", "kubeconfig": "/k/c"}},
}


def test_each_host_gives_its_settings_with_its_name_as_alias():
    clusters = f.build_clusters_of(["build-a", "build-c"], HOSTVARS)
    assert [(c["alias"], c["project"]) for c in clusters] == [("build-a", "team-a"), ("build-c", "team-c")]
    assert "alias" not in HOSTVARS["build-a"]["build_cluster"]  # a copy: hostvars are not changed


def test_a_host_without_settings_is_an_error_naming_it():
    with pytest.raises(AnsibleFilterError, match="host build-x"):
        f.build_clusters_of(["build-x"], {"build-x": {}})


def test_the_instance_keeps_every_cluster_but_absent_and_removed_ones():
    kept = f.instance_clusters(list(HOSTVARS), HOSTVARS, removed=["build-c"], confirmed=["build-a"])
    assert [(c["alias"], c["optional"]) for c in kept] == [("build-a", False)]
    # A cluster this run did not confirm (outside --limit, or failed) may lack a stored kubeconfig.
    kept = f.instance_clusters(list(HOSTVARS), HOSTVARS, confirmed=["build-a"])
    assert [(c["alias"], c["optional"]) for c in kept] == [("build-a", False), ("build-c", True)]


KEYLESS = dict(GKE, alias="build-k", credential_model="gke_exec")


def test_keyless_clusters_store_no_kubeconfig_and_are_exec_members_instead():
    assert [m["name"] for m in f.cluster_members([GKE, KEYLESS, KUBECONFIG], PROW)] == ["build-a", "build-b"]
    assert f.exec_cluster_members([GKE, dict(KEYLESS, optional=True), KUBECONFIG]) == [
        {"name": "build-k", "gke": "projects/team-a/locations/us-central1/clusters/build", "optional": True}]


def test_a_keyless_cluster_must_be_a_gke_cluster():
    with pytest.raises(AnsibleFilterError, match="build-b: credential_model gke_exec needs a GKE cluster"):
        f.exec_cluster_members([dict(KUBECONFIG, credential_model="gke_exec")])


def test_google_identities_are_rbac_users_by_email():
    assert f.rbac_users(["a@p.iam.gserviceaccount.com"]) == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "a@p.iam.gserviceaccount.com"}]
    with pytest.raises(AnsibleFilterError, match="emails"):
        f.rbac_users(["serviceaccount-without-domain"])


def test_clusters_of_one_project_sharing_the_job_ksa_must_agree_on_job_identity():
    a = {"alias": "a", "project": "p"}
    b = {"alias": "b", "project": "p", "job_identity": "direct"}
    [conflict] = f.job_identity_conflicts([a, b, {"alias": "c", "project": "p", "job_identity": "gsa"}])
    assert "project p" in conflict and "test-pods/prowjob-default-sa" in conflict
    assert "a, c: gsa" in conflict and "b: direct" in conflict


@pytest.mark.parametrize("other", [
    {"alias": "b", "project": "q", "job_identity": "direct"},  # another project, another pool
    {"alias": "b", "project": "p", "job_identity": "direct", "job_service_account": "jobs-b"},  # another KSA
    {"alias": "b", "project": "p", "job_identity": "direct", "pod_namespace": "jobs"},
    {"alias": "b", "project": "p"},  # the same identity, the same way
    {"alias": "b", "project": "p", "job_identity": "federated"},  # its own pool and provider, no GSA touched
])
def test_clusters_that_share_no_job_identity_or_agree_are_no_conflict(other):
    assert f.job_identity_conflicts([{"alias": "a", "project": "p"}, other]) == []


ACCOUNTS = {c: f"prow-{c.removeprefix('prow-')}@prow-project.iam.gserviceaccount.com"
            for c in ("prow-controller-manager", "sinker", "crier", "deck")}


def _by_kind_name(documents):
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def test_per_component_rbac_gives_each_component_exactly_its_verbs():
    docs = _by_kind_name(f.component_rbac(ACCOUNTS, "test-pods"))
    assert set(docs) == {(k, n) for n in ("prow-controller-manager", "prow-sinker", "prow-crier", "prow-deck")
                         for k in ("Role", "RoleBinding")} | {("ClusterRole", "prow-crier"), ("ClusterRoleBinding", "prow-crier")}
    assert docs[("Role", "prow-sinker")]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "watch", "get", "patch"]}]
    assert docs[("Role", "prow-deck")]["rules"] == [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    assert docs[("ClusterRole", "prow-crier")]["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    assert "namespace" not in docs[("ClusterRoleBinding", "prow-crier")]["metadata"]
    binding = docs[("RoleBinding", "prow-controller-manager")]
    assert binding["metadata"]["namespace"] == "test-pods"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prow-controller-manager"}
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": ACCOUNTS["prow-controller-manager"]}]


def test_absent_lists_the_objects_of_the_components_left_out():
    assert f.component_rbac(ACCOUNTS, "test-pods", absent=True) == []
    assert len(f.component_rbac({}, "test-pods", absent=True)) == 10
    assert f.component_rbac({}, "test-pods") == []
    only_deck = _by_kind_name(f.component_rbac({"deck": ACCOUNTS["deck"]}, "ns", absent=True))
    assert ("Role", "prow-deck") not in only_deck and ("ClusterRoleBinding", "prow-crier") in only_deck


@pytest.mark.parametrize("accounts", [{"plank": "prow-plank@p-roject.iam.gserviceaccount.com"},
                                      {"deck": "not-an-email"}, ["deck"]])
def test_component_rbac_refuses_unknown_components_and_non_gsa_values(accounts):
    with pytest.raises(AnsibleFilterError, match="component_rbac: "):
        f.component_rbac(accounts, "test-pods")


PER_COMPONENT = dict(GKE, access="per-component")
COMPONENTS = ["prow-controller-manager", "sinker", "crier", "deck"]


def test_token_per_component_rbac_binds_each_components_own_service_account_created_first():
    documents = f.component_rbac(COMPONENTS, "test-pods", service_account_namespace="default")
    assert [d["kind"] for d in documents[:4]] == ["ServiceAccount"] * 4
    assert [d["metadata"] for d in documents[:4]] == [{"name": n, "namespace": "default"} for n in
                                                      ("prow-controller-manager", "prow-sinker", "prow-crier", "prow-deck")]
    docs = _by_kind_name(documents)
    assert docs[("RoleBinding", "prow-sinker")]["subjects"] == [{"kind": "ServiceAccount", "name": "prow-sinker", "namespace": "default"}]
    assert docs[("ClusterRoleBinding", "prow-crier")]["subjects"] == [{"kind": "ServiceAccount", "name": "prow-crier",
                                                                       "namespace": "default"}]
    assert docs[("Role", "prow-deck")]["rules"] == [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]


def test_token_per_component_absent_deletes_the_bindings_before_the_service_accounts():
    documents = f.component_rbac([], "test-pods", absent=True, service_account_namespace="default")
    assert len(documents) == 14 and [d["kind"] for d in documents[-4:]] == ["ServiceAccount"] * 4
    assert all(not d.get("subjects") for d in documents if "Binding" in d["kind"])
    assert f.component_rbac(COMPONENTS, "test-pods", absent=True, service_account_namespace="default") == []


@pytest.mark.parametrize("components, namespace", [(["plank"], "default"), ("sinker", "default"), (COMPONENTS, "")])
def test_token_per_component_rbac_refuses_unknown_components_and_no_namespace(components, namespace):
    with pytest.raises(AnsibleFilterError, match="component_rbac: "):
        f.component_rbac(components, "test-pods", service_account_namespace=namespace)


def test_each_component_stores_its_kubeconfig_beside_the_clusters_secret():
    assert f.component_secrets(PER_COMPONENT, PROW) == {
        "prow-controller-manager": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a-controller-manager",
        "sinker": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a-sinker",
        "crier": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a-crier",
        "deck": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-a-deck"}
    assert f.component_secret_name("prow-build-clusters", "prow-controller-manager") == "prow-build-clusters-controller-manager"
    assert f.component_object_name("sinker") == "prow-sinker"


def test_a_per_component_cluster_is_a_member_of_each_components_secret_only():
    clusters = [GKE, dict(PER_COMPONENT, alias="build-p", optional=True), KUBECONFIG]
    assert [m["name"] for m in f.cluster_members(clusters, PROW)] == ["build-a", "build-b"]
    members = f.component_cluster_members(clusters, PROW)
    assert sorted(members) == sorted(COMPONENTS)
    assert members["sinker"] == [{"name": "build-p", "optional": True,
                                  "secret": "projects/prow-project/secrets/prow_build_cluster_kubeconfig_build-p-sinker"}]
    assert f.component_cluster_members(clusters, PROW, left_out=["build-p"])["sinker"] == []
    # Keyless per-component access stores nothing: it is in neither.
    keyless = dict(PER_COMPONENT, credential_model="gke_exec")
    assert f.cluster_members([keyless], PROW) == [] and f.cluster_members([keyless], PROW, "deck") == []
    with pytest.raises(AnsibleFilterError, match="unknown component 'plank'"):
        f.cluster_members(clusters, PROW, "plank")


def test_the_platform_is_the_clusters_else_gke_for_a_gke_cluster_else_auto():
    assert f.cluster_platform(GKE) == "gke"
    assert f.cluster_platform(KUBECONFIG) == "auto"
    assert f.cluster_platform(dict(KUBECONFIG, platform="eks")) == "eks"
    assert f.cluster_platform(dict(KUBECONFIG, platform="aks")) == "aks"


def test_the_gcs_credentials_secret_only_with_job_identity_federated():
    assert f.cluster_gcs_credentials_secret(KUBECONFIG) == ""
    assert f.cluster_gcs_credentials_secret(dict(KUBECONFIG, job_identity="gsa", gcs_credentials_secret="x")) == ""
    assert f.cluster_gcs_credentials_secret(dict(KUBECONFIG, job_identity="federated")) == "gcs-credentials"
    federated = dict(KUBECONFIG, job_identity="federated", gcs_credentials_secret="team-b-gcs")
    assert f.cluster_gcs_credentials_secret(federated) == "team-b-gcs"


def test_the_federation_names_default_to_the_project_the_shared_pool_and_the_alias():
    assert f.cluster_federation(KUBECONFIG) == {
        "project": "team-b", "pool": "prow-build-clusters", "provider": "build-b", "audiences": []}


def test_the_federation_key_names_each_of_them_and_eks_allows_its_apiservers_audience():
    named = dict(KUBECONFIG, federation={"project": "wif-host", "pool": "team-pool", "provider": "prov-b",
                                         "audiences": ["https://b.example"]})
    assert f.cluster_federation(named) == {
        "project": "wif-host", "pool": "team-pool", "provider": "prov-b", "audiences": ["https://b.example"]}
    eks = dict(KUBECONFIG, platform="eks")
    assert f.cluster_federation(eks)["audiences"] == ["https://kubernetes.default.svc"]
    # Audiences named, even none, replace the EKS default.
    assert f.cluster_federation(dict(eks, federation={"audiences": []}))["audiences"] == []
    assert f.cluster_federation(dict(eks, federation={"pool": "p-ool"}))["audiences"] == ["https://kubernetes.default.svc"]


def test_a_federation_that_is_not_a_dict_is_refused_naming_the_key():
    with pytest.raises(AnsibleFilterError, match=r"build_clusters\[build-b\]\.federation: expected a dict"):
        f.cluster_federation(dict(KUBECONFIG, federation=["pool"]))
