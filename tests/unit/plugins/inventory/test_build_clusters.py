"""The inventory plugin that makes build clusters hosts from the playbooks' extra variables."""

from __future__ import annotations

import pytest
from ansible import context
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
import yaml
from ansible import constants as C
from ansible.utils import vars as ansible_vars

from ansible_collections.prow.build_cluster.plugins.inventory import build_clusters


def load_plugin():
    """The plugin as ansible's loader makes it: its documented options are its configuration."""
    options = yaml.safe_load(build_clusters.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("inventory", build_clusters.InventoryModule.NAME, options)
    plugin = build_clusters.InventoryModule()
    plugin._load_name = build_clusters.InventoryModule.NAME  # pylint: disable=protected-access
    return plugin


@pytest.fixture(name="parse")
def fixture_parse(tmp_path, monkeypatch):
    source = tmp_path / "build_clusters.yml"
    source.write_text("plugin: prow.build_cluster.build_clusters\n")

    def parse(vars_text):
        (tmp_path / "vars.yml").write_text(vars_text)
        monkeypatch.setattr(context, "CLIARGS", ImmutableDict(extra_vars=(f"@{tmp_path / 'vars.yml'}",)))
        # ansible caches the parsed extra vars on the function: as one ansible-playbook process does.
        monkeypatch.setattr(ansible_vars.load_extra_vars, "extra_vars", None, raising=False)
        inventory = InventoryData()
        plugin = load_plugin()
        assert plugin.verify_file(str(source))
        plugin.parse(inventory, DataLoader(), str(source), cache=False)
        return inventory

    return parse


def test_every_build_cluster_of_the_extra_vars_is_a_host_of_the_group(parse):
    inventory = parse("build_clusters:\n  - {alias: build-a, project: team-a}\n  - {alias: build-b, project: team-b}\n")
    assert sorted(h.name for h in inventory.groups["prow_build_clusters"].get_hosts()) == ["build-a", "build-b"]
    assert inventory.get_host("build-a").vars["build_cluster"] == {"project": "team-a"}


def test_no_build_clusters_gives_an_empty_group(parse):
    assert parse("prow: {project: p}\n").groups["prow_build_clusters"].get_hosts() == []


@pytest.mark.parametrize(("text", "message"), [
    ("build_clusters:\n  - {alias: Build_A}\n", "is not a valid name"),
    ("build_clusters:\n  - {project: p}\n", "has no alias"),
    ("build_clusters:\n  - {alias: a}\n  - {alias: a}\n", "given twice"),
    ("build_clusters: nope\n", "must be a list"),
])
def test_bad_build_clusters_are_refused_with_the_reason(parse, text, message):
    with pytest.raises(AnsibleParserError, match=message):
        parse(text)
