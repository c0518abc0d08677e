"""Client-side probe for ``prow-sandbox bench``: copied as ``sitecustomize.py``.

``prow-sandbox bench`` copies this file as ``sitecustomize.py`` into a directory it puts
on PYTHONPATH, and sets PROW_BENCH_PROBE to a JSON-lines file. Every Python process of the run (ansible-playbook and each module
process it starts) then appends to that file:

* ``{"kind": "http", ...}`` for every HTTP request urllib3 sends (the Kubernetes client
  and requests/google-auth both use it): method, host:port, path, status, duration. The
  sandbox's apiservers audit writes only, so this is how the bench counts Kubernetes reads.
* ``{"kind": "proc", ...}`` when the process exits: its Ansible module (the name
  ``runpy.run_module`` was called with, for AnsiballZ), start and end time, seconds spent
  before the module's code ran (interpreter start, sitecustomize), and in the module.

Without PROW_BENCH_PROBE it does nothing. urllib3 is patched when something imports it
(never imported here), so the probe adds no import cost of its own.
"""

import os

_LOG = os.environ.get("PROW_BENCH_PROBE")

if _LOG:
    import atexit
    import json
    import sys
    import threading
    import time

    _PID = os.getpid()
    _T0 = time.time()
    _STATE = {"module": None, "module_start": None}
    _local = threading.local()

    def _write(record):
        line = json.dumps(record, separators=(",", ":")) + "\n"
        # One write(2) per record on an O_APPEND descriptor: lines of concurrent
        # processes never interleave.
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _exit():
        if os.getpid() != _PID:  # a forked worker of ansible-playbook
            return
        # Process start from /proc (clock ticks since boot), so the interpreter's own
        # start-up counts too.
        started = _T0
        try:
            with open("/proc/self/stat", encoding="ascii") as handle:
                ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime", encoding="ascii") as handle:
                uptime = float(handle.read().split()[0])
            started = time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        _write({
            "kind": "proc", "pid": _PID, "argv0": os.path.basename(sys.argv[0] if sys.argv else ""),
            "module": _STATE["module"], "start": started, "site": _T0,
            "module_start": _STATE["module_start"], "end": time.time(),
        })

    atexit.register(_exit)

    def _patch_runpy():
        import runpy

        original = runpy.run_module

        def run_module(mod_name, *args, **kwargs):
            if _STATE["module"] is None:
                _STATE["module"] = mod_name
                _STATE["module_start"] = time.time()
            return original(mod_name, *args, **kwargs)

        runpy.run_module = run_module

    def _patch_urllib3(connectionpool):
        cls = connectionpool.HTTPConnectionPool
        if getattr(cls.urlopen, "_bench_probe", False):
            return
        original = cls.urlopen

        def urlopen(self, method, url, *args, **kwargs):
            # Retries and redirects re-enter urlopen: one logical request is logged once,
            # by the outermost call, with the number of attempts it took.
            depth = getattr(_local, "depth", 0)
            _local.depth = depth + 1
            if depth == 0:
                _local.attempts = 0
            _local.attempts += 1
            start = time.time()
            status = None
            try:
                response = original(self, method, url, *args, **kwargs)
                status = getattr(response, "status", None)
                return response
            finally:
                _local.depth = depth
                if depth == 0:
                    _write({
                        "kind": "http", "pid": _PID, "module": _STATE["module"],
                        "method": method, "host": f"{self.host}:{self.port}",
                        "scheme": self.scheme, "url": url, "status": status,
                        "attempts": _local.attempts,
                        "start": start, "seconds": round(time.time() - start, 6),
                    })

        urlopen._bench_probe = True
        cls.urlopen = urlopen

    class _Finder:
        """Patches urllib3.connectionpool right after its first import."""

        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname != "urllib3.connectionpool":
                return None
            import importlib.machinery

            sys.meta_path.remove(_Finder)
            try:
                spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            finally:
                sys.meta_path.insert(0, _Finder)
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            exec_module = loader.exec_module

            def patched_exec(module):
                exec_module(module)
                _patch_urllib3(module)

            loader.exec_module = patched_exec
            return spec

    _patch_runpy()
    if "urllib3.connectionpool" in sys.modules:
        _patch_urllib3(sys.modules["urllib3.connectionpool"])
    else:
        sys.meta_path.insert(0, _Finder)
