#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sync_record
short_description: Replay a build cluster's sync record in check mode, or write it after an onboarding
version_added: 0.1.0
description:
  - What C(playbooks/onboard.yml) uses to skip the pre-flight checks and the roles of a build cluster that
    is in sync (docs/architecture.md, "Sync records"). It is an action plugin, which runs on the controller only.
  - While the roles run, every call of a collection module is journaled (its module and final arguments,
    without any C(no_log) option nor the Google credentials options) in O(dir)/ALIAS.journal.
  - O(state=record), after the roles, replays the journal's calls in check mode, in this task; when none would
    change anything, writes them as the host's record O(dir)/ALIAS.json (mode 0600, no secret), valid for O(key).
  - O(state=replay), before the pre-flight checks, when the record's key is the one of this run's inputs and
    code, replays its calls in check mode; RV(in_sync) is true only when every call reports no change. Otherwise
    (no record, another key, a corrupt file, a call that would change or fails) RV(in_sync) is false, RV(msg)
    says why, and the journal of this run is started (RV(journal)).
  - The Google credentials options are never stored; a replay gives each call the current O(gcp_auth).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  state:
    description: C(replay) the record at the start of a host's play, or C(record) the journal at its end.
    type: str
    choices: [replay, record]
    required: true
  dir:
    description: Directory of the records and journals (created, mode 0700).
    type: path
    required: true
  inputs:
    description:
      - With O(state=replay), what the record's key is made of besides the code (plugins, roles and playbooks of
        the collection) and every variable of the roles (C(cluster_*), C(gcs_access_*), C(credentials_*),
        C(prow_config_*)) the host has.
      - The host's settings, the Prow instance's and the playbook's switches (C(force_rotation), ...).
    type: dict
    default: {}
  key:
    description: With O(state=record), the key the replay computed (RV(key)).
    type: str
  gcp_auth:
    description: The Google credentials options every replayed call of a GCP module gets (C(gcp_auth)).
    type: dict
    default: {}
attributes:
  check_mode:
    description: In check mode nothing is replayed or written, and the full check-mode run follows (the playbook also
      skips it with C(--check)).
    support: full
  diff_mode:
    description: A record is a cache of the run, never reported as a change, so there is never a diff.
    support: full
  idempotent:
    description: The record is a cache of the run, reported as no change.
    support: full
notes:
  - The record holds module names and arguments only; a call that takes a secret is left out when a replayed call
    decides whether it runs (C(secret_manager_secret) after C(ksa_token)), else the host gets no record.
"""

EXAMPLES = r"""
- name: Replay the sync record
  prow.build_cluster.sync_record:
    state: replay
    dir: out/.sync
    inputs: {build_cluster: "{{ build_cluster }}", prow: "{{ prow }}"}
  register: sync
"""

RETURN = r"""
in_sync:
  description: Whether every call of the record replayed without a change (O(state=replay)), or a record was written.
  returned: always
  type: bool
key:
  description: The key of this run's inputs and code (O(state=replay)).
  returned: always
  type: str
journal:
  description: The journal this run's calls are appended to, empty when the host is in sync.
  returned: always
  type: str
calls:
  description: How many calls were replayed.
  returned: always
  type: int
msg:
  description: Why the host is in sync or not.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["replay", "record"], "required": True},
            "dir": {"type": "path", "required": True},
            "inputs": {"type": "dict", "default": {}},
            "key": {"type": "str", "no_log": False},
            "gcp_auth": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="prow.build_cluster.sync_record is an action plugin: it runs on the controller only")


if __name__ == "__main__":
    main()
