// The local JSON-RPC EVM node the tests and the benchmark start: `npx hardhat node --hostname 127.0.0.1`.
// The contracts are compiled by build.js with the pinned solc, so hardhat has no sources of its own.
module.exports = {
  solidity: "0.8.28",
  paths: { sources: "./hardhat-sources", cache: "./node_modules/.hardhat-cache", artifacts: "./node_modules/.hardhat-artifacts" },
  networks: { hardhat: { chainId: 31337 } },
};
