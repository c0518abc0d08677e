# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filter input_errors: the modules' own checks applied to the variables, for the pre-flight.

Each role's validate entry point lists the values it will give its modules, each with the variable
it comes from and the kind of check; this filter runs the very function the module runs on that
value (module_utils/_validate.py, the IAM member check, the token lifetimes of ksa_token, an
option of a module's argument spec) and returns one message per bad value, naming the variable.
A value a module would reject then stops onboarding before its first write.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.prow.build_cluster.plugins.module_utils import _validate as v

_IMPL = "ansible_collections.prow.build_cluster.plugins.module_utils.impl."


def _impl(module):
    # Imported only when a check needs it: a module's implementation pulls in its clients.
    return importlib.import_module(_IMPL + module)


def _members(value, _what):
    from ansible_collections.prow.build_cluster.plugins.module_utils import iam  # pylint: disable=import-outside-toplevel
    if not isinstance(value, list):
        return f"must be a list of principals, got {type(value).__name__}"
    return v.first_error(*(iam.member_error(member) for member in value))


def _token_lifetimes(value, _what):
    """What ksa_token refuses of duration and rotate_before: value is {duration, rotate_before, platform}
    (platform as ksa_token takes it; without it, gke: true means gke)."""
    platform = value.get("platform") or ("gke" if value.get("gke") else "other")
    error, _seconds = _impl("ksa_token").lifetimes_error(value["duration"], value["rotate_before"], platform,
                                                         names=("token_duration", "rotate_before", "platform"))
    return error


def _secret_resource(value, _what):
    """projects/PROJECT/secrets/SECRET, checked as gcp_iam_member and secret_manager_secret check it."""
    parts = str(value).split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "secrets":
        return f"{value!r} is not projects/PROJECT/secrets/SECRET (a secret name may not hold '/')"
    return v.first_error(v.project_id_error(parts[1], "secret project"), v.secret_id_error(parts[3]))


def _module_option(value, what):
    """An option as the module's own argument spec takes it (type, choices): value is {module, option, value}."""
    spec = _impl(value["module"]).module_kwargs()["argument_spec"]
    option = value["option"]
    result = ArgumentSpecValidator({option: spec[option]}).validate({option: value["value"]})
    return "; ".join(result.error_messages) or None


def _at_least(value, what):
    return v.at_least_error(value["value"], getattr(_impl(value["module"]), value["minimum"]))


def _rbac_name(value, what):
    return _impl("gke_admin_ksa").path_segment_error(value, what)


def _wif_id_error(value):
    from ansible_collections.prow.build_cluster.plugins.module_utils import _wif  # pylint: disable=import-outside-toplevel

    return _wif.id_error(value if isinstance(value, str) else "", "ID")


def _audiences(value, _what):
    """Audiences a Workload Identity Federation provider allows: a list of non-empty strings without spaces."""
    if not isinstance(value, list):
        return f"must be a list of audiences, got {type(value).__name__}"
    bad = [a for a in value if not isinstance(a, str) or not a or any(c.isspace() for c in a)]
    return f"{bad[0]!r} is not an audience (a non-empty string without spaces, e.g. https://kubernetes.default.svc)" if bad else None


def _component_service_accounts(value, _what):
    from ansible_collections.prow.build_cluster.plugins.filter.build_cluster import (  # pylint: disable=import-outside-toplevel
        component_service_accounts_errors)

    return "; ".join(component_service_accounts_errors({} if value in (None, "") else value)) or None


# kind -> function(value, what) returning why the value is refused, or None.
CHECKS = {
    "project_id": lambda value, what: v.project_id_error(value, "project"),
    "gke_name": lambda value, what: v.gke_name_error(value),
    "location": lambda value, what: v.location_error(value),
    "dns_label": lambda value, what: v.dns_label_error(value, "name"),
    "dns_subdomain": lambda value, what: v.dns_subdomain_error(value, "name"),
    "account_id": lambda value, what: v.account_id_error(value),
    "bucket": lambda value, what: v.bucket_name_error(v.normalize_bucket(value)),
    "output_dir": lambda value, what: v.output_dir_error(value, "directory"),
    "members": _members,
    "revoke_after": lambda value, what: _impl("ksa_token").revoke_after_error(value),
    "token_lifetimes": _token_lifetimes,
    "secret_resource": _secret_resource,
    "module_option": _module_option,
    "at_least": _at_least,
    "rbac_name": _rbac_name,
    "wif_id": lambda value, what: _wif_id_error(value),
    "secret_key": lambda value, what: _impl("workload_identity_binding").secret_key_error(value, "key"),
    "component_service_accounts": _component_service_accounts,
    "audiences": _audiences,
    "pod_path": lambda value, what: _impl("workload_identity_binding").token_path_error(value, "path"),
}


def input_errors(checks):
    """``[{variable, kind, value}]`` -> ``['VARIABLE: why', ...]`` for every value its check refuses."""
    if not isinstance(checks, list):
        raise AnsibleFilterError("input_errors: expected a list of {variable, kind, value}")
    errors = []
    for check in checks:
        if not isinstance(check, Mapping) or check.get("kind") not in CHECKS or "variable" not in check:
            raise AnsibleFilterError(f"input_errors: {check!r} is not {{variable, kind, value}} with kind one of {sorted(CHECKS)}")
        error = CHECKS[check["kind"]](check.get("value"), check["variable"])
        if error:
            errors.append(f"{check['variable']}: {error}")
    return errors


class FilterModule:
    def filters(self):
        return {"input_errors": input_errors}
