# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: build_clusters
short_description: Build clusters as inventory hosts, from the same variables the playbooks take
version_added: 0.2.0
description:
  - Makes one host per item of the C(build_clusters) extra variable (C(-e @vars.yml), as the playbooks take it),
    named after its C(alias), in the group O(group), with the item as its C(build_cluster) variable. The
    playbooks then run every build cluster as a host of their plays, in parallel up to C(forks), and
    C(--limit ALIAS) selects clusters.
  - An inventory of your own does the same without this plugin, see the collection's docs/architecture.md.
  - The hosts are not machines; the collection's plays run with C(connection=local) on the controller.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  plugin:
    description: The name of this plugin.
    type: str
    required: true
    choices: [prow.build_cluster.build_clusters]
  variable:
    description: The extra variable holding the list of build clusters.
    type: str
    default: build_clusters
  group:
    description: The group of the build cluster hosts.
    type: str
    default: prow_build_clusters
"""

EXAMPLES = r"""
# inventory/build_clusters.yml, with ansible.cfg: [defaults] inventory = inventory/build_clusters.yml
plugin: prow.build_cluster.build_clusters

# ansible-playbook prow.build_cluster.onboard -i inventory/build_clusters.yml -e @vars.yml --limit build-team-a
"""

from collections.abc import Mapping

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.vars import load_extra_vars

# The alias is a context name in Prow's kubeconfigs and a Kubernetes label value: a DNS label.
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error


class InventoryModule(BaseInventoryPlugin):
    NAME = "prow.build_cluster.build_clusters"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".yml", ".yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        group = self.inventory.add_group(self.get_option("group"))
        # The extra variables are read as ansible-playbook reads them (the same -e arguments);
        # their values stay templates, rendered when a task uses them.
        clusters = load_extra_vars(loader).get(self.get_option("variable")) or []
        if not isinstance(clusters, list):
            raise AnsibleParserError(f"{self.get_option('variable')} must be a list of build clusters")
        seen = set()
        for index, cluster in enumerate(clusters):
            alias = cluster.get("alias") if isinstance(cluster, Mapping) else None
            error = dns_label_error(alias, f"{self.get_option('variable')}[{index}].alias") if alias is not None else (
                f"{self.get_option('variable')}[{index}] has no alias")
            if error:
                raise AnsibleParserError(error)
            if alias in seen:
                raise AnsibleParserError(f"build cluster alias {alias} is given twice")
            seen.add(alias)
            self.inventory.add_host(alias, group=group)
            self.inventory.set_variable(alias, "build_cluster", {k: v for k, v in cluster.items() if k != "alias"})
