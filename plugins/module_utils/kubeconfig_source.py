# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a kubeconfig comes from: a file, inline content, or a Secret Manager secret.

gencred's token model stores each build cluster's kubeconfig in Secret Manager, so both
ksa_token (reading the current token to decide whether to rotate) and composite_kubeconfig
(merging members) accept the same three sources, spelled the same way.

The GCP session is created only when a secret is actually read: importing and
authenticating to Google costs time in every task that does not need it.
"""

from __future__ import annotations

import re

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc

SECRET_FORMAT = "projects/PROJECT/secrets/SECRET[/versions/VERSION]"

# Secret IDs: letters, digits, '-' and '_' (Secret Manager's rule). Projects: an ID or a
# number, possibly domain-scoped ("example.com:proj"). Versions: a number, "latest" or an alias.
_SECRET_RE = re.compile(
    r"^projects/(?P<project>[a-z0-9][-a-z0-9.:]*)/secrets/(?P<secret>[A-Za-z0-9_-]{1,255})"
    r"(?:/versions/(?P<version>[A-Za-z0-9_-]{1,63}))?$"
)

# Suboptions shared by composite_kubeconfig's members and ksa_token's current kubeconfig.
SOURCE_OPTIONS = {
    "name": {"type": "str"},
    "path": {"type": "path"},
    "content": {"type": "raw", "no_log": True},
    # A secret's resource name, not its payload (the sanity test guesses otherwise from the name).
    "secret": {"type": "str", "no_log": False},
}


def secret_version_name(value):
    """``projects/P/secrets/S/versions/V`` (V defaults to ``latest``) of a secret reference, or ValueError."""
    match = _SECRET_RE.match(value or "")
    if not match:
        raise ValueError(f"secret {value!r} is not of the form {SECRET_FORMAT}")
    return f"projects/{match['project']}/secrets/{match['secret']}/versions/{match['version'] or 'latest'}"


def validate(item, label):
    """Check one source spec without any I/O; return an error message or None."""
    given = [key for key in ("path", "content", "secret") if item.get(key) is not None]
    if len(given) != 1:
        return f"{label}: give exactly one of path, content or secret (got {', '.join(given) or 'none'})"
    if item.get("secret") is not None:
        try:
            secret_version_name(item["secret"])
        except ValueError as exc:
            return f"{label}: {exc}"
    return None


def label_of(item, default):
    return item.get("name") or item.get("path") or item.get("secret") or default


class SourceReader:
    """Reads sources; creates the Google session on the first secret only."""

    def __init__(self, module):
        self.module = module
        self._gcp = None
        self._sm = None

    def gcp(self):
        if self._gcp is None:
            # pylint: disable-next=import-outside-toplevel
            from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GcpSession

            self._gcp = GcpSession(self.module)
        return self._gcp

    def read(self, item, label):
        """The source's text (or mapping for inline content), or None if the file or secret does not exist.

        Raises kc.KubeconfigError for content that cannot be text, and _errors.ApiError for
        Secret Manager failures other than "not found".
        """
        if item.get("path") is not None:
            text, _mode = kc.read_file(item["path"])
            return text
        if item.get("content") is not None:
            return item["content"]
        return self.read_secret(item["secret"], label)

    def secret_manager(self):
        if self._sm is None:
            # pylint: disable-next=import-outside-toplevel
            from ansible_collections.prow.build_cluster.plugins.module_utils.secretmanager import SecretManager

            self._sm = SecretManager(self.gcp())
        return self._sm

    def read_secret(self, secret, label):
        """The payload of the version named (``latest`` by default: the newest created version).

        None if the secret or version does not exist. A DISABLED or DESTROYED version raises
        secretmanager.SecretVersionUnreadable (an ApiError) whose message says which version,
        its state and the fix: readers of ``latest`` do not fall back to an older version,
        as External Secrets' default LatestOrFail does not.
        """
        name = secret_version_name(secret)
        found = self.secret_manager().access(name, f"secret version {name}", allow_404=True)
        if found is None:
            return None
        return decode_payload(found[1], label)


def unreadable_version(exc):
    """Whether ``exc`` is secretmanager.SecretVersionUnreadable (a DISABLED or DESTROYED version),
    told without importing the Secret Manager library into modules that may not need it."""
    return getattr(exc, "state", None) in ("DISABLED", "DESTROYED") and getattr(exc, "version", None) is not None


def decode_payload(data, label):
    """The UTF-8 text of a version's payload bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise kc.KubeconfigError(f"{label}: the secret's payload is not UTF-8 text, so it cannot be a kubeconfig") from None


def hide_credentials(module, config):
    """Mask a kubeconfig's credentials wherever Ansible prints (the kubernetes.core#1014 pattern)."""
    for user in config.get("users") or []:
        for key in ("token", "client-key-data", "password"):
            value = (user.get("user") or {}).get(key)
            if value:
                module.no_log_values.add(value)


RETURN_CONTENT_NEEDS_NO_LOG = (
    "return_content: true returns the kubeconfig with its credentials in clear, for later tasks; "
    "set no_log: true on this task so that Ansible never prints or logs it"
)


def return_in_clear(module, text):
    """Let ``text`` reach the registered result unmasked; only for a task that has no_log: true.

    Ansible masks every no_log value in a module's result, including in the return value
    meant for later tasks, which would make it useless. Ansible cannot mark one return
    value no_log, so the module requires the task's no_log (which hides the whole result
    from output and logs, but not from register) and releases the masks that hit ``text``.
    """
    if not module.no_log:
        raise RuntimeError("return_in_clear needs a no_log task")  # callers check first; this is a bug guard
    module.no_log_values.difference_update({value for value in module.no_log_values if value in text})
    return text
