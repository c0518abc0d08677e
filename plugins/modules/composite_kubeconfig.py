#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: composite_kubeconfig
short_description: Merge build-cluster kubeconfigs into the composite that Prow components load
version_added: 0.1.0
description:
  - Merges kubeconfigs (files, inline content, Google Secret Manager secrets or keyless GKE clusters) into what Prow
    components load.
  - Every context name must be unique across the members, as Prow's C(--kubeconfig-dir) requires;
    a duplicate is an error before anything is written.
  - Two outputs. O(dest) is one composite file for C(--kubeconfig) or C(KUBECONFIG), deterministic (entries
    sorted by name) and written atomically with mode C(0600). O(kubernetes_secret) is a Secret in the Prow
    cluster with one key per context, each a kubeconfig of its own, for a volume Prow reads with
    C(--kubeconfig-dir).
  - Either output is written only when its content differs.
  - Reports each member's context, server and token expiry, and warns about tokens that are expired
    or expire within O(warn_before).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  members:
    description:
      - The kubeconfigs to merge. Each item gives exactly one of O(members[].path), O(members[].content),
        O(members[].secret) or O(members[].gke).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A label for messages; defaults to the path or secret, or C(members[N]).
        type: str
      path:
        description: Path of a kubeconfig file on the controller.
        type: path
      content:
        description: Kubeconfig content, YAML text or a mapping. Never logged.
        type: raw
      secret:
        description:
          - A Google Secret Manager secret holding a kubeconfig, C(projects/PROJECT/secrets/SECRET), optionally
            with C(/versions/VERSION) (default C(latest)), as gencred stored them. Read with the Google
            credentials options.
        type: str
      gke:
        description:
          - A keyless GKE cluster, C(projects/PROJECT/locations/LOCATION/clusters/CLUSTER) - its kubeconfig names GKE's
            exec credential plugin (C(gke-gcloud-auth-plugin)), with the endpoint and CA read from the GKE API with the
            Google credentials options, as M(prow.build_cluster.gke_exec_kubeconfig) writes it for Prow. No secret.
          - Needs O(members[].name), the context name.
        type: str
      optional:
        description:
          - Leave the member out, with a warning, when its file or secret does not exist (yet), instead of failing;
            it is named in RV(missing). For a build cluster whose first onboarding failed before its kubeconfig
            was stored, so that the other clusters stay in what Prow loads.
        type: bool
        default: false
  dest:
    description:
      - Path of the composite kubeconfig to write, with mode C(0600).
      - Exactly one of O(dest) and O(kubernetes_secret) is required.
    type: path
  kubernetes_secret:
    description:
      - Write the result as a Secret in the Prow cluster (reached with the connection options), one key per
        context named C(<context><key_suffix>), each holding a kubeconfig with that one context.
      - The module owns the Secret's data; keys that are not a member's context are removed.
      - Mount it without C(subPath), or Prow never sees a rotated token.
    type: dict
    suboptions:
      name:
        description: Name of the Secret.
        type: str
        required: true
      namespace:
        description: Namespace of the Secret; it must exist.
        type: str
        default: default
      key_suffix:
        description:
          - Appended to every key, to match Prow's C(--kubeconfig-suffix) (for example C(.yaml)).
        type: str
        default: ''
  require_default:
    description:
      - Fail unless some member has a context named C(default), where Prow schedules jobs that name
        no cluster.
    type: bool
    default: false
  warn_before:
    description:
      - Warn about member tokens that expire within this duration (Go-style, for example C(12h)).
    type: str
    default: 12h
  return_content:
    description:
      - Return the composite kubeconfig in RV(kubeconfig), for later tasks. Off by default so that secrets stay
        where they are written.
      - The task must set C(no_log=true), which hides the whole result from output and logs but not from
        C(register); Ansible cannot hide one return value alone, so the module refuses to run otherwise.
    type: bool
    default: false
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - Diffs show the context names, servers and token fingerprints, never a token.
  - The connection options are used only with O(kubernetes_secret); the Google credentials options only with
    O(members[].secret) (or O(gke)).
"""

EXAMPLES = r"""
- name: Build the composite kubeconfig Prow mounts
  prow.build_cluster.composite_kubeconfig:
    members:
      - path: /etc/kubeconfigs/prow-services.yaml
      - path: "{{ playbook_dir }}/out/build-team-a.kubeconfig"
    dest: /etc/prow/kubeconfig
  register: composite

- name: Show what Prow will load
  ansible.builtin.debug:
    msg: "{{ composite.contexts | map(attribute='context') | list }}"

- name: Gather gencred-style secrets into the Secret Prow reads with --kubeconfig-dir
  prow.build_cluster.composite_kubeconfig:
    members:
      - secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_default
      - secret: projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-myteam
    require_default: true
    kubeconfig: ~/.kube/config
    context: prow-service-cluster
    kubernetes_secret:
      name: kubeconfigs
      namespace: prow
"""

RETURN = r"""
dest:
  description: Path of the composite kubeconfig.
  returned: when O(dest) is set
  type: str
kubernetes_secret:
  description: The Secret written with O(kubernetes_secret).
  returned: when O(kubernetes_secret) is set
  type: dict
  contains:
    name:
      description: Name.
      type: str
    namespace:
      description: Namespace.
      type: str
    keys:
      description: Its keys, one per context.
      type: list
      elements: str
fingerprint:
  description: Fingerprint of the output's content (the file, or the Secret's keys and values).
  returned: always
  type: str
  sample: sha256:0f4c1a2b3c4d5e6f
missing:
  description: Labels of the O(members[].optional) members that were left out because their source does not exist.
  returned: success
  type: list
  elements: str
  sample: [projects/my-prow-project/secrets/prow_build_cluster_kubeconfig_build-new]
contexts:
  description: One entry per context in the composite.
  returned: always
  type: list
  elements: dict
  contains:
    context:
      description: Context name, the alias jobs use in C(cluster:).
      type: str
    source:
      description: The member it came from.
      type: str
    key:
      description: Its key in the Secret, with O(kubernetes_secret).
      type: str
    server:
      description: API server URL.
      type: str
    token_fingerprint:
      description: Fingerprint of the bearer token, if any.
      type: str
    token_expiry:
      description: Expiry of the token (ISO 8601), if it is a JWT.
      type: str
    expires_in_seconds:
      description: Seconds until the token expires.
      type: int
    status:
      description: One of C(valid), C(expiring), C(expired), C(no-token), C(unknown-expiry).
      type: str
kubeconfig:
  description: The composite kubeconfig, with its credentials, only with O(return_content=true) (and C(no_log=true)).
  returned: when requested
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import composite_kubeconfig as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
