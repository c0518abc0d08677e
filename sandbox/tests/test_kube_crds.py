"""The real ESO CRDs install, and the apiserver enforces their schemas.

The CRDs are upstream's, unchanged, from the Go module proxy at the versions pinned in
prow_sandbox.assets (``make setup`` fetched them; nothing beside the checkout is read). KES
(kubernetes-client.io) delivery is retired: its CRD is in no registry (docs/architecture.md).
"""

from __future__ import annotations

import copy
import json
import dataclasses

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from prow_sandbox import assets

# The ProwJob CRD (asset prowjob-crd) is 1.6 MB of JSON, over the embedded etcd's default
# 1.5 MiB request limit: it is checked here as a file only.
CRD_ASSETS = ("eso-crds",)

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
    names = []
    for path in (crd for asset in CRD_ASSETS for crd in assets.files(asset)):
        kubectl("apply", "--server-side", "--field-manager=prow-sandbox-tests", "-f", str(path))
        names.append(yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"]["name"])
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{name}" for name in names))
    return names


def _create(api: client.ApiClient, namespace: str, manifest: dict) -> dict:
    group, version = manifest["apiVersion"].split("/")
    plural = manifest["kind"].lower() + "s"
    # Strict, as kubectl does: unknown fields are an error instead of silently pruned.
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, manifest, field_validation="Strict")


def test_crds_are_established_and_serve_v1(crds, kubectl):
    served = kubectl("get", "crd", "externalsecrets.external-secrets.io", "-o",
                     "jsonpath={.spec.versions[?(@.served==true)].name}").stdout.split()
    assert "v1" in served
    assert sorted(crds) == ["clustersecretstores.external-secrets.io", "externalsecrets.external-secrets.io",
                            "secretstores.external-secrets.io"]


@pytest.mark.parametrize("manifest", [ESO], ids=["eso"])
def test_valid_external_secret_is_accepted(crds, kube_client, namespace, manifest):
    created = _create(kube_client, namespace, manifest)
    assert created["metadata"]["uid"]
    # v1.3.2's schema defaults the remoteRef strategies; what was sent is kept.
    sent = manifest["spec"]["data"][0]
    got = created["spec"]["data"][0]
    assert got["secretKey"] == sent["secretKey"]
    assert got["remoteRef"] == {**got["remoteRef"], **sent["remoteRef"]}
    assert got["remoteRef"]["conversionStrategy"] == "Default"


# (manifest, path to change, new value or None to delete, HTTP status, error text).
# Schema violations are 422 Invalid; an unknown field fails strict decoding with 400.
BROKEN = {
    "eso-creation-policy": (ESO, ("spec", "target", "creationPolicy"), "Sometimes", 422,
                            "Unsupported value"),
    "eso-store-kind": (ESO, ("spec", "secretStoreRef", "kind"), "VaultStore", 422,
                       "Unsupported value"),
    "eso-missing-remoteref": (ESO, ("spec", "data", 0, "remoteRef"), None, 422, "Required value"),
    "eso-interval-type": (ESO, ("spec", "refreshInterval"), 3600, 422, "must be of type string"),
    "eso-unknown-field": (ESO, ("spec", "projectId"), "prow-sandbox", 400,
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


def test_crds_come_from_the_pinned_modules():
    for asset in CRD_ASSETS + ("prowjob-crd",):
        module, _ = assets.ASSETS[asset]
        pin = assets.MODULES[module]
        for path in assets.files(asset):
            assert f"{pin.path}@{pin.version}" in str(path)
            assert yaml.safe_load(path.read_text(encoding="utf-8"))["kind"] == "CustomResourceDefinition"


def test_a_module_that_is_not_the_pinned_one_is_refused(monkeypatch):
    # The same version with another hash (as a tampered cache or proxy would give) is refused.
    pin = assets.MODULES["external-secrets"]
    monkeypatch.setitem(assets.MODULES, "external-secrets",
                        dataclasses.replace(pin, sum="h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    assets.module_dir.cache_clear()
    try:
        with pytest.raises(assets.AssetError, match="is not the pinned"):
            assets.files("eso-crds")
    finally:
        monkeypatch.undo()
        assets.module_dir.cache_clear()
    assert assets.files("eso-crds")


def test_the_pinned_modules_need_no_network_once_cached(monkeypatch):
    # GOPROXY=off: the go command may only use its module cache, as on a machine offline.
    monkeypatch.setenv("GOPROXY", "off")
    assets.module_dir.cache_clear()
    try:
        assert {name: len(paths) for name, paths in assets.fetch_all().items()} == {
            "eso-crds": 3, "prowjob-crd": 1, "prow-deployments": 4}
    finally:
        assets.module_dir.cache_clear()
