#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: yaml_files
short_description: Write several YAML files into a directory in one step, each only if its content changes
version_added: 0.1.0
description:
  - Renders each entry of O(files) as YAML (a list of documents, separated by C(---)) and writes it into
    O(dest), atomically and only when the content differs; creates O(dest) if needed.
  - The C(prow_config) role writes the files a Prow admin commits with it. One module run for all of a
    cluster's files instead of a C(copy) per file (each a C(stat) and a C(file) process when unchanged)
    is the largest saving of a no-op onboarding run.
  - Files in O(dest) that are not named in O(files) are left alone.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  dest:
    description: Directory to write into.
    type: path
    required: true
  files:
    description: File name (no directory part) to the list of YAML documents it holds.
    type: dict
    required: true
  mode:
    description: Mode of the files written. These files hold no secret.
    type: raw
    default: '0644'
extends_documentation_fragment:
  - prow.build_cluster.attributes
notes:
  - Diffs show the file names and content fingerprints.
"""

EXAMPLES = r"""
- name: Write the decoration entry and the ExternalSecret
  prow.build_cluster.yaml_files:
    dest: out/build-team-a
    files:
      decoration-config.yaml:
        - plank: {default_decoration_config_entries: [{cluster: build-team-a, config: {gcs_credentials_secret: ""}}]}
      external-secret.yaml: "{{ external_secret_documents }}"
"""

RETURN = r"""
written:
  description: Names of the files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
dest:
  description: The directory.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import yaml_files as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
