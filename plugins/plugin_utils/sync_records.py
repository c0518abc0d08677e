# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Sync records: what a build cluster host's last in-sync onboarding called, to replay next time.

A no-op onboarding is a few dozen tasks that each find nothing to do; most of its cost is
Ansible's per-task work on the controller, not the API reads. While a host's roles run,
``inprocess.InProcessAction`` journals every call of a collection module (the module and its
final arguments, templated and with module_defaults, secrets left out). After the run, the
calls are replayed in check mode; when none would change anything, they become the host's
record. The next run replays the record in one task and, when every call still says
``changed=false``, skips the pre-flight checks and the roles: they would make the same calls
with the same arguments and find the same thing (docs/architecture.md, "Sync records").

This file is the controller-side logic shared by the journal and the ``sync_record`` action:
the no-secret filter, the record's key and its file format. Nothing here talks to an API.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

# Bump when the file format or what a call holds changes: an older record is then ignored.
FORMAT_VERSION = 1

# The Google credentials options (module_utils/_gcp_session.GCP_AUTH_ARGSPEC but project, which
# names a resource): never stored, the replay gives the current gcp_auth (or the environment).
GCP_AUTH_OPTIONS = frozenset({
    "auth_kind", "service_account_file", "service_account_contents", "access_token",
    "impersonate_service_account", "scopes", "api_endpoints",
})

# Calls that take a secret and may be left out of a record, and why leaving them out is sound:
# the call only runs when an earlier call of the record says so, and that call is replayed.
SECRET_CALLS_OUTSIDE_RECORDS = {
    "secret_manager_secret": "stores a token only after ksa_token minted one; ksa_token's replay "
                             "says changed whenever a mint is due",
}

# What the key hashes of the collection itself: its code and the YAML that calls it.
CODE_PATHS = ("plugins", "roles", "playbooks/tasks", "playbooks/vars", "meta/runtime.yml")
CODE_SUFFIXES = (".py", ".yml", ".yaml", ".j2", ".json")

# Variables of the roles (inventory, vars files): inputs as much as build_cluster is.
ROLE_VARIABLE_PREFIXES = ("cluster_", "gcs_access_", "credentials_", "prow_config_")


def collection_root():
    """The collection's directory (ansible_collections/prow/build_cluster)."""
    return Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def code_digest(root=None):
    """sha256 over the relative paths and contents of the collection's code (CODE_PATHS).

    Cached per process: the action computes it once when the controller loads it, and every
    worker forked for a host inherits it (the code does not change during a run)."""
    root = Path(root) if root else collection_root()
    digest = hashlib.sha256()
    files = []
    for name in CODE_PATHS:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*")
                         if p.is_file() and p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts)
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    # The playbooks themselves, but not what a run writes below playbooks/ (the default out/).
    for path in sorted((root / "playbooks").glob("*.yml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def canonical(value):
    """JSON text of value with sorted keys: the same data, the same bytes (for digests only)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def serialize(value):
    """JSON text of value in its own key order: a call's arguments as given (yaml_files writes
    documents in that order, so sorting them would be another content)."""
    return json.dumps(value, separators=(",", ":"))


def record_key(inputs, role_variables, code, ansible_version):
    """The digest a record is valid for: the host's inputs, the roles' variables, the code."""
    material = {
        "format": FORMAT_VERSION,
        "inputs": inputs,
        "role_variables": role_variables,
        "code": code,
        "ansible": ansible_version,
    }
    return hashlib.sha256(canonical(material).encode()).hexdigest()


def role_variable_names(names):
    """The names of the roles' variables among ``names``, sorted."""
    return sorted(name for name in names if name.startswith(ROLE_VARIABLE_PREFIXES))


def _no_log_options(argument_spec):
    """{option: sub-spec or None} of every no_log option, and of options holding some inside."""
    found = {}
    for name, spec in argument_spec.items():
        if spec.get("no_log"):
            found[name] = None
        elif spec.get("options"):
            inner = _no_log_options(spec["options"])
            if inner:
                found[name] = inner
    return found


def _drop(value, no_log, dropped, path):
    if not isinstance(value, dict):
        return value
    kept = {}
    for name, item in value.items():
        if name in no_log and no_log[name] is None:
            if item not in (None, "", {}, []):
                dropped.append(path + name)
            continue
        if name in no_log:
            if isinstance(item, list):
                item = [_drop(entry, no_log[name], dropped, f"{path}{name}[].") for entry in item]
            else:
                item = _drop(item, no_log[name], dropped, f"{path}{name}.")
        kept[name] = item
    return kept


def scrub_call(argument_spec, args):
    """(the arguments a record may hold, [the secret options that had a value]).

    no_log options (at any depth) and the Google credentials options are dropped; a kubeconfig
    given inline (a dict, which holds credentials) counts as a secret too. A call with a secret
    cannot be replayed without it: it is left out (SECRET_CALLS_OUTSIDE_RECORDS) or the host
    gets no record.
    """
    args = dict(args)
    if "auth_kind" in argument_spec:
        # Re-supplied at replay (replay_args), so not a secret that bars a record.
        args = {name: value for name, value in args.items() if name not in GCP_AUTH_OPTIONS}
    dropped = []
    kept = _drop(args, _no_log_options(argument_spec), dropped, "")
    if isinstance(kept.get("kubeconfig"), dict):
        dropped.append("kubeconfig")
        kept.pop("kubeconfig")
    return kept, dropped


def replay_args(argument_spec, stored, gcp_auth):
    """A recorded call's arguments for its replay: the stored ones and the current gcp_auth."""
    args = dict(stored)
    if "auth_kind" in argument_spec:
        args.update({name: value for name, value in (gcp_auth or {}).items()
                     if name in GCP_AUTH_OPTIONS and value is not None})
    return args


def unique_calls(entries):
    """The journal's calls, each once (a pre-flight check and its real task may be the same call)."""
    seen, calls = set(), []
    for entry in entries:
        text = canonical({"module": entry["module"], "args": entry["args"], "no_log": entry["no_log"]})
        if text not in seen:
            seen.add(text)
            calls.append({"module": entry["module"], "args": entry["args"], "no_log": entry["no_log"]})
    return calls


def read_journal(path):
    """The entries of a journal file (JSON lines); a torn last line (a killed run) is an error."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def append_journal(path, entry):
    """Append one call to the host's journal, created 0600 (O_APPEND: each line whole)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(serialize(entry) + "\n")


def record_document(key, calls):
    return {"format": FORMAT_VERSION, "key": key, "calls": calls}


class RecordUnusable(Exception):
    """A record that cannot be used: missing, corrupt, another format or key. The message says which."""


def load_record(path, key):
    """The calls of the record at ``path`` when it is valid for ``key``; else RecordUnusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise RecordUnusable("no sync record yet") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise RecordUnusable(f"the sync record {path} is corrupt ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("calls"), list) or not doc["calls"] or \
            not all(isinstance(c, dict) and isinstance(c.get("module"), str) and isinstance(c.get("args"), dict)
                    for c in doc["calls"]):
        raise RecordUnusable(f"the sync record {path} is corrupt (not a list of calls)")
    if doc.get("format") != FORMAT_VERSION:
        raise RecordUnusable(f"the sync record is of format {doc.get('format')!r}, not {FORMAT_VERSION}")
    if doc.get("key") != key:
        raise RecordUnusable("the inputs or the collection changed since the sync record was written")
    return doc["calls"]
