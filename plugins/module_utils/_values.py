# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Values in messages and diffs: durations (``48h``) and fingerprints of secrets."""

from __future__ import annotations

import hashlib
import re

_DURATION_PART = re.compile(r"(\d+)(d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value):
    """Seconds in a Go-style duration (``48h``, ``1h30m``, ``90s``, ``2d``) or a bare integer.

    Raises ValueError with a message that says what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"invalid duration {value!r}: use a number of seconds or units d, h, m, s (for example 48h or 1h30m)"
                )
            seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: it must be positive")
    return seconds


def format_duration(seconds):
    """Inverse of parse_duration for messages: 172800 -> '48h', 5400 -> '1h30m'."""
    seconds = int(seconds)
    out = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def fingerprint(secret):
    """A short, stable, non-reversible stand-in for a secret in diffs and return values."""
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return "sha256:" + hashlib.sha256(secret).hexdigest()[:16]
