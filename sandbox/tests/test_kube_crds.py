"""The real ESO and KES CRDs install, and the apiserver enforces their schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from prow_sandbox.kube import REPO_ROOT

# CI checks shared/ out beside the repository.
CRD_DIR = REPO_ROOT.parent / "shared" / "crds"
CRD_FILES = (
    "external-secrets.io_externalsecrets.yaml",
    "external-secrets.io_secretstores.yaml",
    "external-secrets.io_clustersecretstores.yaml",
    "kubernetes-client.io_externalsecrets.yaml",
)

ESO = {
    "apiVersion": "external-secrets.io/v1",
    "kind": "ExternalSecret",
    "metadata": {"name": "github-token"},
    "spec": {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": "gcp-secret-manager"},
        "target": {"name": "github-token", "creationPolicy": "Owner"},
        "data": [{"secretKey": "token", "remoteRef": {"key": "prow-github-token"}}],
    },
}
KES = {
    "apiVersion": "kubernetes-client.io/v1",
    "kind": "ExternalSecret",
    "metadata": {"name": "github-token"},
    "spec": {
        "backendType": "gcpSecretsManager",
        "data": [{"key": "prow-github-token", "name": "token"}],
    },
}


def _broken(manifest: dict, path: tuple, value) -> dict:
    broken = copy.deepcopy(manifest)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


@pytest.fixture(scope="module")
def crds(kubectl) -> list[str]:
    """Install the CRDs (server-side apply: they exceed the client-side annotation limit)."""
    if not CRD_DIR.is_dir():
        pytest.fail(f"{CRD_DIR} is missing: the shared/ checkout must sit beside the repository")
    names = []
    for name in CRD_FILES:
        path = CRD_DIR / name
        kubectl("apply", "--server-side", "--field-manager=prow-sandbox-tests", "-f", str(path))
        names.append(yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"]["name"])
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{name}" for name in names))
    return names


def _create(api: client.ApiClient, namespace: str, manifest: dict) -> dict:
    group, version = manifest["apiVersion"].split("/")
    # Strict, as kubectl does: unknown fields are an error instead of silently pruned.
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, "externalsecrets", manifest, field_validation="Strict")


def test_crds_are_established_and_serve_v1(crds, kubectl):
    served = kubectl("get", "crd", "externalsecrets.external-secrets.io", "-o",
                     "jsonpath={.spec.versions[?(@.served==true)].name}").stdout.split()
    assert "v1" in served
    assert len(crds) == len(CRD_FILES)


@pytest.mark.parametrize("manifest", [ESO, KES], ids=["eso", "kes"])
def test_valid_external_secret_is_accepted(crds, kube_client, namespace, manifest):
    created = _create(kube_client, namespace, manifest)
    assert created["metadata"]["uid"]
    assert created["spec"]["data"] == manifest["spec"]["data"]


# (manifest, path to change, new value or None to delete, HTTP status, error text).
# Schema violations are 422 Invalid; an unknown field fails strict decoding with 400.
BROKEN = {
    "eso-creation-policy": (ESO, ("spec", "target", "creationPolicy"), "Sometimes", 422,
                            "Unsupported value"),
    "eso-store-kind": (ESO, ("spec", "secretStoreRef", "kind"), "VaultStore", 422,
                       "Unsupported value"),
    "eso-missing-remoteref": (ESO, ("spec", "data", 0, "remoteRef"), None, 422, "Required value"),
    "eso-interval-type": (ESO, ("spec", "refreshInterval"), 3600, 422, "must be of type string"),
    "kes-backend": (KES, ("spec", "backendType"), "onePassword", 422, "Unsupported value"),
    "kes-unknown-field": (KES, ("spec", "projectId"), "prow-sandbox", 400,
                          'unknown field "spec.projectId"'),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_schema_breaking_external_secret_is_rejected(crds, kube_client, namespace, kubectl,
                                                      tmp_path, case):
    manifest, path, value, status, message = case
    broken = _broken(manifest, path, value)
    with pytest.raises(ApiException) as err:
        _create(kube_client, namespace, broken)
    assert err.value.status == status
    assert message in json.loads(err.value.body)["message"]

    # kubectl sees the same server-side validation (a dry run writes nothing).
    manifest_file = tmp_path / "broken.yaml"
    manifest_file.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(manifest_file),
                     check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_crd_files_are_beside_the_checkout():
    # Guards the path assumption the fixture relies on, with a clearer failure.
    assert all((CRD_DIR / name).is_file() for name in CRD_FILES), CRD_DIR
    assert Path(CRD_DIR).resolve().parent.name == "shared"
