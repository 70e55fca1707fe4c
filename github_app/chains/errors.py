"""Errors a chain adapter reports to the release and refund machinery."""

from __future__ import annotations


class TxRejected(Exception):
    """The node refused the transaction before sending it (its simulation failed): it was never on the
    chain and sending the same bytes again gets the same answer. `str()` is the node's error."""
