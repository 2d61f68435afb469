"""Ask the game questions over a message pipe (see pipe_server.cpp).

    ./pipe_server GamePipe &
    python pipe_client.py GamePipe
"""
from __future__ import annotations

import argparse
import sys

import sharedstate as ss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args(argv)
    try:
        pipe = ss.Pipe.connect(args.name, timeout=5.0)  # retries until the server listens
    except (FileNotFoundError, TimeoutError):
        print(f"pipe_client: no server on {args.name!r}", file=sys.stderr)
        return 1
    with pipe:
        for i in range(args.requests):
            pipe.send(f"add {i} {i}".encode())  # one whole message, flushed
            reply = pipe.recv(timeout=5.0)      # one whole message back
            if reply != str(2 * i).encode():
                print(f"pipe_client: 'add {i} {i}' answered {reply!r}", file=sys.stderr)
                return 1
        pipe.send(b"bye")
        assert pipe.recv(timeout=5.0) == b"bye"
    print(f"pipe_client: {args.requests} requests answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
