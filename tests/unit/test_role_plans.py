"""Each role's `plan` entry point records exactly the module calls its tasks make.

playbooks/onboard.yml skips a build cluster when prow.build_cluster.plan finds that none
of these calls would change anything, so a call the plan forgets, or with other args
than its task, could hide a needed change. Here every module task of a role is matched,
by name, with a planned call of the same module and word-for-word the same args.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
COLLECTION = "prow.build_cluster."
APPLY = "kubernetes.core.k8s"
# Module calls the plan leaves out on purpose, with the reason.
NOT_PLANNED = {
    "secret_manager_secret": "stores a token only after ksa_token rotated it, which the plan sees as a change",
}


def tasks_of(path):
    def walk(tasks):
        for task in tasks or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key))
    return list(walk(yaml.safe_load(path.read_text())))


def module_tasks(role, roles=ROLES):
    """(task name) -> (module, args) for every module task outside the plan entry points."""
    found = {}
    for path in sorted((roles / role / "tasks").glob("*.yml")):
        if path.stem.startswith("plan"):
            continue
        for task in tasks_of(path):
            for key, args in task.items():
                if key.startswith(COLLECTION):
                    module = key[len(COLLECTION):]
                elif key == APPLY and not task.get("check_mode"):
                    module = APPLY
                else:
                    continue
                if module not in NOT_PLANNED:
                    found[task["name"]] = (module, args)
    return found


def planned_calls(role, roles=ROLES):
    """(label) -> every (module, args) planned under it (one entry point may repeat another's call)."""
    found = {}
    for path in sorted((roles / role / "tasks").glob("plan*.yml")):
        for task in tasks_of(path):
            for call in (task.get("vars") or {}).get("calls") or []:
                found.setdefault(call["label"], []).append((call["module"], call["args"]))
    return found


def mismatches(role, roles=ROLES):
    tasks, planned = module_tasks(role, roles), planned_calls(role, roles)
    problems = [f"no planned call for task '{name}'" for name in tasks if name not in planned]
    problems += [f"planned call '{name}' has no task" for name in planned if name not in tasks]
    problems += [f"the plan of '{name}' differs from its task" for name in tasks
                 if any(variant != tasks[name] for variant in planned.get(name, []))]
    return problems


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists()))
def test_the_plan_of_each_role_makes_the_calls_of_its_tasks(role):
    assert module_tasks(role), f"{role} has no module task"
    assert mismatches(role) == []


def test_the_matching_sees_a_difference_in_args_and_a_forgotten_call(tmp_path):
    tasks = tmp_path / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(yaml.safe_dump([
        {"name": "T", "prow.build_cluster.k8s_namespace": {"name": "a"}},
        {"name": "U", "block": [{"name": "V", "kubernetes.core.k8s": {"apply": True}}]},
    ]))
    (tasks / "plan.yml").write_text(yaml.safe_dump([{"name": "P", "ansible.builtin.set_fact": {}, "vars": {
        "calls": [{"label": "T", "module": "k8s_namespace", "args": {"name": "a"}}]}}]))
    (tasks / "plan_other.yml").write_text(yaml.safe_dump([{"name": "P", "ansible.builtin.set_fact": {}, "vars": {
        "calls": [{"label": "T", "module": "k8s_namespace", "args": {"name": "b"}}]}}]))
    assert mismatches("r", tmp_path) == ["no planned call for task 'V'", "the plan of 'T' differs from its task"]
