"""yaml_files: check -> real -> check -> real, only changed files rewritten, bad names refused."""

from __future__ import annotations

import os
import stat

import yaml

TASK = "files"


def task(dest, files, **extra):
    return [{"name": TASK, "prow.build_cluster.yaml_files": {"dest": str(dest), "files": files, **extra}}]


def test_check_real_check_real(ansible, tmp_path):
    dest = tmp_path / "out" / "build-a"
    files = {"a.yaml": [{"kind": "A"}], "b.yaml": [{"kind": "B1"}, {"kind": "B2"}]}

    check = ansible.run(task(dest, files), check=True, diff=True)
    assert check.task(TASK)["changed"] is True and sorted(check.task(TASK)["written"]) == ["a.yaml", "b.yaml"]
    assert not dest.exists()

    real = ansible.run(task(dest, files))
    assert real.task(TASK)["changed"] is True
    assert list(yaml.safe_load_all((dest / "b.yaml").read_text())) == [{"kind": "B1"}, {"kind": "B2"}]
    assert stat.S_IMODE(os.stat(dest / "a.yaml").st_mode) == 0o644
    mtimes = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}

    for mode in ({"check": True}, {}):
        again = ansible.run(task(dest, files), **mode)
        assert again.task(TASK)["changed"] is False and again.task(TASK)["written"] == []
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == mtimes

    files["a.yaml"] = [{"kind": "A2"}]
    changed = ansible.run(task(dest, files), diff=True)
    assert changed.task(TASK)["written"] == ["a.yaml"]
    assert (dest / "b.yaml").stat().st_mtime_ns == mtimes["b.yaml"]


def test_names_with_a_directory_part_are_refused_before_writing(ansible, tmp_path):
    run = ansible.run(task(tmp_path, {"../escape.yaml": [{}]}))
    assert run.task(TASK)["failed"] is True
    assert "plain file name" in run.task(TASK)["msg"]
    assert not (tmp_path.parent / "escape.yaml").exists()
