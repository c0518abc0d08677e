"""Fault injection and the request log.

Faults are rules matched against each API request (method + a regex searched in the path,
optionally one service). Kinds:

* ``error``: answer ``status`` (429, 500, 503, ...) in the called service's error shape,
  ``times`` times (None: every time) or with probability ``rate``. With ``after`` the request
  is handled first (a write is applied) and then its answer is lost: the client gets the
  error all the same, as when Google's front end times out on a backend that went on. This
  is what makes a blind retry of a call that is not idempotent (Secret Manager addVersion,
  GKE create, a setIamPolicy without etag) do the thing twice;
* ``latency``: sleep ``delay`` seconds before handling (no error);
* ``etag_race``: the next matching ``setIamPolicy`` finds the policy changed by someone
  else after the caller read it, so a caller that sent the etag it read gets the stale-etag
  error (409 ABORTED, or 412 for Cloud Storage) and must re-read.

The request log records every API call (not the ``/_fake`` admin calls) in memory and as
JSON lines in ``<state_dir>/gcp/requests.jsonl``, so tests and benchmarks can count calls.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = ("error", "latency", "etag_race")

# Messages Google sends with these statuses, so clients log something familiar.
DEFAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'.",
    500: "Internal error encountered.",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}


@dataclass
class Fault:
    kind: str = "error"
    method: str = "*"
    path: str = ""  # regex, searched in the request path (which includes the service prefix)
    service: str | None = None
    status: int = 503
    message: str | None = None
    times: int | None = 1  # None = unlimited
    rate: float = 1.0  # probability that a matching request is hit
    delay: float = 0.0  # seconds, for kind "latency"
    after: bool = False  # error: handle the request, then answer the error (the answer is lost)
    id: int = 0
    hits: int = 0
    _regex: re.Pattern = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.kind == "error" and not 400 <= int(self.status) <= 599:
            raise ValueError("an error fault needs a 4xx/5xx status")
        if self.after and self.kind != "error":
            raise ValueError("after applies to error faults only")
        self.status = int(self.status)
        self.after = bool(self.after)
        self._regex = re.compile(self.path)

    def matches(self, method: str, path: str, service: str) -> bool:
        return ((self.method == "*" or self.method.upper() == method)
                and (self.service is None or self.service == service)
                and self._regex.search(path) is not None)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class Faults:
    """The active fault rules. Thread-safe; rules with ``times`` exhausted disappear."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._next_id = 1
        self._seed = seed
        self._random = random.Random(seed)  # seeded: a given rate hits the same requests

    def add(self, **spec: Any) -> Fault:
        fault = Fault(**spec)
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._rules.append(fault)
        return fault

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [f for f in self._rules if f.id != fault_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """No rules, and the random sequence from its seed: after a reset, the same faults on the
        same requests hit the same ones, whatever ran before."""
        with self._lock:
            self._rules.clear()
            self._random = random.Random(self._seed)

    def _hit(self, fault: Fault) -> bool:
        """Count a hit on a matching rule (subject to its rate); drop it when used up."""
        if fault.rate < 1.0 and self._random.random() >= fault.rate:
            return False
        fault.hits += 1
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._rules.remove(fault)
        return True

    def _take(self, kind: str, method: str, path: str, service: str) -> Fault | None:
        """The first matching rule of ``kind`` that fires for this request."""
        with self._lock:
            for fault in list(self._rules):
                if fault.kind == kind and fault.matches(method, path, service) and self._hit(fault):
                    return fault
        return None

    def delay_for(self, method: str, path: str, service: str) -> float:
        """Added latency for one request: every matching latency rule applies once."""
        with self._lock:
            return sum(f.delay for f in list(self._rules)
                       if f.kind == "latency" and f.matches(method, path, service) and self._hit(f))

    def error_for(self, method: str, path: str, service: str) -> Fault | None:
        return self._take("error", method, path, service)

    def take_etag_race(self, method: str, path: str, service: str) -> bool:
        return self._take("etag_race", method, path, service) is not None


class RequestLog:
    """Every API request, in memory (for the admin API) and appended to a JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry = {"seq": len(self._entries) + 1, **entry}
            self._entries.append(entry)
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, sort_keys=True) + "\n")

    def mark(self) -> int:
        """The sequence number of the last entry; pass it as ``since`` to see what follows."""
        with self._lock:
            return len(self._entries)

    def entries(self, *, since: int = 0, service: str | None = None,
                method: str | None = None, path: str | None = None,
                writes_only: bool = False) -> list[dict[str, Any]]:
        regex = re.compile(path) if path else None
        with self._lock:
            selected = self._entries[since:]
        return [
            e for e in selected
            if (service is None or e["service"] == service)
            and (method is None or e["method"] == method.upper())
            and (regex is None or regex.search(e["path"]))
            and (not writes_only or e["write"])
        ]
