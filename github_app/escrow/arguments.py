"""The `wallet` and `escrow` subcommands' arguments: kept apart from their (heavier) implementation so
that `bmad-app --help` does not load the chain libraries."""

from __future__ import annotations

from typing import Any

CHAINS = ("polygon", "solana")


def add_parsers(sub: Any) -> None:
    wallet = sub.add_parser("wallet", help="users' payout and funding wallets")
    wallet_sub = wallet.add_subparsers(dest="wallet_command", required=True, metavar="ACTION")
    ws = wallet_sub.add_parser("set", help="set a user's wallet on a chain (EIP-55 or base58 address)")
    ws.add_argument("--user", required=True, metavar="EMAIL")
    ws.add_argument("--chain", required=True, choices=CHAINS)
    ws.add_argument("address")

    escrow = sub.add_parser("escrow", help="on-chain escrows: funding, releases, refunds")
    es = escrow.add_subparsers(dest="escrow_command", required=True, metavar="ACTION")
    dep = es.add_parser("deploy", help="deploy the escrow contract with the configured arbiter and treasury")
    dep.add_argument("--chain", required=True, choices=("polygon",))
    ls = es.add_parser("list", help="escrows with their funding and release state")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    show = es.add_parser("show", help="one escrow: row, on-chain problems, release, transactions")
    show.add_argument("escrow_id")
    es.add_parser("sync", help="read pending escrows on-chain and mark the funded ones FUNDED")
    retry = es.add_parser("retry", help="make a permanently failed release due again (never a second payment)")
    retry.add_argument("id", help="escrow id, story id or release request id")
    refund = es.add_parser("refund", help="refund a funded escrow to the client (operator decision)")
    refund.add_argument("escrow_id")
    rescue = es.add_parser(
        "rescue", help="send tokens sent to the Polygon contract outside `fund` (never an escrow's money) to TO"
    )
    rescue.add_argument("--chain", required=True, choices=("polygon",))
    rescue.add_argument("token", help="a currency of POLYGON_TOKENS (USDC) or a token address (EIP-55)")
    rescue.add_argument("to", help="the EIP-55 address that receives the excess")
