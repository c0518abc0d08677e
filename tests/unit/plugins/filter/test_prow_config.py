"""Unit tests for the prow_config filters: every file the prow_config role writes, and bad inputs.

tests/integration/test_prow_deployments.py applies the Component to Prow's real manifests; here
each document's structure, the patch operations (applied to a small deployment with a JSON 6902
subset) and the input checks.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.filter import prow_config
from ansible_collections.prow.build_cluster.plugins.filter.prow_config import build_cluster_files, prow_instance_files

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[4] / "roles/prow_config/defaults/main.yml").read_text())
ROTATION = {"schedule": "17 */6 * * *", "cluster": "test-infra-trusted", "namespace": "test-pods",
            "service_account": "prow-build-cluster-rotator", "image": "ghcr.io/prow-build-cluster/ee:0.1.0",
            "vars_configmap": "rotate-build-a"}
CLUSTERS = [{"name": "build-b", "secret": "projects/prow-project/secrets/kubeconfig_build-b"},
            {"name": "build-a", "secret": "projects/prow-project/secrets/kubeconfig_build-a", "optional": True}]
ESO = {"secret_store": "prow-gsm", "refresh_interval": "10m"}
MOUNT = "/etc/prow-build-clusters"


def cluster_files(alias="build-a", **kwargs):
    args = {"bucket": "results", "job_service_account": "prowjob-default-sa", "rotation": dict(ROTATION)}
    args.update(kwargs)
    return build_cluster_files(alias, **args)


def instance_files(deployments=None, **kwargs):
    args = {"clusters": copy.deepcopy(CLUSTERS), "secret": "prow-build-clusters", "mount": MOUNT,
            "prow_namespace": "prow", "secret_sync": "external_secrets", **ESO}
    args.update(kwargs)
    return prow_instance_files(DEFAULTS["prow_config_deployments"] if deployments is None else deployments, **args)


def apply_patch(doc, ops):
    """The JSON 6902 operations the patches use (test, and add to the end of a list), as kustomize applies them."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = op["path"].lstrip("/").split("/")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if op["op"] == "test":
            current = target[int(last)] if isinstance(target, list) else target[last]
            if current != op["value"]:
                raise ValueError(f"testing value {op['path']} failed: {current!r} != {op['value']!r}")
        elif op["op"] == "add" and last == "-":
            target.append(op["value"])
        else:
            raise AssertionError(f"unexpected operation {op}")
    return doc


