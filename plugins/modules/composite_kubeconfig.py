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
  - Merges kubeconfigs (files or inline content) into one composite kubeconfig, the file Prow
    components load with C(--kubeconfig) or through C(KUBECONFIG).
  - Every context name must be unique across the members, as Prow's C(--kubeconfig-dir) requires;
    a duplicate is an error before anything is written.
  - The output is deterministic (entries sorted by name) and written atomically with mode C(0600),
    only when its content changes.
  - Reports each member's context, server and token expiry, and warns about tokens that are expired
    or expire within O(warn_before).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  members:
    description:
      - The kubeconfigs to merge. Each item gives exactly one of O(members[].path) or O(members[].content).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A label for messages; defaults to the path, or C(members[N]).
        type: str
      path:
        description: Path of a kubeconfig file on the controller.
        type: path
      content:
        description: Kubeconfig content, YAML text or a mapping. Never logged.
        type: raw
  dest:
    description: Path of the composite kubeconfig to write, with mode C(0600).
    type: path
    required: true
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
      - Return the composite kubeconfig in RV(kubeconfig). Its tokens are masked in Ansible output,
        but the value is available to later tasks. Off by default so that secrets stay on disk.
    type: bool
    default: false
extends_documentation_fragment:
  - prow.build_cluster.attributes
notes:
  - Diffs show the context names, servers and token fingerprints, never a token.
"""

EXAMPLES = r"""
- name: Build the composite kubeconfig Prow mounts
  prow.build_cluster.composite_kubeconfig:
    members:
      - path: /etc/kubeconfigs/prow-services.yaml
      - path: "{{ playbook_dir }}/out/build-team-a.kubeconfig"
    dest: /etc/prow/kubeconfig
    require_default: false
  register: composite

- name: Show what Prow will load
  ansible.builtin.debug:
    msg: "{{ composite.contexts | map(attribute='context') | list }}"
"""

RETURN = r"""
dest:
  description: Path of the composite kubeconfig.
  returned: always
  type: str
fingerprint:
  description: Fingerprint of the composite's content.
  returned: always
  type: str
  sample: sha256:0f4c1a2b3c4d5e6f
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
  description: The composite kubeconfig, only with O(return_content=true).
  returned: when requested
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils.common import fingerprint, parse_duration


def load_members(module):
    members = []
    for index, item in enumerate(module.params["members"]):
        has_path, has_content = item.get("path") is not None, item.get("content") is not None
        label = item.get("name") or item.get("path") or f"members[{index}]"
        if has_path == has_content:
            module.fail_json(msg=f"{label}: give exactly one of path or content")
        if has_path:
            text, _mode = kc.read_file(item["path"])
            if text is None:
                module.fail_json(msg=f"{label}: no such file")
        else:
            text = item["content"]
        try:
            config = kc.parse(text, label)
        except kc.KubeconfigError as exc:
            module.fail_json(msg=str(exc))
        hide_secrets(module, config)
        members.append((label, config))
    return members


def hide_secrets(module, config):
    """Mask every credential in a member wherever Ansible prints (kubernetes.core#1014 pattern)."""
    for user in config.get("users") or []:
        for key in ("token", "client-key-data", "password"):
            value = (user.get("user") or {}).get(key)
            if value:
                module.no_log_values.add(value)


def describe(config):
    """What a diff may show of a kubeconfig: contexts, servers and fingerprints."""
    return {
        item["context"]: {"server": item["server"], "token": item["token_fingerprint"]}
        for item in kc.summarize(config)
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "members": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str"},
                    "path": {"type": "path"},
                    "content": {"type": "raw", "no_log": True},
                },
            },
            "dest": {"type": "path", "required": True},
            "require_default": {"type": "bool", "default": False},
            "warn_before": {"type": "str", "default": "12h"},
            "return_content": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    try:
        warn_before = parse_duration(module.params["warn_before"])
    except ValueError as exc:
        module.fail_json(msg=f"warn_before: {exc}")

    dest = module.params["dest"]
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        module.fail_json(msg=f"dest: directory of {dest} does not exist")

    members = load_members(module)
    try:
        merged, owners = kc.merge(members, require_default=module.params["require_default"])
    except kc.KubeconfigError as exc:
        module.fail_json(msg=str(exc))
    content = kc.dump(merged)

    current, mode = kc.read_file(dest)
    before = None
    if current is not None:
        try:
            before = describe(kc.parse(current, dest))
            hide_secrets(module, kc.parse(current, dest))
        except kc.KubeconfigError:
            before = {"unparsable": fingerprint(current)}
    changed = current != content or mode != 0o600
    if changed and not module.check_mode:
        kc.write_atomic(dest, content)

    contexts = kc.summarize(merged, owners, warn_within=warn_before)
    for item in contexts:
        if item["status"] in ("expired", "expiring"):
            module.warn(f"context {item['context']} ({item['source']}): token {item['status']} at {item['token_expiry']}")

    result = {
        "changed": changed,
        "dest": dest,
        "fingerprint": fingerprint(content),
        "contexts": contexts,
        "diff": {"before": before or {}, "after": describe(merged), "before_header": dest, "after_header": dest},
    }
    if module.params["return_content"]:
        result["kubeconfig"] = content
    module.exit_json(**result)


if __name__ == "__main__":
    main()
