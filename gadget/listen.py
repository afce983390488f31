"""Wait for Gadgetron to connect (a ``<connect port=... address=...>`` node) and run a handler.

    python -m gadget.listen PORT [handle_acquisitions|handle_recon_data] [--once]

Uses ``gadgetron.external.listen``; serves one Gadgetron connection after another until stopped.
"""

from __future__ import annotations

import argparse
import logging

from gadgetron.external import listen

from gadget import handlers

TARGETS = ("handle_acquisitions", "handle_recon_data")
log = logging.getLogger("gadget.listen")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gadget.listen", description=__doc__.splitlines()[0]
    )
    parser.add_argument("port", type=int, help="TCP port to listen on")
    parser.add_argument(
        "target",
        nargs="?",
        choices=TARGETS,
        default=TARGETS[0],
        help="handler (default: %(default)s)",
    )
    parser.add_argument("--once", action="store_true", help="serve one connection, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler = getattr(handlers, args.target)
    while True:
        try:
            listen(args.port, handler)
        except Exception:
            log.exception("connection on port %d ended with an error", args.port)
            if args.once:
                return 1
        if args.once:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