def deployment(*containers):
    """The pod template of a deployment with these containers (name -> args), as Prow's manifests have them."""
    return {"spec": {"template": {"spec": {
        "volumes": [{"name": "config", "configMap": {"name": "config"}}],
        "containers": [{"name": n, "args": list(args), "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}
                       for n, args in containers],
    }}}}


def test_the_filter_module_exposes_both_filters():
    assert prow_config.FilterModule().filters() == {
        "build_cluster_files": build_cluster_files, "prow_instance_files": prow_instance_files}


# ---------------------------------------------------------------- per build cluster
def test_the_decoration_entry_names_the_bucket_the_job_ksa_and_an_empty_credentials_secret():
    files = cluster_files(bucket="my-results", job_service_account="jobs")
    assert list(files) == ["decoration-config.yaml", "rotation-periodic.yaml", "rotation-cronjob.yaml"]
    assert files["decoration-config.yaml"] == [{"plank": {"default_decoration_config_entries": [{
        "cluster": "build-a",
        "config": {"gcs_configuration": {"bucket": "my-results"}, "default_service_account_name": "jobs",
                   "gcs_credentials_secret": ""},
    }]}}]


def test_a_federated_cluster_s_decoration_entry_names_its_credential_configuration_secret():
    files = cluster_files(gcs_credentials_secret="gcs-credentials")
    [entry] = files["decoration-config.yaml"][0]["plank"]["default_decoration_config_entries"]
    assert entry["config"]["gcs_credentials_secret"] == "gcs-credentials"
    with pytest.raises(AnsibleFilterError, match="gcs_credentials_secret"):
        cluster_files(gcs_credentials_secret="Bad_Secret")


def test_the_rotation_periodic_and_cronjob_run_the_same_pod():
    files = cluster_files(rotation=dict(ROTATION, schedule="0 * * * *", image="reg.example/ee:2", vars_configmap="cm"))
    [periodics] = files["rotation-periodic.yaml"]
    [job] = periodics["periodics"]
    assert {k: v for k, v in job.items() if k != "spec"} == {
        "name": "rotate-build-cluster-credentials-build-a", "cron": "0 * * * *", "cluster": "test-infra-trusted",
        "decorate": True,
        "annotations": {"description": "Rotates the token Prow uses for build cluster build-a (prow.build_cluster rotate.yml)"}}
    pod = job["spec"]
    assert pod["serviceAccountName"] == "prow-build-cluster-rotator"
    [container] = pod["containers"]
    assert container["image"] == "reg.example/ee:2"
    assert container["command"] == ["ansible-playbook", "prow.build_cluster.rotate", "-e", "@/etc/prow-build-cluster/vars.yml"]
    assert container["volumeMounts"] == [{"name": "vars", "mountPath": "/etc/prow-build-cluster", "readOnly": True}]
    assert pod["volumes"] == [{"name": "vars", "configMap": {"name": "cm"}}]

    [cronjob] = files["rotation-cronjob.yaml"]
    assert cronjob["apiVersion"] == "batch/v1" and cronjob["kind"] == "CronJob"
    assert cronjob["metadata"] == {"name": "rotate-build-a", "namespace": "test-pods"}
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"], spec["jobTemplate"]["spec"]["backoffLimit"]) == ("0 * * * *", "Forbid", 2)
    # A CronJob's pod needs restartPolicy Never (or OnFailure); Prow sets its own.
    assert spec["jobTemplate"]["spec"]["template"]["spec"] == dict(pod, restartPolicy="Never")
    assert "restartPolicy" not in pod


def test_the_two_rotation_pods_are_separate_objects():
    files = cluster_files()
    files["rotation-periodic.yaml"][0]["periodics"][0]["spec"]["containers"][0]["image"] = "changed"
    assert files["rotation-cronjob.yaml"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] != "changed"


def test_an_alias_of_45_characters_fits_the_cronjob_name():
    alias = "a" * 45
    assert cluster_files(alias)["rotation-cronjob.yaml"][0]["metadata"]["name"] == "rotate-" + alias


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alias": "Build-A"}, "alias 'Build-A' is not a valid name"),
    ({"alias": "build_a"}, "alias 'build_a' is not a valid name"),
    ({"alias": ""}, "alias must be a non-empty string"),
    ({"alias": None}, "alias must be a non-empty string"),
    ({"alias": "a" * 46}, "at most 52 characters"),
    ({"bucket": "gs://results"}, "without gs://"),
    ({"bucket": ""}, "bucket must be a non-empty string"),
    ({"job_service_account": "Jobs"}, "job_service_account 'Jobs' is not a valid name"),
    ({"rotation": {k: v for k, v in ROTATION.items() if k != "image"}}, "rotation lacks ['image']"),
    ({"rotation": dict(ROTATION, schedul="x")}, "rotation has unknown keys ['schedul']"),
    ({"rotation": dict(ROTATION, schedule="")}, "rotation.schedule must be a non-empty string"),
    ({"rotation": dict(ROTATION, namespace="Test")}, "rotation.namespace 'Test' is not a valid name"),
    ({"rotation": "17 */6 * * *"}, "rotation must be a dict"),
])
def test_bad_cluster_inputs_fail_naming_the_input(kwargs, message):
    with pytest.raises(AnsibleFilterError, match="^build_cluster_files: .*" + re.escape(message)):
        cluster_files(**kwargs)


# ---------------------------------------------------------------- once per Prow instance
def test_the_component_patches_each_deployment_in_the_prow_namespace():
    files = instance_files()
    names = ["prow-controller-manager", "sinker", "crier", "deck"]
    assert list(files) == ["kustomization.yaml"] + [f"{n}-patch.yaml" for n in names] + ["external-secret.yaml"]
    assert files["kustomization.yaml"] == [{
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "patches": [{"path": f"{n}-patch.yaml",
                     "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": n, "namespace": "prow"}}
                    for n in names]}]


