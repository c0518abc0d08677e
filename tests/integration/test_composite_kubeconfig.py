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
