"""The committed contract artifact is what the committed source compiles to, with the pinned solc."""

from __future__ import annotations

import hashlib
import subprocess

from github_app.chains.evm import artifact
from tests.chain.hardhat import CONTRACTS, ensure_node_modules


def test_artifact_records_the_hash_of_the_committed_source() -> None:
    source = (CONTRACTS / "Escrow.sol").read_bytes()
    data = artifact()
    assert data["sourceSha256"] == hashlib.sha256(source).hexdigest(), "run: node contracts/build.js"
    assert data["evmVersion"] == "paris" and data["bytecode"].startswith("0x60")
    names = {item.get("name") for item in data["abi"]}
    assert {"fund", "release", "refund", "escrows", "Funded", "Released", "Refunded"} <= names


def test_artifact_is_byte_for_byte_what_solc_compiles() -> None:
    ensure_node_modules()
    result = subprocess.run(["node", "build.js", "--check"], cwd=CONTRACTS, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_artifact_ships_in_the_package() -> None:
    from importlib import resources

    assert resources.files("github_app.chains").joinpath("artifacts/Escrow.json").is_file()