def test_a_patch_guards_the_container_then_appends_volume_mount_and_kubeconfig_dir():
    [ops] = instance_files()["sinker-patch.yaml"]
    c = "/spec/template/spec/containers/0"
    assert ops == [
        {"op": "test", "path": f"{c}/name", "value": "sinker"},
        {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {
            "name": "prow-build-clusters",
            "secret": {"secretName": "prow-build-clusters", "defaultMode": 420, "optional": True}}},
        {"op": "add", "path": f"{c}/volumeMounts/-", "value": {"name": "prow-build-clusters", "mountPath": MOUNT, "readOnly": True}},
        {"op": "add", "path": f"{c}/args/-", "value": f"--kubeconfig-dir={MOUNT}"},
    ]
    assert all("subPath" not in op["value"] for op in ops if isinstance(op["value"], dict))


def test_a_deployment_with_kubeconfig_gets_it_as_kubeconfig_and_one_without_does_not():
    files = instance_files([{"name": "prow-controller-manager", "kubeconfig": "/etc/kubeconfig/config"},
                            {"name": "sinker"}, {"name": "crier", "kubeconfig": ""}])
    before = deployment(("prow-controller-manager", ["--dry-run=false"]))
    after = apply_patch(before, files["prow-controller-manager-patch.yaml"][0])
    assert after["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--dry-run=false", f"--kubeconfig-dir={MOUNT}", "--kubeconfig=/etc/kubeconfig/config"]
    for name in ("sinker", "crier"):
        after = apply_patch(deployment((name, ["--dry-run=false"])), files[f"{name}-patch.yaml"][0])
        assert after["spec"]["template"]["spec"]["containers"][0]["args"] == ["--dry-run=false", f"--kubeconfig-dir={MOUNT}"]


def test_the_role_defaults_keep_kubeconfig_for_the_components_that_load_it():
    # Prow's own manifests: prow-controller-manager and deck load KUBECONFIG=/etc/kubeconfig/config.
    files = instance_files()
    flags = {name: [op["value"] for op in files[f"{name}-patch.yaml"][0] if op["path"].endswith("/args/-")]
             for name in ("prow-controller-manager", "sinker", "crier", "deck")}
    with_kubeconfig = [f"--kubeconfig-dir={MOUNT}", "--kubeconfig=/etc/kubeconfig/config"]
    assert flags == {"prow-controller-manager": with_kubeconfig, "sinker": [f"--kubeconfig-dir={MOUNT}"],
                     "crier": [f"--kubeconfig-dir={MOUNT}"], "deck": with_kubeconfig}


def test_the_patch_appends_to_the_container_it_names_and_keeps_what_was_there():
    files = instance_files([{"name": "hook", "container": "hook-main", "container_index": 1}])
    before = deployment(("sidecar", []), ("hook-main", ["--config-path=/etc/config/config.yaml"]))
    after = apply_patch(before, files["hook-patch.yaml"][0])
    pod = after["spec"]["template"]["spec"]
    assert pod["containers"][0] == before["spec"]["template"]["spec"]["containers"][0]
    assert pod["containers"][1]["args"] == ["--config-path=/etc/config/config.yaml", f"--kubeconfig-dir={MOUNT}"]
    assert [m["mountPath"] for m in pod["containers"][1]["volumeMounts"]] == ["/etc/config", MOUNT]
    assert [v["name"] for v in pod["volumes"]] == ["config", "prow-build-clusters"]


def test_the_patch_of_another_container_layout_fails_instead_of_patching_the_wrong_container():
    files = instance_files([{"name": "prow-controller-manager"}])
    with pytest.raises(ValueError, match="testing value"):
        apply_patch(deployment(("plank", [])), files["prow-controller-manager-patch.yaml"][0])


def test_the_external_secret_has_one_entry_per_cluster_sorted_by_alias():
    files = instance_files(clusters=CLUSTERS + [{"name": "a-first", "secret": "projects/prow-project/secrets/s_first"}],
                           prow_namespace="prow-ns", secret="bc", secret_store="store-x", refresh_interval="1h")
    store, external_secret = files["external-secret.yaml"]
    # The store's project is that of the secrets.
    assert store == {"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "store-x"},
                     "spec": {"provider": {"gcpsm": {"projectID": "prow-project", "secretVersionSelectionPolicy": "LatestOrFail"}}}}
    assert external_secret == {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "bc", "namespace": "prow-ns"},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "store-x"},
            "target": {"name": "bc", "creationPolicy": "Owner"},
            "data": [{"secretKey": a, "remoteRef": {"key": s, "version": "latest"}}
                     for a, s in (("a-first", "s_first"), ("build-a", "kubeconfig_build-a"), ("build-b", "kubeconfig_build-b"))],
        },
    }


