#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_manager_secret
short_description: Ensure a Secret Manager secret and that its latest version holds a payload
version_added: 0.1.0
description:
  - Ensures the secret exists with the given labels and replication, for example the secret that
    carries a build cluster's kubeconfig to Prow (External Secrets reads its C(latest) version).
  - With O(payload), compares O(payload) by SHA-256 with what consumers read, C(versions/latest), which is the
    most recently created version, whatever its state. A new version is added only when they differ, or when
    the newest version is disabled or destroyed (for example by hand), since then every reader of
    C(latest) fails (400 FAILED_PRECONDITION) even if an older version is enabled. The payload is never
    returned nor logged; diffs show fingerprints.
  - With O(keep_versions), the newest O(keep_versions) enabled versions stay enabled and every older
    version is disabled or destroyed (O(prune_action)), so that rotated credentials stop being readable.
    The newest version is never disabled nor destroyed.
  - Calls Secret Manager through google-cloud-secret-manager (REST transport). Versions are added with
    their CRC32C (google-crc32c), which Secret Manager checks, and payloads read are checked against theirs.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: The secret ID (1 to 255 letters, digits, C(-) and C(_)).
    type: str
    required: true
  payload:
    description:
      - The content the newest version (C(latest)) must hold (UTF-8 text, at most 64 KiB). Never logged.
      - Reading the current version needs C(secretmanager.versions.access) on the secret.
    type: str
  labels:
    description: Labels to set on the secret; labels not listed are kept.
    type: dict
  replication_locations:
    description:
      - Regions of user-managed replication. Without it a new secret is replicated automatically.
      - Replication cannot change; a secret whose replication differs is an error.
    type: list
    elements: str
  keep_versions:
    description:
      - Keep this many newest enabled versions enabled; older ones get O(prune_action). Nothing is pruned without it.
      - Versions between kept ones (say one disabled by hand) and the newest version are never touched.
    type: int
  prune_action:
    description: What happens to versions older than the newest O(keep_versions). C(destroy) cannot be undone.
    type: str
    choices: [disable, destroy]
    default: disable
  state:
    description: Whether the secret should exist. C(absent) deletes it with all its versions.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
requirements:
  - google-cloud-secret-manager
  - google-crc32c
notes:
  - The payload is compared by reading the current version, which keeps the comparison exact without
    storing a hash next to the secret.
"""

EXAMPLES = r"""
- name: Publish the build cluster's kubeconfig for Prow
  prow.build_cluster.secret_manager_secret:
    project: k8s-prow
    name: prow_build_cluster_kubeconfig_build-myteam
    payload: "{{ lookup('ansible.builtin.file', 'out/build-myteam.kubeconfig') }}"
    labels:
      cluster: build-myteam
    keep_versions: 2
    prune_action: disable
"""

RETURN = r"""
existed:
  description: Whether the secret existed before the run (with O(state=absent) in check mode, whether there is one to remove).
  returned: always
  type: bool
name:
  description: Resource name of the secret (C(projects/NUMBER/secrets/ID)).
  returned: when the secret exists
  type: str
version:
  description:
    - Resource name of the newest version after the run (what C(latest) reads); V(null) if there is none or it
      is still to be added in check mode.
  returned: always
  type: str
reason:
  description:
    - Why a version was (or would be) added, for example C(payload differs), C(no version yet), or a sentence
      naming the newest version when it is disabled or destroyed; V(null) when none was needed.
  returned: when O(payload) is given and O(state=present)
  type: str
latest_state:
  description: State of the newest version before the run (C(ENABLED), C(DISABLED), C(DESTROYED)), V(null) if none.
  returned: when O(state=present)
  type: str
version_added:
  description: Whether a new version was (or in check mode would be) added.
  returned: always
  type: bool
payload_fingerprint:
  description: Fingerprint (truncated SHA-256) of O(payload).
  returned: when O(payload) is given
  type: str
  sample: sha256:0f4c1a2b3c4d5e6f
pruned:
  description: Version numbers disabled or destroyed by O(keep_versions).
  returned: always
  type: list
  elements: str
secret:
  description: The secret resource (no payload); empty when absent, or not yet created in check mode.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import secret_manager_secret as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
