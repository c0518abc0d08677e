"""Run the fake as a background process for a state directory (``make sandbox``).

``start`` is idempotent: if the fake of that state directory answers, it returns its info
and starts nothing. ``stop`` ends it by the PID in ``<state_dir>/gcp/pid`` (after checking
the PID is really the fake, since PIDs get reused); the fake stops its GKE apiservers on
SIGTERM. State lives in the process's memory and ends with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .state import Config

START_TIMEOUT = 30.0
STOP_GRACE = 30.0  # the fake may be stopping GKE apiservers


def _state(state_dir: Path | None) -> Path:
    from prow_sandbox import kube  # one definition of the default state directory
    return Path(state_dir or kube.default_state_dir()).resolve()


def _pid(state: Path) -> int | None:
    """The fake's PID if that process is alive and is the fake of this state directory."""
    try:
        pid = int((state / "gcp" / "pid").read_text(encoding="utf-8").strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"prow_sandbox.gcp" in argv and str(state).encode() in argv else None


def _info(state: Path, pid: int) -> dict[str, Any] | None:
    """The running fake's info if it has written it and answers its health check."""
    try:
        info = json.loads((state / "gcp" / "info.json").read_text(encoding="utf-8"))
        if info["pid"] != pid:
            return None
        with urllib.request.urlopen(info["base_url"] + "/_fake/health", timeout=2) as resp:
            if resp.status != 200:
                return None
    except (OSError, ValueError, KeyError):
        return None
    return {
        **info,
        "endpoints_file": state / "endpoints.json",
        "credentials_file": Path(info["credentials_file"]),
    }


def start(state_dir: Path | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start the fake for ``state_dir`` (or find it running); return its info:
    ``endpoints``, ``endpoints_file``, ``project``, ``prow_project``, ``build_project``,
    ``credentials_file`` (the operator's key file), ``pid``, ``base_url``.

    ``config``: behaviour switches (``POST /_fake/config``). A fake started here gets them
    from the start (``--config``: kept by a reset); a fake already running gets them set now."""
    state = _state(state_dir)
    gcp_dir = state / "gcp"
    gcp_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config or {})
    check_config(config)  # a bad switch fails here, not as a fake that exits at start
    pid = _pid(state)
    if pid is not None:
        info = _info(state, pid)
        if info is not None:
            if config:
                configure(info["base_url"], config)
            return info
        stop(state)  # alive but not answering: replace it
    (gcp_dir / "info.json").unlink(missing_ok=True)
    switches = [f"--config={key}={_cli_value(value)}" for key, value in config.items()]
    with open(gcp_dir / "server.log", "ab") as log:
        # A new session: the fake outlives `prow-sandbox up` and ignores its Ctrl-C.
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "prow_sandbox.gcp", "--state-dir", str(state), *switches],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    (gcp_dir / "pid").write_text(f"{proc.pid}\n", encoding="utf-8")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the GCP fake exited with code {proc.returncode}; "
                               f"see {gcp_dir / 'server.log'}")
        info = _info(state, proc.pid)
        if info is not None:
            return info
        time.sleep(0.1)
    stop(state)
    raise RuntimeError(f"the GCP fake did not answer within {START_TIMEOUT:.0f}s; "
                       f"see {gcp_dir / 'server.log'}")


def check_config(config: dict[str, Any]) -> None:
    """RuntimeError unless ``config`` holds valid behaviour switches."""
    try:
        Config().update(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(f"bad GCP fake config {config}: {exc!r}") from exc


def configure(base_url: str, config: dict[str, Any]) -> dict[str, Any]:
    """Set behaviour switches of a running fake; return its whole config."""
    request = urllib.request.Request(base_url + "/_fake/config", data=json.dumps(config).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the GCP fake refused config {config}: {exc.read().decode()}") from exc


def _cli_value(value: Any) -> str:
    # The command-line form Config.update parses: a dict switch as TYPE=SECONDS,...
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def stop(state_dir: Path | None = None) -> bool:
    """Stop the fake of ``state_dir``; True if it was running."""
    state = _state(state_dir)
    pid = _pid(state)
    if pid is None:
        (state / "gcp" / "pid").unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while _pid(state) == pid and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid(state) != pid:
            break
    _reap(pid)
    (state / "gcp" / "pid").unlink(missing_ok=True)
    (state / "gcp" / "info.json").unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # If this process started the fake, collect its exit status so it leaves no zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