def test_the_callers_cluster_list_is_not_reordered():
    clusters = copy.deepcopy(CLUSTERS)
    instance_files(clusters=clusters)
    assert clusters == CLUSTERS


@pytest.mark.parametrize("kwargs", [{"secret_sync": "direct"}, {"clusters": []}])
def test_no_external_secret_with_direct_delivery_or_without_clusters(kwargs):
    # The ESO settings are not needed then.
    files = instance_files(**kwargs, secret_store=None, refresh_interval=None)
    assert files["external-secret.yaml"] == []
    assert files["sinker-patch.yaml"] == instance_files()["sinker-patch.yaml"]


def test_only_the_external_secret_depends_on_the_clusters():
    two, three = instance_files(), instance_files(clusters=CLUSTERS + [{"name": "build-c", "secret": "projects/prow-project/secrets/s_c"}])
    assert [n for n in two if two[n] != three[n]] == ["external-secret.yaml"]


def test_the_documents_dump_as_plain_yaml():
    # yaml_files dumps with safe_dump: no Python-specific tags, no anchors between documents.
    files = {**instance_files(), **cluster_files()}
    for name, docs in files.items():
        for doc in docs:
            text = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)
            assert "&id" not in text and "!!" not in text, name
            assert yaml.safe_load(text) == doc


@pytest.mark.parametrize(("deployments", "kwargs", "message"), [
    ([], {}, "deployments must not be empty"),
    (None, {"clusters": "build-a"}, "clusters must be a list"),
    ({"name": "sinker"}, {}, "deployments must be a list"),
    ([{"name": "sinker"}, {"name": "sinker", "container_index": 1}], {}, "deployments give the name 'sinker' more than once"),
    ([{"name": "sinker", "container_index": "1"}], {}, "deployments[0].container_index must be an integer >= 0, got '1'"),
    ([{"name": "sinker", "container_index": True}], {}, "deployments[0].container_index must be an integer >= 0, got True"),
    ([{"name": "sinker", "container_index": -1}], {}, "deployments[0].container_index must be an integer >= 0"),
    ([{"name": "sinker", "kubeconfg": "/k"}], {}, "deployments[0] has unknown keys ['kubeconfg']"),
    ([{"container": "sinker"}], {}, "deployments[0] lacks ['name']"),
    (["sinker"], {}, "deployments[0] must be a dict"),
    ([{"name": "Sinker"}], {}, "deployments[0].name 'Sinker' is not a valid name"),
    ([{"name": "sinker", "kubeconfig": "kubeconfig/config"}], {}, "deployments[0].kubeconfig must be an absolute path"),
    (None, {"clusters": CLUSTERS + [{"name": "build-a", "secret": "projects/prow-project/secrets/other"}]},
     "clusters give the alias 'build-a' more than once"),
    (None, {"clusters": [{"name": "Build-A", "secret": "projects/p/secrets/s"}]}, "clusters[0].name 'Build-A' is not a valid name"),
    (None, {"clusters": [{"name": "build-a"}]}, "clusters[0] lacks ['secret']"),
    (None, {"clusters": [{"name": "a", "secret": "s"}]}, "clusters[0].secret must be a Secret Manager secret, projects/PROJECT/secrets/ID"),
    (None, {"clusters": CLUSTERS + [{"name": "build-c", "secret": "projects/other-project/secrets/s"}]},
     "through one ClusterSecretStore, whose project is that of the secrets"),
    (None, {"secret_sync": "kes"}, "secret_sync must be one of ['external_secrets', 'direct'], got 'kes'"),
    (None, {"mount": "etc/prow"}, "mount must be an absolute path"),
    (None, {"secret": "Prow_Secret"}, "secret 'Prow_Secret' is not a valid name"),
    (None, {"prow_namespace": ""}, "prow_namespace must be a non-empty string"),
    (None, {"refresh_interval": "10 minutes"}, "refresh_interval must be a Go duration such as 10m, got '10 minutes'"),
    (None, {"refresh_interval": 600}, "refresh_interval must be a Go duration"),
])
def test_bad_instance_inputs_fail_naming_the_input(deployments, kwargs, message):
    with pytest.raises(AnsibleFilterError, match="^prow_instance_files: .*" + re.escape(message)):
        instance_files(deployments, **kwargs)


