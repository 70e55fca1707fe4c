// The local JSON-RPC EVM node the tests and the benchmark start: `npx hardhat node --hostname 127.0.0.1`.
// The contracts are compiled by build.js with the pinned solc, so hardhat has no sources of its own.
// Blocks come at an interval (like a real chain) instead of one per transaction: pending transactions
// then queue by nonce as on Polygon, and a block carries many releases.
const interval = Number(process.env.HARDHAT_BLOCK_MS || 50);
module.exports = {
  solidity: "0.8.28",
  paths: { sources: "./hardhat-sources", cache: "./node_modules/.hardhat-cache", artifacts: "./node_modules/.hardhat-artifacts" },
  networks: { hardhat: { chainId: 31337, mining: { auto: false, interval } } },
};
