#!/usr/bin/env node
// Compiles Escrow.sol (and the test tokens) with the pinned npm `solc`, standard JSON, EVM `paris`,
// metadata hash off, so the output is byte-for-byte reproducible. Writes:
//   ../github_app/chains/artifacts/Escrow.json  (abi, bytecode, compiler, sourceSha256)
//   ../github_app/demo/TestTokens.json             (test-only tokens)
// `node build.js --check` rebuilds in memory and exits 1 if a committed artifact differs.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const targets = [
  { source: "Escrow.sol", out: "../github_app/chains/artifacts/Escrow.json", contracts: ["Escrow"] },
  { source: "test/TestTokens.sol", out: "../github_app/demo/TestTokens.json", contracts: ["TestToken", "NoBoolToken"] },
];

function compile(sourceName) {
  const content = fs.readFileSync(path.join(here, sourceName), "utf8");
  const input = {
    language: "Solidity",
    sources: { [sourceName]: { content } },
    settings: {
      evmVersion: "paris",
      optimizer: { enabled: true, runs: 200 },
      metadata: { bytecodeHash: "none", appendCBOR: false },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  }
  return { content, contracts: output.contracts[sourceName] };
}

function artifacts() {
  const result = [];
  for (const t of targets) {
    const { content, contracts } = compile(t.source);
    const sourceSha256 = crypto.createHash("sha256").update(content).digest("hex");
    let doc;
    if (t.contracts.length === 1) {
      const c = contracts[t.contracts[0]];
      doc = { contractName: t.contracts[0], compiler: solc.version(), evmVersion: "paris", sourceSha256, abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
    } else {
      doc = { compiler: solc.version(), evmVersion: "paris", sourceSha256, contracts: {} };
      for (const name of t.contracts) {
        doc.contracts[name] = { abi: contracts[name].abi, bytecode: "0x" + contracts[name].evm.bytecode.object };
      }
    }
    result.push({ out: path.join(here, t.out), text: JSON.stringify(doc, null, 1) + "\n" });
  }
  return result;
}

const check = process.argv.includes("--check");
let stale = 0;
for (const a of artifacts()) {
  if (check) {
    const current = fs.existsSync(a.out) ? fs.readFileSync(a.out, "utf8") : "";
    if (current !== a.text) {
      console.error(`stale: ${path.relative(here, a.out)} (run: node contracts/build.js)`);
      stale += 1;
    }
  } else {
    fs.mkdirSync(path.dirname(a.out), { recursive: true });
    fs.writeFileSync(a.out, a.text);
    console.log(`wrote ${path.relative(here, a.out)}`);
  }
}
process.exit(stale ? 1 : 0);
