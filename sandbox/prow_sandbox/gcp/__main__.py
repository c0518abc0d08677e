"""``python -m prow_sandbox.gcp --state-dir DIR [--port N] [--config KEY=VALUE ...]``: run the
fake in the foreground.

:func:`prow_sandbox.gcp.daemon.start` runs this detached. Once the socket is bound it
writes ``<state_dir>/gcp/info.json`` (what ``daemon.start`` returns) and
``<state_dir>/endpoints.json``; SIGTERM stops the fake and the GKE apiservers it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .server import FakeGCP, write_private


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prow_sandbox.gcp", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a behaviour switch of POST /_fake/config, set from the start "
                             "(and kept by reset), e.g. gke_operation_latency=CREATE_CLUSTER=60")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.config):
        parser.error("--config takes KEY=VALUE")
    config = dict(item.split("=", 1) for item in args.config)
    logging.basicConfig(level=logging.INFO, format="fake-gcp: %(levelname)s %(message)s")

    fake = FakeGCP(args.state_dir, port=args.port, config=config)
    info = fake.info()
    write_private(fake.state_dir / "endpoints.json",
                   json.dumps(info["endpoints"], indent=2, sort_keys=True) + "\n")
    # Written last: daemon.start treats its presence (with our pid) as "ready".
    write_private(fake.gcp_dir / "info.json", json.dumps(info, indent=2) + "\n")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.info("signal %d: stopping", signum)
        # shutdown() blocks until serve_forever returns, so it must run in another thread.
        threading.Thread(target=fake._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.info("serving %s (pid %d)", fake.base_url, info["pid"])
    try:
        fake.serve_forever()
    finally:
        fake.stop()
        (fake.gcp_dir / "info.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
