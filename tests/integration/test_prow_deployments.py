"""The Prow deployment changes keep every cluster, for any number of clusters, and are made once.

Prow's own deployment manifests (sigs.k8s.io/prow, pinned in prow_sandbox.assets) are created
in a real kube-apiserver with the kustomize Component the prow_config role writes, and the
Secret of two build clusters is written by composite_kubeconfig as direct delivery does. Then,
for each component, ``prow_loads`` works out from the live objects which contexts the
component loads, following Prow's loader (sigs.k8s.io/prow pkg/kube/config.go,
LoadClusterConfigs): the --kubeconfig file and every --kubeconfig-dir entry not starting with
".." are the candidates; KUBECONFIG counts only when there is no candidate; a context in two
candidates is fatal; without a "default" context the in-cluster config is "default".
"""

from __future__ import annotations

import base64
import os

import pytest
import yaml
from kubernetes import client

from prow_sandbox import assets

COMPONENTS = ("prow-controller-manager", "sinker", "crier", "deck")
MOUNT = "/etc/prow-build-clusters"
IN_CLUSTER = "in-cluster"


def kubeconfig(contexts):
    """A kubeconfig with these contexts, each with its own server (context -> server)."""
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": s, "certificate-authority-data": "Q0EK"}} for c, s in contexts.items()],
        "users": [{"name": c, "user": {"token": f"token-{c}"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
        "current-context": next(iter(contexts)),
    }


def server(alias):
    return f"https://{alias}.example:443"


# The instance's existing kubeconfig (Secret "kubeconfig", key "config", as in Prow's manifests):
# the default cluster and a build cluster it already has.
EXISTING = {"default": server("default"), "build-old": server("build-old")}


# ---------------------------------------------------------------- Prow's loader, on live objects
def _secret_data(core, namespace, name):
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _configmap_data(core, namespace, name):
    try:
        return dict(core.read_namespaced_config_map(name, namespace).data or {})
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _volume_data(core, namespace, volume):
    """{file: content} of a Secret volume, or of a projected volume of Secrets and ConfigMaps
    (the kubelet refuses a pod whose required source is missing)."""
    if "secret" in volume:
        sources = [("Secret", volume["secret"]["secretName"], volume["secret"].get("optional"))]
    else:
        sources = [("Secret" if "secret" in src else "ConfigMap", (src.get("secret") or src.get("configMap"))["name"],
                    (src.get("secret") or src.get("configMap")).get("optional"))
                   for src in volume["projected"]["sources"]]
    data = {}
    for kind, name, optional in sources:
        found = (_secret_data if kind == "Secret" else _configmap_data)(core, namespace, name)
        assert found is not None or optional, f"{volume['name']}: {kind} {name} missing and not optional"
        data.update(found or {})
    return data


def _files_at(core, namespace, pod_spec, container, path):
    """What a path in the container holds: {file name: content} for a directory, or the
    content of one file (str), from the Secret volume mounted there; None if nothing is."""
    for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
        root = mount["mountPath"].rstrip("/")
        if path != root and not path.startswith(root + "/"):
            continue
        volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
        assert "subPath" not in mount, "a subPath mount never sees an updated Secret"
        data = _volume_data(core, namespace, volume)
        # The kubelet's own entries (..data, ..<timestamp>) are what Prow skips.
        data = dict(data, **{"..data": "<symlink>"})
        rel = path[len(root):].lstrip("/")
        return data if rel == "" else data.get(rel)
    return None


def prow_loads(apps, core, namespace, name):
    """{context: server} that deployment ``name``'s component loads; raises on Prow's errors."""
    pod_spec = client.ApiClient().sanitize_for_serialization(
        apps.read_namespaced_deployment(name, namespace).spec.template.spec)
    container = next(c for c in pod_spec["containers"] if c["name"] == name)
    flags = dict(a[2:].split("=", 1) for a in container.get("args", []) if a.startswith("--") and "=" in a)
    candidates = []
    if flags.get("kubeconfig"):
        content = _files_at(core, namespace, pod_spec, container, flags["kubeconfig"])
        assert isinstance(content, str), f"{name}: --kubeconfig {flags['kubeconfig']} is not a file"
        candidates.append(content)
    if flags.get("kubeconfig-dir"):
        entries = _files_at(core, namespace, pod_spec, container, flags["kubeconfig-dir"])
        assert isinstance(entries, dict), f"{name}: --kubeconfig-dir {flags['kubeconfig-dir']} is not a directory"
        suffix = flags.get("kubeconfig-suffix", "")
        candidates += [entries[f] for f in sorted(entries) if not f.startswith("..") and f.endswith(suffix)]
    if not candidates:  # only then: client-go's default rules, $KUBECONFIG
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for path in filter(None, (env.get("KUBECONFIG") or "").split(":")):
            candidates.append(_files_at(core, namespace, pod_spec, container, path))
    loaded = {}
    for text in candidates:
        config = yaml.safe_load(text)
        servers = {c["name"]: c["cluster"]["server"] for c in config["clusters"]}
        for ctx in config["contexts"]:
            if ctx["name"] in loaded:
                raise AssertionError(f"{name}: context {ctx['name']} occurred more than once (Prow exits)")
            loaded[ctx["name"]] = servers[ctx["context"]["cluster"]]
    loaded.setdefault("default", IN_CLUSTER)
    return loaded


# ---------------------------------------------------------------- fixtures
def prow_manifests(namespace):
    """Prow's four deployments, unchanged but for the namespace."""
    docs = []
    for path in assets.files("prow-deployments"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "Deployment":
                doc["metadata"]["namespace"] = namespace
                docs.append(doc)
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(COMPONENTS)
    return docs


def render_component(ansible, out, namespace, clusters, **role_vars):
    run = ansible.run([{"name": "instance", "ansible.builtin.include_role": {
        "name": "prow.build_cluster.prow_config", "tasks_from": "instance"},
        "vars": {"prow_config_output_dir": str(out), "prow_config_prow_namespace": namespace,
                 "prow_config_secret_sync": "external_secrets",
                 "prow_config_clusters": [{"name": a, "secret": f"projects/prow-project/secrets/prow_build_cluster_kubeconfig_{a}"}
                                          for a in clusters],
                 **role_vars}}])
    assert run.returncode == 0, run.stdout[-3000:]
    return out / "prow"


def kustomize(kubectl, workdir, namespace, component, check=True):
    """kubectl kustomize (kubectl's built-in kustomize) of Prow's deployments with the component."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prow.yaml").write_text(yaml.safe_dump_all(prow_manifests(namespace)))
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["prow.yaml"], "components": [os.path.relpath(component, workdir)]}))
    result = kubectl("kustomize", str(workdir), check=check)
    return result.stdout if check else result


def apply(kubectl, tmp_path, rendered, name="rendered.yaml"):
    path = tmp_path / name
    path.write_text(rendered)
    return kubectl("apply", "--server-side", "--field-manager=prow-admin", "-f", str(path))


def write_build_clusters_secret(ansible, kube_cluster, namespace, aliases):
    """The Secret as direct delivery writes it: composite_kubeconfig, one key per cluster."""
    members = [{"name": a, "content": yaml.safe_dump(kubeconfig({a: server(a)}))} for a in aliases]
    run = ansible.run([{"name": "secret", "prow.build_cluster.composite_kubeconfig": {
        "members": members, "kubeconfig": str(kube_cluster.kubeconfig),
        "kubernetes_secret": {"name": "prow-build-clusters", "namespace": namespace}}}])
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.task("secret")["kubernetes_secret"]["keys"] == sorted(aliases)


@pytest.fixture(name="prow")
def fixture_prow(kube_client, kube_cluster, namespace, ansible):
    """The namespace with Prow's existing kubeconfig Secret and two build clusters' Secret."""
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="kubeconfig"), string_data={"config": yaml.safe_dump(kubeconfig(EXISTING))}))
    write_build_clusters_secret(ansible, kube_cluster, namespace, ["build-a", "build-b"])
    return client.AppsV1Api(kube_client), core


def expected(name, aliases):
    loaded = {a: server(a) for a in aliases}
    # prow-controller-manager and deck loaded Secret "kubeconfig" through KUBECONFIG; sinker
    # and crier only their in-cluster config.
    loaded.update(EXISTING if name in ("prow-controller-manager", "deck") else {"default": IN_CLUSTER})
    return loaded


# ---------------------------------------------------------------- tests
def test_each_component_loads_both_clusters_and_its_existing_ones(prow, ansible, kubectl, namespace, tmp_path):
    apps, core = prow
    component = render_component(ansible, tmp_path / "out", namespace, ["build-a", "build-b"])
    before = {d["metadata"]["name"]: d for d in prow_manifests(namespace)}
    # Unchanged, Prow's manifests load the existing kubeconfig only.
    apply(kubectl, tmp_path, yaml.safe_dump_all(before.values()), "unchanged.yaml")
    for name in COMPONENTS:
        assert prow_loads(apps, core, namespace, name) == expected(name, [])

    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k", namespace, component))
    for name in COMPONENTS:
        assert prow_loads(apps, core, namespace, name) == expected(name, ["build-a", "build-b"]), name
        # What the component had is all still there: its args (first, in order), env, mounts, volumes.
        live = client.ApiClient().sanitize_for_serialization(apps.read_namespaced_deployment(name, namespace).spec.template.spec)
        orig = before[name]["spec"]["template"]["spec"]
        container, orig_container = live["containers"][0], orig["containers"][0]
        assert container["args"][:len(orig_container["args"])] == orig_container["args"]
        assert container["args"][len(orig_container["args"])] == f"--kubeconfig-dir={MOUNT}"
        assert [e["name"] for e in container.get("env", [])] == [e["name"] for e in orig_container.get("env", [])]
        assert {m["mountPath"] for m in orig_container["volumeMounts"]} < {m["mountPath"] for m in container["volumeMounts"]}
        assert {v["name"] for v in orig["volumes"]} | {"prow-build-clusters"} == {v["name"] for v in live["volumes"]}


def test_a_second_apply_or_a_third_cluster_changes_only_the_secret(prow, ansible, kubectl, kube_cluster, namespace, tmp_path):
    apps, core = prow
    two = render_component(ansible, tmp_path / "two", namespace, ["build-a", "build-b"])
    three = render_component(ansible, tmp_path / "three", namespace, ["build-a", "build-b", "build-c"])
    # Made once: the deployments' files do not depend on the clusters; only the ExternalSecret does.
    files = sorted(p.name for p in two.iterdir())
    assert files == sorted(p.name for p in three.iterdir())
    for name in files:
        same = (two / name).read_text() == (three / name).read_text()
        assert same == (name != "external-secret.yaml"), name
    entries = [d for d in yaml.safe_load_all((three / "external-secret.yaml").read_text()) if d["kind"] == "ExternalSecret"][0]
    assert [(e["secretKey"], e["remoteRef"]["key"]) for e in entries["spec"]["data"]] == [
        (a, f"prow_build_cluster_kubeconfig_{a}") for a in ("build-a", "build-b", "build-c")]

    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k2", namespace, two))

    def versions():
        return {n: apps.read_namespaced_deployment(n, namespace).metadata.resource_version for n in COMPONENTS}

    first = versions()
    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k2", namespace, two))
    assert versions() == first, "applying the same changes again wrote the deployments"
    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k3", namespace, three))
    assert versions() == first, "a third cluster changed the deployments"

    write_build_clusters_secret(ansible, kube_cluster, namespace, ["build-a", "build-b", "build-c"])
    assert versions() == first
    for name in COMPONENTS:
        assert prow_loads(apps, core, namespace, name) == expected(name, ["build-a", "build-b", "build-c"]), name


def test_before_the_first_cluster_prow_keeps_what_it_had(prow, ansible, kubectl, namespace, tmp_path):
    # The volume is optional: without the Secret every component loads what it loaded before.
    apps, core = prow
    core.delete_namespaced_secret("prow-build-clusters", namespace)
    component = render_component(ansible, tmp_path / "out", namespace, [])
    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k", namespace, component))
    for name in COMPONENTS:
        assert prow_loads(apps, core, namespace, name) == expected(name, []), name


# ---------------------------------------------------------------- the check can fail
def old_patch(alias, existing):
    """What out/<alias>/prow-deployments-patch.yaml was: a strategic-merge patch per cluster
    whose KUBECONFIG names the existing files (none by default) and this cluster's file."""
    return [{"spec": {"template": {"spec": {
        "volumes": [{"name": alias, "secret": {"secretName": f"kubeconfig-{alias}"}}],
        "containers": [{"name": name, "volumeMounts": [{"name": alias, "mountPath": f"/etc/{alias}", "readOnly": True}],
                        "env": [{"name": "KUBECONFIG", "value": ":".join(existing + [f"/etc/{alias}/{alias}"])}]}]}}}}
        for name in COMPONENTS]


def test_the_old_kubeconfig_patches_drop_the_default_cluster_and_each_other(prow, kubectl, namespace, tmp_path):
    apps, core = prow
    apply(kubectl, tmp_path, yaml.safe_dump_all(prow_manifests(namespace)), "unchanged.yaml")
    for alias in ("build-a", "build-b"):
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"kubeconfig-{alias}"), string_data={alias: yaml.safe_dump(kubeconfig({alias: server(alias)}))}))
        for name, patch in zip(COMPONENTS, old_patch(alias, [])):
            apps.patch_namespaced_deployment(name, namespace, patch)
    for name in COMPONENTS:
        loaded = prow_loads(apps, core, namespace, name)
        assert loaded != expected(name, ["build-a", "build-b"])
        # The last cluster's patch wins: build-a and the existing clusters are gone.
        assert loaded == {"build-b": server("build-b"), "default": IN_CLUSTER}, name