def test_unset_container_options_given_as_none_mean_the_defaults():
    files = instance_files([{"name": "sinker", "container": None, "container_index": None, "kubeconfig": None}])
    assert files["sinker-patch.yaml"] == instance_files([{"name": "sinker"}])["sinker-patch.yaml"]


def test_with_the_keyless_configmap_the_volume_projects_it_with_the_secret_into_one_directory():
    [ops] = instance_files(exec_configmap="prow-build-clusters-exec")["sinker-patch.yaml"]
    assert ops[1]["value"] == {"name": "prow-build-clusters", "projected": {"defaultMode": 420, "sources": [
        {"secret": {"name": "prow-build-clusters", "optional": True}},
        {"configMap": {"name": "prow-build-clusters-exec", "optional": True}}]}}
    assert ops[2]["value"]["mountPath"] == MOUNT and ops[3]["value"] == f"--kubeconfig-dir={MOUNT}"


def test_a_bad_keyless_configmap_name_is_refused():
    with pytest.raises(AnsibleFilterError, match="exec_configmap"):
        instance_files(exec_configmap="Not_A_Name")


COMPONENT_CLUSTERS = {
    "prow-controller-manager": [{"name": "build-p", "secret": "projects/prow-project/secrets/kubeconfig_build-p-controller-manager"}],
    "sinker": [{"name": "build-p", "secret": "projects/prow-project/secrets/kubeconfig_build-p-sinker"}],
    "crier": [{"name": "build-p", "secret": "projects/prow-project/secrets/kubeconfig_build-p-crier"}],
    "deck": [],
}


def test_each_component_deployment_projects_its_own_secret_and_others_do_not():
    files = instance_files([{"name": "sinker"}, {"name": "hook"}], exec_configmap="prow-build-clusters-exec",
                           component_clusters=COMPONENT_CLUSTERS)
    assert files["sinker-patch.yaml"][0][1]["value"]["projected"]["sources"] == [
        {"secret": {"name": "prow-build-clusters", "optional": True}},
        {"secret": {"name": "prow-build-clusters-sinker", "optional": True}},
        {"configMap": {"name": "prow-build-clusters-exec", "optional": True}}]
    assert files["hook-patch.yaml"][0][1]["value"]["projected"]["sources"] == [
        {"secret": {"name": "prow-build-clusters", "optional": True}},
        {"configMap": {"name": "prow-build-clusters-exec", "optional": True}}]
    # The same patches with no cluster of per-component access: adding one changes only the ExternalSecrets.
    assert instance_files([{"name": "sinker"}], component_clusters={})["sinker-patch.yaml"] == \
        instance_files([{"name": "sinker"}], component_clusters=COMPONENT_CLUSTERS)["sinker-patch.yaml"]


def test_each_component_with_clusters_gets_an_external_secret_of_its_own_secret():
    documents = instance_files(component_clusters=COMPONENT_CLUSTERS)["external-secret.yaml"]
    names = [d["metadata"]["name"] for d in documents]
    # Sorted by component, so the file does not change with the order they are given in.
    assert names == ["prow-gsm", "prow-build-clusters", "prow-build-clusters-crier",
                     "prow-build-clusters-controller-manager", "prow-build-clusters-sinker"]
    sinker = documents[-1]
    assert sinker["spec"]["target"] == {"name": "prow-build-clusters-sinker", "creationPolicy": "Owner"}
    assert sinker["spec"]["data"] == [{"secretKey": "build-p", "remoteRef": {"key": "kubeconfig_build-p-sinker", "version": "latest"}}]
    only = instance_files(clusters=[], component_clusters=COMPONENT_CLUSTERS)["external-secret.yaml"]
    assert "prow-build-clusters" not in [d["metadata"]["name"] for d in only] and len(only) == 4
    assert instance_files(clusters=[], component_clusters={"deck": []})["external-secret.yaml"] == []


@pytest.mark.parametrize("component_clusters, message", [
    ({"plank": []}, "component_clusters"),
    ({"sinker": [{"name": "build-p", "secret": "not-a-secret"}]}, "component_clusters.sinker[0].secret"),
    ({"sinker": [{"name": "build-p", "secret": "projects/other/secrets/s"}]}, "projects"),
])
def test_bad_component_clusters_are_refused(component_clusters, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        instance_files(component_clusters=component_clusters)
