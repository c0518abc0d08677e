"""The collection builds, installs, documents itself, and packs into an execution environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def run(*cmd, cwd=None, env=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, check=False)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module", name="installed")
def fixture_installed(tmp_path_factory):
    """The tarball built from this checkout, installed into a fresh collections path."""
    out = tmp_path_factory.mktemp("build")
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", out, REPO)
    tarball = next(out.glob("prow-build_cluster-*.tar.gz"))
    dest = tmp_path_factory.mktemp("collections")
    run(BIN / "ansible-galaxy", "collection", "install", "--force", "--no-deps", "-p", dest, tarball)
    return tarball, dest


def isolated_env(collections_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    # An empty config, not the checkout's ansible.cfg, which points at the checkout itself.
    config = collections_path / "ansible.cfg"
    config.touch()
    env["ANSIBLE_CONFIG"] = str(config)
    return env


def test_tarball_ships_the_collection_and_not_the_dev_files(installed):
    _tarball, dest = installed
    root = dest / "ansible_collections" / "prow" / "build_cluster"
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert "meta/runtime.yml" in files and "README.md" in files and "LICENSE" in files
    assert {f"plugins/modules/{m}.py" for m in MODULES} <= files
    for dev in ("Makefile", ".ci/run", "sandbox/pyproject.toml", "constraints.txt"):
        assert dev not in files
    assert not any(f.startswith(("sandbox/", "tests/integration/", ".venv/", "molecule/")) for f in files)
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "prow"
    assert manifest["collection_info"]["name"] == "build_cluster"


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module_from_the_installed_tarball(installed, module):
    _tarball, dest = installed
    doc = json.loads(run(BIN / "ansible-doc", "--json", f"prow.build_cluster.{module}", env=isolated_env(dest)))
    entry = doc[f"prow.build_cluster.{module}"]
    assert entry["doc"]["module"] == module
    assert entry["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert entry["examples"] and entry["return"]


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_renders_every_role_argument_spec(installed, role):
    _tarball, dest = installed
    doc = json.loads(run(BIN / "ansible-doc", "--json", "-t", "role", f"prow.build_cluster.{role}", env=isolated_env(dest)))
    assert doc[f"prow.build_cluster.{role}"]["entry_points"]["main"]["options"]


def test_action_groups_name_only_existing_modules():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    grouped = {m for members in runtime["action_groups"].values() for m in members}
    missing = sorted(m for m in grouped if m not in MODULES)
    assert not missing, f"action groups name modules that do not exist: {missing}"


def test_execution_environment_definition_builds_a_context(installed, tmp_path):
    tarball, _dest = installed
    context = tmp_path / "context"
    workdir = tmp_path / "ee"
    workdir.mkdir()
    for name in ("execution-environment.yml", "requirements.txt"):
        (workdir / name).write_text((REPO / name).read_text())
    (workdir / tarball.name).write_bytes(tarball.read_bytes())
    run(BIN / "ansible-builder", "create", "-f", workdir / "execution-environment.yml", "-c", context)
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    names = [c["name"] for c in requirements["collections"]]
    assert f"collections/{tarball.name}" in names and "kubernetes.core" in names
    assert (context / "_build" / "collections" / tarball.name).exists()
    assert "kubernetes==" in (context / "_build" / "requirements.txt").read_text()


@pytest.mark.parametrize("example", ["vars.yml", "sandbox-vars.yml"])
def test_example_variables_pass_the_playbooks_argument_spec(ansible, example):
    spec = yaml.safe_load((REPO / "playbooks" / "vars" / "spec.yml").read_text())["argument_spec"]
    doc = yaml.safe_load((REPO / "examples" / example).read_text())
    # Each build cluster is validated as its host is: the item is that host's build_cluster.
    run = ansible.run([{"name": "validate", "ansible.builtin.validate_argument_spec": {
        "argument_spec": spec, "provided_arguments": {"prow": doc["prow"], "build_cluster": "{{ cluster }}"}},
        "loop": doc["build_clusters"], "loop_control": {"loop_var": "cluster"}}],
        env={"PROW_KUBECONFIG": "/dev/null", "SANDBOX_DIR": "/tmp"})
    assert run.returncode == 0, run.stdout[-2000:]
    assert not run.task("validate").get("failed")


def test_the_argument_spec_rejects_what_the_examples_do_not_allow(ansible):
    spec = yaml.safe_load((REPO / "playbooks" / "vars" / "spec.yml").read_text())["argument_spec"]
    run = ansible.run([{"name": "validate", "ansible.builtin.validate_argument_spec": {
        "argument_spec": spec, "provided_arguments": {"prow": {"project": "p"}, "build_cluster": {"alias": "a"}}}}])
    result = run.task("validate")
    assert result["failed"] is True
    assert "bucket" in result["msg"] and "project" in result["msg"]
