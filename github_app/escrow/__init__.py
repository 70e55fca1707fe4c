"""Paying experts from on-chain escrows: funding detection, the release worker, refunds, wallets."""
