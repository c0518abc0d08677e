# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.composite_kubeconfig; plugins/modules/composite_kubeconfig.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import re

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as sources
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error, parse_gke_name
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint, parse_duration
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import (
    K8S_AUTH_ARGSPEC,
    K8S_AUTH_MUTUALLY_EXCLUSIVE,
    connect,
)

MANAGED_BY = {"app.kubernetes.io/managed-by": "prow.build_cluster.composite_kubeconfig"}
# Secret keys Kubernetes accepts; Prow's --kubeconfig-dir skips names starting with "..".
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARGSPEC)
    spec.update(copy.deepcopy(GCP_AUTH_ARGSPEC))
    spec.update(
        members={
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {**copy.deepcopy(sources.SOURCE_OPTIONS), "gke": {"type": "str"},
                        "optional": {"type": "bool", "default": False}},
        },
        dest={"type": "path"},
        kubernetes_secret={  # where to write, not a secret value
            "type": "dict",
            "no_log": False,
            "options": {
                "name": {"type": "str", "required": True},
                "namespace": {"type": "str", "default": "default"},
                "key_suffix": {"type": "str", "default": "", "no_log": False},
            },
        },
        require_default={"type": "bool", "default": False},
        warn_before={"type": "str", "default": "12h"},
        return_content={"type": "bool", "default": False},
    )
    return spec


def validate(module):
    """Every check that needs no I/O; returns warn_before in seconds."""
    params = module.params
    try:
        warn_before = parse_duration(params["warn_before"])
    except ValueError as exc:
        module.fail_json(msg=f"warn_before: {exc}")
    for index, item in enumerate(params["members"]):
        error = gke_member_error(item, index) if item.get("gke") is not None else sources.validate(
            item, sources.label_of(item, f"members[{index}]"))
        if error:
            module.fail_json(msg=error)
    # In check mode the directory may be one an earlier task (the Prow files) would create.
    if params["dest"] and not module.check_mode and not os.path.isdir(os.path.dirname(os.path.abspath(params["dest"]))):
        module.fail_json(msg=f"dest: directory of {params['dest']} does not exist")
    if params["return_content"] and not module.no_log:
        module.fail_json(msg=sources.RETURN_CONTENT_NEEDS_NO_LOG)
    target = params["kubernetes_secret"]
    if target:
        for error in (
            dns_subdomain_error(target["name"], "kubernetes_secret.name"),
            dns_label_error(target["namespace"], "kubernetes_secret.namespace"),
        ):
            if error:
                module.fail_json(msg=error)
    return warn_before


def gke_member_error(item, index):
    """Why a keyless member (``gke``: its kubeconfig names GKE's exec plugin, read from the GKE API) is refused."""
    others = [key for key in ("path", "content", "secret") if item.get(key) is not None]
    if others:
        return f"members[{index}]: give exactly one of path, content, secret or gke (got gke, {', '.join(others)})"
    if not item.get("name"):
        return f"members[{index}]: a gke member needs name, its context name (the cluster's alias)"
    try:
        parse_gke_name(item["gke"])
    except ValueError as exc:
        return f"members[{index}].{exc}"
    return None


def read_gke_member(module, reader, item):
    """A keyless member's kubeconfig text (as gke_exec_kubeconfig writes it into Prow's ConfigMap), or None
    if GKE does not know the cluster."""
    from ansible_collections.prow.build_cluster.plugins.module_utils.impl import (  # pylint: disable=import-outside-toplevel
        gke_exec_kubeconfig as exec_impl)

    found = exec_impl.read_cluster(module, reader.gcp(), item["gke"])
    return None if found is None else exec_impl.exec_kubeconfig(module, item["name"], item["gke"], found, dict(kc.GKE_EXEC_PLUGIN))


def kind_of(item):
    return "GKE cluster" if item.get("gke") else "secret" if item.get("secret") else "file"


def what_of(item):
    if item.get("gke"):
        return f"GKE cluster {item['gke']}"
    return f"secret {item['secret']}" if item.get("secret") else f"file {item.get('path')}"


def load_members(module):
    """[(label, config)] of the members found, and the labels of the optional ones that were not."""
    reader = sources.SourceReader(module)
    members = []
    missing = []
    for index, item in enumerate(module.params["members"]):
        label = sources.label_of(item, f"members[{index}]")
        try:
            text = read_gke_member(module, reader, item) if item.get("gke") else reader.read(item, label)
            if text is None and item["optional"]:
                # A cluster whose first onboarding has not stored a kubeconfig yet: the others
                # must not lose their place in what Prow loads because of it.
                module.warn(f"{label}: no such {kind_of(item)} yet; left out")
                missing.append(label)
                continue
            if text is None and module.check_mode:
                # Check mode on an empty project: the earlier task that stores it only said it
                # would. A real run has it, so it is not among the missing optional members.
                module.exit_json(changed=True, missing=[], msg=(
                    f"{label}: {what_of(item)} does not exist yet: a real run stores it first; would merge it with the other members"))
            if text is None:
                module.fail_json(msg=f"{label}: no such {kind_of(item)}")
            config = kc.parse(text, label)
        except kc.KubeconfigError as exc:
            module.fail_json(msg=str(exc))
        sources.hide_credentials(module, config)
        members.append((label, config))
    return members, missing


