"""Many clients that connect, send the first byte of a request and wait, from a process of their own
(so that their sockets do not count against the server's file limit):

    python -m tests.idle_clients PORT COUNT

Prints `connected N` once it has tried COUNT connections, then holds them until its stdin closes, for
60 seconds at most.
"""

from __future__ import annotations

import select
import socket
import sys


def main(port: int, count: int) -> None:
    held: list[socket.socket] = []
    for _ in range(count):
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=2)
            conn.sendall(b"P")
        except OSError:
            break  # the server no longer takes connections: as many as it took are held
        held.append(conn)
    print(f"connected {len(held)}", flush=True)
    select.select([sys.stdin], [], [], 60)
    for conn in held:
        conn.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
