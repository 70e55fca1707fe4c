"""A hardhat@2 JSON-RPC node on 127.0.0.1, installed from contracts/package-lock.json and started once
per test session: the production transport (`AsyncHTTPProvider`) against a real node."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parent.parent.parent / "contracts"
HARDHAT = CONTRACTS / "node_modules" / ".bin" / "hardhat"


def node_or_fail() -> str:
    """The node binary; in CI a missing node is a failure with its reason, never a silent skip."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        message = (
            "node and npm are required for the escrow contract and local EVM node tests "
            "(install Node.js 20; CI installs contracts/ with `npm ci --prefix contracts`)"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return node


def ensure_node_modules() -> None:
    node_or_fail()
    if HARDHAT.exists() and (CONTRACTS / "node_modules" / "solc").exists():
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in contracts/ failed:\n{result.stderr[-2000:]}", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, params: list[object] | None = None) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


@pytest.fixture(scope="session")
def hardhat_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ensure_node_modules()
    port = free_port()
    log = (tmp_path_factory.mktemp("hardhat") / "node.log").open("w")
    env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"}
    process = subprocess.Popen(
        [str(HARDHAT), "node", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=CONTRACTS,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"hardhat node exited with {process.returncode}; see {log.name}", pytrace=False)
            try:
                rpc(url, "eth_chainId")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("hardhat node did not answer within 90 s", pytrace=False)
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
