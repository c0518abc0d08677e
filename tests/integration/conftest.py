"""Harness for integration tests: run the collection's modules the way users do.

Each test writes a small playbook and runs the real ``ansible-playbook`` (so every module
runs as its own process, through AnsiballZ, exactly as in production) with the JSON
callback, then asserts on the per-task results. The sandbox fixtures (clusters, the GCP
fake) come from the prow_sandbox pytest plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class PlaybookRun:
    """What one ansible-playbook run did: per-task results in order, stats, raw output."""

    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)  # [(task name, result dict)]
    stats: dict = field(default_factory=dict)

    def task(self, name):
        """Result of the task with this name (the last one if it ran more than once)."""
        matches = [res for task_name, res in self.results if task_name == name]
        if not matches:
            raise KeyError(f"task {name!r} did not run; ran: {[n for n, _ in self.results]}")
        return matches[-1]

    @property
    def changed(self):
        return sum(host["changed"] for host in self.stats.values())

    @property
    def failed(self):
        return sum(host["failures"] + host["unreachable"] for host in self.stats.values())


class Ansible:
    """Runs playbooks from a temp dir against localhost, with the collection from this checkout."""

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def run(self, tasks, *, check=False, diff=False, extra_vars=None, env=None, play_vars=None) -> PlaybookRun:
        play = {"name": "integration", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        if play_vars:
            play["vars"] = play_vars
        playbook = self.workdir / "playbook.yml"
        playbook.write_text(yaml.safe_dump([play], sort_keys=False))
        return self.run_file(playbook, check=check, diff=diff, extra_vars=extra_vars, env=env)

    def run_file(self, playbook, *, check=False, diff=False, extra_vars=None, env=None) -> PlaybookRun:
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        run_env = dict(os.environ)
        run_env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=REPO, check=False)
        return parse_json_callback(proc)


def parse_json_callback(proc) -> PlaybookRun:
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible-playbook printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    results = []
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            for _host, res in task.get("hosts", {}).items():
                results.append((task["task"]["name"], res))
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results, doc.get("stats", {}))


@pytest.fixture
def ansible(tmp_path) -> Ansible:
    return Ansible(tmp_path)
