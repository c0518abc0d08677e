# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.workload_identity_pool; plugins/modules/workload_identity_pool.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils import _wif
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession

# API field -> option
FIELDS = {"displayName": "display_name", "description": "description", "disabled": "disabled"}


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            display_name={"type": "str"},
            description={"type": "str"},
            disabled={"type": "bool"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    error = _wif.id_error(params["name"], "name")
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    project = gcp.require_project()
    collection = _wif.pools_path(project)
    wanted = {api: params[opt] for api, opt in FIELDS.items()}
    # IAM leaves empty and false fields out of a pool: compare them as such.
    changed, before, after, actual = _wif.ensure(
        module, gcp, path=f"{collection}/{params['name']}", create_path=collection, id_param="workloadIdentityPoolId",
        resource_id=params["name"], wanted=wanted, resource=f"workload identity pool {params['name']}",
        compare=lambda field, have, want: (have or type(want)()) == want)
    result = {"changed": changed, "pool": actual if params["state"] == "present" and actual else {}}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)
