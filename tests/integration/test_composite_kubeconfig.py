"""composite_kubeconfig through ansible-playbook: check -> real -> check -> real, diffs, bad input."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import yaml

TASK = "merge"


def jwt(exp_offset):
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'RS256'})}.{enc({'exp': int(time.time()) + exp_offset})}.c2lnbmF0dXJl"


def kubeconfig(alias, token):
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": alias, "cluster": {"server": f"https://{alias}.example:443", "certificate-authority-data": "Q0EK"}}],
        "users": [{"name": alias, "user": {"token": token}}],
        "contexts": [{"name": alias, "context": {"cluster": alias, "user": alias}}],
        "current-context": alias,
    }


def write_member(tmp_path, alias, token):
    path = tmp_path / f"{alias}.yaml"
    path.write_text(yaml.safe_dump(kubeconfig(alias, token)))
    return str(path)


def merge_task(members, dest, **extra):
    return [{"name": TASK, "prow.build_cluster.composite_kubeconfig": {"members": members, "dest": dest, **extra}}]


def test_check_real_check_real(ansible, tmp_path):
    token_a, token_b = jwt(48 * 3600), jwt(47 * 3600)
    members = [{"path": write_member(tmp_path, "default", token_a)}, {"content": yaml.safe_dump(kubeconfig("build-b", token_b))}]
    dest = tmp_path / "out" / "composite"
    dest.parent.mkdir()
    tasks = merge_task(members, str(dest))

    check = ansible.run(tasks, check=True, diff=True)
    assert check.returncode == 0, check.stdout
    assert check.task(TASK)["changed"] is True
    assert not dest.exists(), "check mode must not write"

    real = ansible.run(tasks, diff=True)
    assert real.task(TASK)["changed"] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    written = yaml.safe_load(dest.read_text())
    assert [c["name"] for c in written["contexts"]] == ["build-b", "default"]
    assert written["current-context"] == "default"
    mtime = dest.stat().st_mtime_ns

    for mode in ({"check": True}, {}):
        again = ansible.run(tasks, diff=True, **mode)
        assert again.task(TASK)["changed"] is False, mode
        assert again.changed == 0
    assert dest.stat().st_mtime_ns == mtime, "a no-op run must not rewrite the file"

    for run in (check, real):
        assert token_a not in run.stdout + run.stderr
        assert token_b not in run.stdout + run.stderr
        result = run.task(TASK)
        assert set(result["diff"]["after"]) == {"default", "build-b"}
        assert result["diff"]["after"]["default"]["token"].startswith("sha256:")


def test_reports_expiry_and_warns_about_expiring_tokens(ansible, tmp_path):
    members = [{"path": write_member(tmp_path, "default", jwt(3600))}, {"path": write_member(tmp_path, "old", jwt(-60))}]
    run = ansible.run(merge_task(members, str(tmp_path / "c")))
    result = run.task(TASK)
    status = {c["context"]: c["status"] for c in result["contexts"]}
    assert status == {"default": "expiring", "old": "expired"}
    assert any("old" in w and "expired" in w for w in result.get("warnings", []))


def test_mode_is_corrected_even_when_content_is_unchanged(ansible, tmp_path):
    dest = tmp_path / "c"
    tasks = merge_task([{"path": write_member(tmp_path, "default", jwt(3600))}], str(dest))
    ansible.run(tasks)
    dest.chmod(0o644)
    run = ansible.run(tasks)
    assert run.task(TASK)["changed"] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600


def test_duplicate_contexts_fail_before_writing(ansible, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    members = [{"path": write_member(tmp_path, "build-a", jwt(3600))}, {"path": write_member(other, "build-a", jwt(7200))}]
    dest = tmp_path / "c"
    run = ansible.run(merge_task(members, str(dest)))
    result = run.task(TASK)
    assert result["failed"] is True
    assert "context 'build-a' occurs in both" in result["msg"]
    assert not dest.exists()


def test_not_yaml_fails_with_the_member_named(ansible, tmp_path):
    run = ansible.run(merge_task([{"name": "team-x", "content": "clusters: ["}], str(tmp_path / "c")))
    result = run.task(TASK)
    assert result["failed"] is True
    assert result["msg"].startswith("team-x: not valid YAML")
    assert "clusters: [" not in run.stdout.replace(result["msg"], ""), "the content itself must not be echoed"


def test_require_default(ansible, tmp_path):
    run = ansible.run(merge_task([{"path": write_member(tmp_path, "build-a", jwt(3600))}], str(tmp_path / "c"), require_default=True))
    assert run.task(TASK)["failed"] is True
    assert "no context named 'default'" in run.task(TASK)["msg"]


# ---------------------------------------------------------------- output as a Kubernetes Secret
def secret_task(kube_cluster, members, namespace, **extra):
    return [{"name": TASK, "prow.build_cluster.composite_kubeconfig": {
        "members": members, "kubeconfig": str(kube_cluster.kubeconfig),
        "kubernetes_secret": {"name": "kubeconfigs", "namespace": namespace}, **extra}}]


def read_secret(kube_client, namespace):
    from kubernetes import client  # pylint: disable=import-outside-toplevel
    secret = client.CoreV1Api(kube_client).read_namespaced_secret("kubeconfigs", namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def test_secret_output_check_real_check_real(ansible, kube_cluster, kube_client, audit, namespace, tmp_path):
    token_a, token_b = jwt(48 * 3600), jwt(47 * 3600)
    members = [{"path": write_member(tmp_path, "default", token_a)}, {"content": yaml.safe_dump(kubeconfig("build-b", token_b))}]
    tasks = secret_task(kube_cluster, members, namespace, require_default=True)

    since = audit.now()
    check = ansible.run(tasks, check=True, diff=True)
    assert check.task(TASK)["changed"] is True, check.task(TASK)
    assert audit.writes_since(since, namespaces=(namespace,)) == []

    since = audit.now()
    real = ansible.run(tasks, diff=True)
    result = real.task(TASK)
    assert result["changed"] is True, result
    assert result["kubernetes_secret"] == {"name": "kubeconfigs", "namespace": namespace, "keys": ["build-b", "default"]}
    assert [e["verb"] for e in audit.writes_since(since, namespaces=(namespace,))] == ["create"]
    data = read_secret(kube_client, namespace)
    # One kubeconfig per key, each with only its own context: the --kubeconfig-dir layout.
    assert {k: [c["name"] for c in yaml.safe_load(v)["contexts"]] for k, v in data.items()} == {
        "default": ["default"], "build-b": ["build-b"]}
    assert yaml.safe_load(data["build-b"])["users"][0]["user"]["token"] == token_b

    for check_mode in (True, False):
        since = audit.now()
        again = ansible.run(tasks, check=check_mode, diff=True)
        assert again.task(TASK)["changed"] is False, again.task(TASK)
        assert audit.writes_since(since, namespaces=(namespace,)) == [], f"re-run (check={check_mode}) must not write"

    for run in (check, real):
        assert token_a not in run.stdout + run.stderr and token_b not in run.stdout + run.stderr
    assert set(real.task(TASK)["diff"]["after"]) == {"default", "build-b"}

    # A rotated member token updates exactly that key; a dropped member's key goes away.
    token_a2 = jwt(48 * 3600 + 60)
    members = [{"path": write_member(tmp_path, "default", token_a2)}]
    since = audit.now()
    run = ansible.run(secret_task(kube_cluster, members, namespace), diff=True)
    result = run.task(TASK)
    assert result["changed"] is True
    assert result["diff"]["before"]["build-b"] and "build-b" not in result["diff"]["after"]
    assert [e["verb"] for e in audit.writes_since(since, namespaces=(namespace,))] == ["update"]
    assert list(read_secret(kube_client, namespace)) == ["default"]
    assert token_a2 not in run.stdout


def test_secret_output_bad_inputs_fail_before_any_write(ansible, kube_cluster, audit, namespace, tmp_path):
    cases = [
        (secret_task(kube_cluster, [{"name": "team-x", "content": "clusters: ["}], namespace), "team-x: not valid YAML"),
        (secret_task(kube_cluster, [{"path": write_member(tmp_path, "build-a", jwt(3600))},
                                    {"content": yaml.safe_dump(kubeconfig("build-a", jwt(7200)))}], namespace),
         "context 'build-a' occurs in both"),
        (secret_task(kube_cluster, [{"path": write_member(tmp_path, "b", jwt(3600))}], "Not_A_Namespace"),
         "kubernetes_secret.namespace 'Not_A_Namespace' is not a valid name"),
        (secret_task(kube_cluster, [{"content": yaml.safe_dump(kubeconfig("gke:x", jwt(3600)))}], namespace),
         "context 'gke:x' cannot be a Secret key"),
        (secret_task(kube_cluster, [{"secret": "projects/p/secrets/a b"}], namespace), "is not of the form projects/PROJECT/secrets/SECRET"),
        (secret_task(kube_cluster, [{"path": "/nonexistent", "content": "apiVersion: v1"}], namespace), "give exactly one of path, content or secret"),
    ]
    since = audit.now()
    for tasks, message in cases:
        result = ansible.run(tasks).task(TASK)
        assert result["failed"] is True, result
        assert message in result["msg"], result["msg"]
    assert audit.writes_since(since, namespaces=(namespace, "Not_A_Namespace")) == []


def test_return_content_needs_no_log(ansible, tmp_path):
    token = jwt(3600)
    members = [{"path": write_member(tmp_path, "default", token)}]
    refused = ansible.run(merge_task(members, str(tmp_path / "c"), return_content=True)).task(TASK)
    assert refused["failed"] is True and "set no_log: true" in refused["msg"]
    assert not (tmp_path / "c").exists()
    run = ansible.run([{**merge_task(members, str(tmp_path / "c"), return_content=True)[0], "no_log": True, "register": "out"},
                       {"name": "check", "ansible.builtin.assert": {"that": [f"'{token}' in out.kubeconfig"]}, "no_log": True}])
    assert run.failed == 0, run.stdout
    assert token not in run.stdout
