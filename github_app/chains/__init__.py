"""On-chain escrow: the Polygon (EVM) and Solana adapters, addresses and escrow ids."""