def describe(config):
    """What a diff may show of a kubeconfig: contexts, servers and fingerprints."""
    return {
        item["context"]: {"server": item["server"], "token": item["token_fingerprint"]}
        for item in kc.summarize(config)
    }


def describe_text(module, text, label):
    """describe() of kubeconfig text that may be anything (it was found, not made by us)."""
    try:
        config = kc.parse(text, label)
    except kc.KubeconfigError:
        return {"unparsable": fingerprint(text)}
    sources.hide_credentials(module, config)
    return describe(config)


def to_file(module, merged):
    """Write the composite file if it differs; (changed, fingerprint, before, after)."""
    dest = module.params["dest"]
    content = kc.dump(merged)
    current, mode = kc.read_file(dest)
    before = describe_text(module, current, dest) if current is not None else {}
    changed = current != content or mode != 0o600
    if changed and not module.check_mode:
        kc.write_atomic(dest, content)
    return changed, fingerprint(content), before, describe(merged)


def secret_keys(module, merged):
    """{key: kubeconfig text}: one single-context kubeconfig per context, as --kubeconfig-dir wants."""
    suffix = module.params["kubernetes_secret"]["key_suffix"]
    data = {}
    for context, single in kc.split(merged).items():
        key = context + suffix
        if not _SECRET_KEY.match(key) or key.startswith(".."):
            module.fail_json(
                msg=f"context {context!r} cannot be a Secret key ({key!r}): keys allow letters, digits, '-', '_' and '.', "
                "and Prow skips names starting with '..'; rename the context (its alias)"
            )
        data[key] = kc.dump(single)
    return data


def decode_data(data):
    out = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            out[key] = None  # not text: certainly not what we would write
    return out


def to_secret(module, client, desired):
    """Create or update the Secret so its data is exactly ``desired``; (changed, fingerprint, before, after).

    Read, compare and write are retried together on a 409 conflict: the update carries the
    resourceVersion read, so a concurrent writer makes it fail instead of being overwritten.
    """
    target = module.params["kubernetes_secret"]
    namespace, name = target["namespace"], target["name"]
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    resource = f"secret {namespace}/{name}"
    outcome = {}

    def reconcile():
        actual = client.get(path, resource=resource)
        current = decode_data((actual or {}).get("data"))
        outcome["before"] = {key: describe_text(module, text, key) if text is not None else {"unparsable": None}
                             for key, text in current.items()}
        if actual is not None and actual.get("type", "Opaque") != "Opaque":
            module.fail_json(msg=f"{resource} exists with type {actual['type']}, not Opaque; delete it or choose another name")
        labels = ((actual or {}).get("metadata") or {}).get("labels") or {}
        outcome["changed"] = actual is None or current != desired or any(labels.get(k) != v for k, v in MANAGED_BY.items())
        if not outcome["changed"] or module.check_mode:
            return
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels, **MANAGED_BY)},
            "data": {key: base64.b64encode(text.encode("utf-8")).decode("ascii") for key, text in desired.items()},
        }
        if actual is None:
            client.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body, resource=resource)
        else:
            body["metadata"] = dict(actual["metadata"], labels=body["metadata"]["labels"])
            client.request("PUT", path, body, resource=resource)

    call_with_retry(reconcile, retry_on=lambda exc: isinstance(exc, ApiError) and exc.status == 409)
    after = {key: describe(kc.parse(text, key)) for key, text in desired.items()}
    return outcome["changed"], fingerprint("".join(f"{k}\0{v}\0" for k, v in sorted(desired.items()))), outcome["before"], after


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": argument_spec(),
        "mutually_exclusive": K8S_AUTH_MUTUALLY_EXCLUSIVE + GCP_AUTH_MUTUALLY_EXCLUSIVE + [("dest", "kubernetes_secret")],
        "required_one_of": [("dest", "kubernetes_secret")],
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    warn_before = validate(module)
    params = module.params

    members, missing = load_members(module)
    try:
        merged, owners = kc.merge(members, require_default=params["require_default"])
    except kc.KubeconfigError as exc:
        module.fail_json(msg=str(exc))

    contexts = kc.summarize(merged, owners, warn_within=warn_before)
    result = {}
    if params["dest"]:
        changed, digest, before, after = to_file(module, merged)
        result.update(dest=params["dest"])
        header = params["dest"]
    else:
        desired = secret_keys(module, merged)  # validates key names before connecting
        client = connect(module)
        changed, digest, before, after = to_secret(module, client, desired)
        target = params["kubernetes_secret"]
        result["kubernetes_secret"] = {"name": target["name"], "namespace": target["namespace"], "keys": sorted(desired)}
        header = f"secret {target['namespace']}/{target['name']}"
        for item in contexts:
            item["key"] = item["context"] + target["key_suffix"]

    for item in contexts:
        if item["status"] in ("expired", "expiring"):
            module.warn(f"context {item['context']} ({item['source']}): token {item['status']} at {item['token_expiry']}")

    result.update(
        changed=changed,
        fingerprint=digest,
        contexts=contexts,
        missing=missing,
        diff={"before": before, "after": after, "before_header": header, "after_header": header},
    )
    if params["return_content"]:
        result["kubeconfig"] = sources.return_in_clear(module, kc.dump(merged))
    module.exit_json(**result)
