"""``python -m agentray.simulator --port 8765``: serve the echo policy for manual use."""

from __future__ import annotations

import argparse
import logging
import threading

from . import EchoPolicy, Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentray.simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sim = Simulator(
        EchoPolicy(),
        models=None,
        latency_s=args.latency,
        min_cache_tokens=args.min_cache_tokens,
        host=args.host,
        port=args.port,
    )
    print(f"ANTHROPIC_BASE_URL={sim.start()}  (any API key works; Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
