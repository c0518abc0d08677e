# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.k8s_apply; plugins/modules/k8s_apply.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.

A document is in sync when the live object has every field the definition sets, with the
same value (lists item by item), and carries the definition as its kubectl
last-applied-configuration annotation. Then a later ``kubectl apply`` of the same
definition is a no-op too, and this module writes nothing. kubernetes.core's client-side
apply, by contrast, re-sends lists of custom resources on every run.
"""

from __future__ import annotations

import base64
import copy
import json

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session as gcp
from ansible_collections.prow.build_cluster.plugins.module_utils import k8s
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Fields the server owns: never compared, never shown in a diff.
SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": {
            **k8s.K8S_AUTH_ARGSPEC,
            **gcp.GCP_AUTH_ARGSPEC,
            "definition": {"type": "raw", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        "mutually_exclusive": k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + gcp.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


# ---------------------------------------------------------------- pure functions


def contains(actual, wanted):
    """Whether ``actual`` has every field of ``wanted`` with the same value.

    Maps: every key of ``wanted`` (keys only ``actual`` has, such as defaults the server
    filled in or fields set by hand, are fine, as for kubectl). Lists: the same length and
    item by item in order, each item compared the same way: a list is desired state, and
    ExternalSecret ``spec.data`` entries in another order or one entry fewer are a change.
    Scalars: equal, and a boolean never equals a number (Python's ``True == 1``).
    """
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(key in actual and contains(actual[key], value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(map(contains, actual, wanted))
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return isinstance(wanted, bool) and isinstance(actual, bool) and wanted == actual
    return actual == wanted


def removals(previous, wanted):
    """A merge patch that deletes what ``previous`` (the last applied definition) set and
    ``wanted`` no longer does: kubectl's three-way apply deletes such fields too. Only maps
    are walked; a list in ``wanted`` replaces the live list whole anyway."""
    patch = {}
    if not isinstance(previous, dict):
        return patch
    for key, value in previous.items():
        if key not in wanted:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(wanted[key], dict):
            inner = removals(value, wanted[key])
            if inner:
                patch[key] = inner
    return patch


def merge(target, patch):
    """RFC 7386 JSON merge patch of ``target`` (not modified): what the server will store."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def deep_merge(base, extra):
    """``base`` with the maps of ``extra`` merged in (no deletion); neither is modified."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def last_applied(document):
    """The annotation value kubectl would store for ``document`` (without the annotation
    itself): its compact JSON with sorted keys and a final newline (Go's encoder), and
    ``metadata.annotations`` always present, ``{}`` when the document has none, as kubectl
    writes it. Byte for byte the same, so a kubectl apply after this module does not
    rewrite the annotation."""
    metadata = dict(document["metadata"], annotations=document["metadata"].get("annotations") or {})
    return json.dumps(dict(document, metadata=metadata), sort_keys=True, separators=(",", ":")) + "\n"


def without_empty_annotations(document):
    """``document`` without an empty ``metadata.annotations``, which kubectl adds in the
    annotation and which means the same as none."""
    metadata = document.get("metadata") if isinstance(document, dict) else None
    if not isinstance(metadata, dict) or "annotations" not in metadata or metadata["annotations"]:
        return document
    return dict(document, metadata={k: v for k, v in metadata.items() if k != "annotations"})


def applied_of(live):
    """The definition a live object was last applied from, or None."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def comparable(document):
    """What the live object must contain for ``document``. The API server stores a Secret's
    ``stringData`` as base64 ``data`` and never returns ``stringData``; compare it that way."""
    if document.get("apiVersion") != "v1" or document.get("kind") != "Secret" or not isinstance(document.get("stringData"), dict):
        return document
    out = {k: v for k, v in document.items() if k != "stringData"}
    encoded = {k: base64.b64encode(str(v).encode("utf-8")).decode("ascii") for k, v in document["stringData"].items()}
    out["data"] = dict(document.get("data") or {}, **encoded)
    return out


def in_sync(live, document):
    """Whether applying ``document`` (annotation-free, namespace resolved) would change nothing."""
    if live is None:
        return False
    return without_empty_annotations(applied_of(live)) == without_empty_annotations(document) and contains(live, comparable(document))


def shown(obj):
    """An object as diffs show it: no server bookkeeping, no last-applied annotation (it
    repeats the definition, Secret data included), Secret values as fingerprints."""
    if obj is None:
        return {}
    out = copy.deepcopy(obj)
    metadata = out.get("metadata") or {}
    for key in SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if "annotations" in metadata and not annotations:
        del metadata["annotations"]
    if out.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if isinstance(out.get(key), dict):
                out[key] = {name: fingerprint(str(value)) for name, value in out[key].items()}
    return out


def secret_values(document):
    """The values of a Secret document, in the forms Ansible could print them (the task's
    arguments are part of its result): they are masked as no_log values."""
    if document.get("kind") != "Secret":
        return set()
    values = set()
    for key in ("data", "stringData"):
        for value in (document.get(key) or {}).values() if isinstance(document.get(key), dict) else ():
            text = str(value)
            values.add(text)
            if key == "data":
                try:
                    values.add(base64.b64decode(text, validate=True).decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    pass
    return {value for value in values if value}


def validation_error(documents):
    """Why the documents cannot be applied, or None; checked before any call."""
    seen = set()
    for index, document in enumerate(documents):
        where = f"definition[{index}]"
        if not isinstance(document, dict):
            return f"{where}: each document must be a mapping, not {type(document).__name__}"
        metadata = document.get("metadata")
        missing = [key for key in ("apiVersion", "kind") if not isinstance(document.get(key), str) or not document.get(key)]
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata.get("name"):
            missing.append("metadata.name")
        if missing:
            return f"{where}: missing {', '.join(missing)}"
        key = (document["apiVersion"], document["kind"], metadata.get("namespace"), metadata["name"])
        if key in seen:
            return f"{where}: {document['kind']} {metadata['name']} appears twice"
        seen.add(key)
    return None


# ---------------------------------------------------------------- the API server


class DefinitionError(Exception):
    """A document this server cannot take as given, by its discovery: a kind it does not
    serve (a CRD not installed, a wrong apiVersion), a namespace on a cluster-scoped kind."""


class Resources:
    """Discovery: the REST resource of each (apiVersion, kind), read once per apiVersion."""

    def __init__(self, client):
        self.client = client
        self.known = {}

    def locate(self, document):
        """(collection path, object path, namespaced) of a document; DefinitionError when the
        server does not serve its kind."""
        api_version, kind = document["apiVersion"], document["kind"]
        if api_version not in self.known:
            base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            listing = self.client.get(base, resource=f"API {api_version}")
            by_kind = {r["kind"]: r for r in (listing or {}).get("resources", []) if "/" not in r["name"]}
            self.known[api_version] = (base, by_kind)
        base, by_kind = self.known[api_version]
        resource = by_kind.get(kind)
        if resource is None:
            raise DefinitionError(f"{kind} {document['metadata']['name']}: the API server does not serve kind {kind} in apiVersion {api_version}: "
                                  "is its CustomResourceDefinition installed (and the apiVersion right)?")
        metadata = document["metadata"]
        if resource.get("namespaced"):
            collection = f"{base}/namespaces/{metadata['namespace']}/{resource['name']}"
        else:
            collection = f"{base}/{resource['name']}"
        return collection, f"{collection}/{metadata['name']}", bool(resource.get("namespaced"))


def label(document):
    """``Kind namespace/name`` (``Kind name`` when cluster-scoped), for messages and diff keys."""
    metadata = document["metadata"]
    where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{document['kind']} {where}{metadata['name']}"


def summary_of(document, action):
    metadata = document["metadata"]
    return {"kind": document["kind"], "name": metadata["name"], "namespace": metadata.get("namespace"), "action": action}


def resolve_scope(resources, document):
    """The document with its namespace as the server sees it (``default`` for a namespaced
    kind without one, as kubectl does, which also stores it in the annotation); paths."""
    wanted = copy.deepcopy(document)
    metadata = wanted["metadata"]
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        del annotations[LAST_APPLIED]
        if not annotations:
            del metadata["annotations"]
    probe = dict(wanted, metadata=dict(metadata, namespace=metadata.get("namespace") or "default"))
    collection, path, namespaced = resources.locate(probe)
    if namespaced:
        metadata["namespace"] = probe["metadata"]["namespace"]
    elif metadata.get("namespace"):
        raise DefinitionError(f"{label(wanted)}: {wanted['kind']} is cluster-scoped; remove metadata.namespace")
    return wanted, collection, path


def apply_one(module, client, resources, document):
    """(summary, before, after) for one document, writing unless in sync or in check mode.
    The document is as given; the summary's name and namespace are the server's."""
    document, collection, path = resolve_scope(resources, document)
    name = label(document)
    live = client.get(path, resource=name)
    summary = summary_of(document, "unchanged")
    if in_sync(live, document):
        return summary, live, live
    annotation = last_applied(document)
    annotated = deep_merge(document, {"metadata": {"annotations": {LAST_APPLIED: annotation}}})
    if live is None:
        summary["action"] = "created"
        after = annotated
        if not module.check_mode:
            try:
                after = client.request("POST", collection, annotated, resource=name)
            except ApiError as err:
                if err.status == 404 and document["metadata"].get("namespace"):
                    raise ApiError(name, 404, f"namespace {document['metadata']['namespace']} does not exist; create it first",
                                   method="POST") from None
                raise
        return summary, None, after
    # A JSON merge patch (RFC 7386) of the definition: maps merge, so fields the definition
    # does not set (server defaults, labels added by others) stay; lists and scalars are
    # replaced whole, which is the desired-state semantics wanted here (the list a definition
    # gives is the list). Fields an earlier definition set and this one dropped are deleted,
    # as kubectl's three-way apply does. No resourceVersion: the last writer wins, as with
    # kubectl apply.
    patch = deep_merge(removals(applied_of(live), json.loads(annotation)), annotated)
    summary["action"] = "updated"
    after = merge(live, patch)
    if not module.check_mode:
        after = client.merge_patch(path, patch, resource=name)
    return summary, live, after


def delete_one(module, client, resources, document):
    """(summary, before, after) for one document, deleting it unless absent or in check mode."""
    document, _collection, path = resolve_scope(resources, document)
    name = label(document)
    live = client.get(path, resource=name)
    summary = summary_of(document, "absent")
    if live is None:
        return summary, None, None
    summary["action"] = "deleted"
    if not module.check_mode:
        client.request("DELETE", path, allow_404=True, resource=name)
    return summary, live, None


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    definition = module.params["definition"]
    documents = definition if isinstance(definition, list) else [definition]
    error = validation_error(documents)
    if error:
        module.fail_json(msg=error)
    for document in documents:
        module.no_log_values.update(secret_values(document))

    client = k8s.connect(module, would=f"{'apply' if module.params['state'] == 'present' else 'delete'} {len(documents)} document(s) in it")
    resources = Resources(client)
    step = apply_one if module.params["state"] == "present" else delete_one
    # Diffs keyed by "Kind namespace/name" (a mapping: Ansible serializes it for the diff).
    summaries, before, after = [], {}, {}
    try:
        for document in documents:
            summary, old, new = step(module, client, resources, document)
            summaries.append(summary)
            if summary["action"] not in ("unchanged", "absent"):
                key = label({"kind": summary["kind"], "metadata": summary})
                before[key] = shown(old)
                after[key] = shown(new)
    except DefinitionError as err:
        module.fail_json(msg=str(err), documents=summaries)
    except ApiError as err:
        fail_on_api_error(module, err, documents=summaries)
    result = {"changed": bool(before), "documents": summaries}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)
