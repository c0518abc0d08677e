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
  - O(state=replay), before the pre-flight checks, is one task for every host of the play's batch (run it with
    C(run_once)). For each host whose record's key is the one of its inputs and the code, it replays the record's
    calls in check mode, hosts in parallel (two processes per core, at most the run's forks; the environment
    variable E(PROW_SYNC_REPLAY_PROCESSES) sets another number). A host is in sync only when every call reports no
    change. Otherwise (no record, another key, a corrupt file, a call that would change or fails) it is not, its
    C(msg) says why, and the journal of its run is started (C(journal)). RV(hosts) has each host's outcome.
  - A host is not replayed when its C(state) input is not C(present) (offboarding) or its C(prow_sync_records)
    variable is false, nor when its modules would not run on the controller's Python (another connection, become).
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
      - What is the same for every host (the playbook, its tags).
    type: dict
    default: {}
  host_inputs:
    description:
      - With O(state=replay), the name of a variable that, templated for each host with that host's variables, is
        the rest of its inputs (a dict), merged into O(inputs) (C(build_cluster_sync_inputs) of the collection's
        C(playbooks/vars/inputs.yml)).
      - The host's settings, the Prow instance's and the playbook's switches (C(force_rotation), ...).
    type: str
  key:
    description: With O(state=record), the key the replay computed for this host (C(key) of its entry in RV(hosts)).
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
    inputs: {playbook: onboard}
    host_inputs: build_cluster_sync_inputs
  run_once: true
  register: sync
"""

RETURN = r"""
hosts:
  description:
    - With O(state=replay), each host's outcome, by its name, with the keys C(in_sync), C(key) (of its inputs and the
      code, for O(state=record)), C(journal) (empty when in sync or not replayed), C(calls) and C(msg).
  returned: always
  type: dict
in_sync:
  description: With O(state=record), whether a record was written (O(state=replay) gives it per host in RV(hosts)).
  returned: always
  type: bool
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
            "host_inputs": {"type": "str"},
            "key": {"type": "str", "no_log": False},
            "gcp_auth": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="prow.build_cluster.sync_record is an action plugin: it runs on the controller only")


if __name__ == "__main__":
    main()