def test_adding_only_kubeconfig_dir_drops_what_kubeconfig_loaded(prow, ansible, kubectl, namespace, tmp_path):
    # Any --kubeconfig-dir file makes Prow ignore KUBECONFIG: without the --kubeconfig the role
    # adds, prow-controller-manager and deck lose the default cluster and build-old.
    apps, core = prow
    naive = [{"name": name} for name in COMPONENTS]
    component = render_component(ansible, tmp_path / "out", namespace, ["build-a", "build-b"], prow_config_deployments=naive)
    apply(kubectl, tmp_path, kustomize(kubectl, tmp_path / "k", namespace, component))
    for name in ("prow-controller-manager", "deck"):
        loaded = prow_loads(apps, core, namespace, name)
        assert "build-old" not in loaded and loaded["default"] == IN_CLUSTER
        assert loaded != expected(name, ["build-a", "build-b"])


def test_a_patch_for_another_container_layout_fails_instead_of_patching_the_wrong_one(ansible, kubectl, namespace, tmp_path):
    deployments = [{"name": "prow-controller-manager", "container": "plank"}]
    component = render_component(ansible, tmp_path / "out", namespace, ["build-a"], prow_config_deployments=deployments)
    result = kustomize(kubectl, tmp_path / "k", namespace, component, check=False)
    assert result.returncode != 0
    assert "testing value" in result.stderr or "test" in result.stderr.lower(), result.stderr
