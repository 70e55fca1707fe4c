"""Names of the lease holders (inbox worker, outbox sender, escrow releaser) of this process."""

from __future__ import annotations

import os
import socket
import uuid


def worker_name() -> str:
    """Unique per holder: the host and process say where it ran, the suffix tells holders apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
