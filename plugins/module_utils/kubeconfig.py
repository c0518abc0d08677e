# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Kubeconfig logic with no I/O: build, parse, merge, summarise, and write atomically.

Prow keys every build cluster by kubeconfig *context* name, and a context name that
appears in two files is a fatal load error with --kubeconfig-dir. Everything here keeps
that invariant and produces byte-for-byte deterministic output, so that "changed" can
be decided by comparing content.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from datetime import datetime, timezone
from urllib.parse import urlsplit

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - reported by the modules
    HAS_YAML = False

from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint


class KubeconfigError(ValueError):
    """A kubeconfig is malformed, or a set of them cannot be merged."""


def build(alias, server, ca_data, token):
    """A kubeconfig whose cluster, user and context are all named ``alias`` (as gencred wrote them)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": alias, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": alias, "user": {"token": token}}],
        "contexts": [{"name": alias, "context": {"cluster": alias, "user": alias}}],
        "current-context": alias,
        "preferences": {},
    }


# GKE's client-go credential plugin, as Prow's images (no gcloud) must run it: a Google access
# token from Application Default Credentials (Workload Identity in the Prow cluster).
GKE_EXEC_PLUGIN = {
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "command": "gke-gcloud-auth-plugin",
    "args": ["--use_application_default_credentials"],
    "provideClusterInfo": True,
    "interactiveMode": "Never",
}


def build_exec(alias, server, ca_data, plugin=None):
    """A kubeconfig like :func:`build`'s whose user runs an exec credential plugin (GKE's by
    default) instead of holding a token: nothing in it is a secret."""
    config = build(alias, server, ca_data, None)
    config["users"] = [{"name": alias, "user": {"exec": dict(plugin or GKE_EXEC_PLUGIN)}}]
    return config


def dump(config):
    """Deterministic YAML text of a kubeconfig."""
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


def parse(content, source):
    """Parse kubeconfig text (or an already-parsed dict) and check its structure.

    ``source`` names where it came from, for error messages. Raises KubeconfigError.
    """
    if isinstance(content, dict):
        config = content
    else:
        try:
            config = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise KubeconfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise KubeconfigError(f"{source}: a kubeconfig must be a YAML mapping, got {type(config).__name__}")
    for key in ("clusters", "users", "contexts"):
        entries = config.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
            raise KubeconfigError(f"{source}: '{key}' must be a list of entries that each have a 'name'")
        names = [e["name"] for e in entries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise KubeconfigError(f"{source}: {key} {', '.join(dupes)} defined more than once")
    if not config.get("contexts"):
        raise KubeconfigError(f"{source}: no contexts: Prow addresses build clusters by context name")
    clusters = {c["name"] for c in config.get("clusters") or []}
    users = {u["name"] for u in config.get("users") or []}
    for ctx in config["contexts"]:
        body = ctx.get("context") or {}
        if body.get("cluster") not in clusters:
            raise KubeconfigError(f"{source}: context {ctx['name']!r} names cluster {body.get('cluster')!r}, which is not defined")
        if body.get("user") and body["user"] not in users:
            raise KubeconfigError(f"{source}: context {ctx['name']!r} names user {body['user']!r}, which is not defined")
    return config


def _by_name(entries):
    return {e["name"]: e for e in entries or []}


def context_details(config, context_name):
    """(cluster entry body, user entry body) of one context."""
    ctx = _by_name(config["contexts"])[context_name]["context"]
    cluster = _by_name(config.get("clusters"))[ctx["cluster"]]["cluster"]
    user = _by_name(config.get("users")).get(ctx.get("user"), {}).get("user", {})
    return cluster, user


def merge(members, require_default=False):
    """Merge ``[(source, config)]`` into one composite kubeconfig.

    Context names must be unique across members (as Prow's --kubeconfig-dir requires).
    Clusters and users may repeat only with identical content; the output is sorted by
    name so that the same inputs always give the same bytes. The composite's
    current-context is ``default`` when there is one, else the first context by name.
    """
    contexts, clusters, users = {}, {}, {}
    owners = {}
    for source, config in members:
        for ctx in config["contexts"]:
            name = ctx["name"]
            if name in contexts:
                raise KubeconfigError(
                    f"context {name!r} occurs in both {owners[name]} and {source}: "
                    "Prow refuses duplicate context names; give each build cluster its own alias"
                )
            contexts[name] = ctx
            owners[name] = source
        for kind, seen in (("clusters", clusters), ("users", users)):
            for entry in config.get(kind) or []:
                prior = seen.get(entry["name"])
                if prior is not None and prior[1] != entry:
                    raise KubeconfigError(
                        f"{kind[:-1]} {entry['name']!r} is defined differently in {prior[0]} and {source}: "
                        "rename it in one of them"
                    )
                seen[entry["name"]] = (source, entry)
    if require_default and "default" not in contexts:
        raise KubeconfigError(
            "no context named 'default': Prow schedules jobs without a cluster: field there; "
            "name one build cluster's alias 'default' or set require_default: false"
        )
    names = sorted(contexts)
    current = "default" if "default" in contexts else (names[0] if names else None)
    merged = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [clusters[n][1] for n in sorted(clusters)],
        "users": [users[n][1] for n in sorted(users)],
        "contexts": [contexts[n] for n in names],
        "current-context": current,
        "preferences": {},
    }
    return merged, owners


def token_claims(token):
    """The claims of a JWT bearer token as a dict, or None if it is not a JWT.

    The signature is not checked: this only reads what the issuer promised, for
    warnings, rotation decisions and diagnoses; the server (TokenReview) is the authority.
    """
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token):
    """The ``exp`` of a JWT bearer token as an aware datetime, or None if it is not a JWT (or has none)."""
    try:
        return datetime.fromtimestamp(int((token_claims(token) or {})["exp"]), tz=timezone.utc)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None


def summarize(config, owners=None, now=None, warn_within=None):
    """Per-context facts safe to return: server, token fingerprint, expiry and status."""
    now = now or datetime.now(timezone.utc)
    out = []
    for ctx in config["contexts"]:
        cluster, user = context_details(config, ctx["name"])
        token = user.get("token")
        expiry = token_expiry(token) if token else None
        if token is None:
            status = "no-token"
        elif expiry is None:
            status = "unknown-expiry"
        elif expiry <= now:
            status = "expired"
        elif warn_within is not None and (expiry - now).total_seconds() <= warn_within:
            status = "expiring"
        else:
            status = "valid"
        item = {
            "context": ctx["name"],
            "server": cluster.get("server"),
            "token_fingerprint": fingerprint(token),
            "token_expiry": expiry.isoformat() if expiry else None,
            "expires_in_seconds": int((expiry - now).total_seconds()) if expiry else None,
            "status": status,
        }
        if owners:
            item["source"] = owners.get(ctx["name"])
        out.append(item)
    return out


def write_atomic(path, content, mode=0o600):
    """Write ``content`` to ``path`` through a temp file in the same directory and a rename.

    The file is created with ``mode`` from the start, so a secret is never readable by
    others, not even for an instant. Readers (Prow's fsnotify watch) see the old or the
    new content, never a partial file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".kubeconfig")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_file(path):
    """Content and mode of an existing file, or (None, None)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None, None


def parse_timestamp(value):
    """An RFC 3339 timestamp as the API server writes it (``2026-11-25T12:00:00Z``) as an aware datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def normal_server(url):
    """A server URL reduced to what identifies the endpoint: lower-case host, explicit port, no trailing slash."""
    parts = urlsplit((url or "").strip())
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def normal_ca(ca_data):
    """The CA bundle's bytes with whitespace dropped, so re-encoded or re-wrapped PEM compares equal."""
    try:
        return b"".join(base64.b64decode(ca_data or "", validate=False).split())
    except (binascii.Error, ValueError):
        return None


def credential(config, alias):
    """(server, ca_data, token) of context ``alias``, or None if the kubeconfig has no such context."""
    if alias not in _by_name(config.get("contexts")):
        return None
    cluster, user = context_details(config, alias)
    return cluster.get("server"), cluster.get("certificate-authority-data"), user.get("token")


def stale_reason(config, alias, server, ca_data, now, rotate_before):
    """Why the token of context ``alias`` cannot be kept, judged without calling any API; None if it may be.

    ``server`` and ``ca_data`` are those of the cluster the token is for; a kubeconfig that
    points elsewhere, or trusts another CA, belongs to another cluster. The server still
    has the last word (TokenReview): a token that passes here may have been revoked.
    """
    if config is None:
        return "no current kubeconfig"
    found = credential(config, alias)
    if found is None:
        return f"the current kubeconfig has no context {alias!r}"
    current_server, current_ca, token = found
    if not token:
        return f"context {alias!r} has no token"
    if normal_server(current_server) != normal_server(server):
        return f"context {alias!r} points at {current_server}, not {server}"
    if normal_ca(current_ca) != normal_ca(ca_data):
        return f"context {alias!r} trusts another CA than the cluster's"
    expiry = token_expiry(token)
    if expiry is None:
        return "the token's expiry is unknown (not a JWT)"
    left = (expiry - now).total_seconds()
    if left <= 0:
        return f"the token expired at {expiry.isoformat()}"
    if left <= rotate_before:
        return f"the token expires at {expiry.isoformat()}, within rotate_before"
    return None


def review_reason(status, expected_user):
    """Why a TokenReview ``status`` rules the token out, or None if it authenticates as ``expected_user``."""
    if not status.get("authenticated"):
        return f"the API server rejects the token: {status.get('error') or 'not authenticated'}"
    username = (status.get("user") or {}).get("username")
    if username != expected_user:
        return f"the token authenticates as {username}, not {expected_user}"
    return None


def split(config):
    """One kubeconfig per context of ``config``, each with its own cluster and user: ``{context: kubeconfig}``.

    This is the shape of a --kubeconfig-dir directory: one file per build cluster.
    """
    clusters, users = _by_name(config.get("clusters")), _by_name(config.get("users"))
    out = {}
    for ctx in config["contexts"]:
        body = ctx.get("context") or {}
        single = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [clusters[body["cluster"]]],
            "users": [users[body["user"]]] if body.get("user") in users else [],
            "contexts": [ctx],
            "current-context": ctx["name"],
            "preferences": {},
        }
        out[ctx["name"]] = single
    return out
