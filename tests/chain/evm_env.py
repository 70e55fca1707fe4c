"""A real EVM with the escrow contract deployed: py-evm in-process, or any JSON-RPC node (hardhat).

Keys are made here and funded with gas from the node's first unlocked account, so the same code runs
on both; tokens are the test ERC-20s compiled from contracts/test/TestTokens.sol."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import AsyncWeb3

from github_app.chains.evm import EvmChain, deploy

TOKENS = json.loads((Path(__file__).parent / "TestTokens.json").read_text())["contracts"]


def key(n: int) -> str:
    return "0x" + (n + 0x1000).to_bytes(32, "big").hex()


ARBITER_KEY = key(1)
TREASURY_KEY = key(2)
CLIENT_KEY = key(3)
DEPLOYER_KEY = key(4)


def address(private_key: str) -> str:
    return str(Account.from_key(private_key).address)


def expert_key(n: int) -> str:
    return key(100 + n)


@dataclass
class EvmEnv:
    w3: AsyncWeb3
    chain_id: int
    escrow_address: str
    tokens: dict[str, str]  # currency -> token address
    token_contracts: dict[str, Any] = field(default_factory=dict)

    def chain(self, confirmations: int = 1, replace_after: float | None = None) -> EvmChain:
        return EvmChain(
            self.w3,
            contract_address=self.escrow_address,
            arbiter_key=ARBITER_KEY,
            chain_id=self.chain_id,
            confirmations=confirmations,
            tokens=self.tokens,
            explorer_url="https://amoy.polygonscan.com",
            replace_after=replace_after,
        )

    async def mine(self, blocks: int = 1) -> None:
        """Blocks with whatever is pending (none: empty ones), now."""
        tester = getattr(self.w3.provider, "ethereum_tester", None)
        if tester is not None:
            tester.mine_blocks(blocks)
        else:
            await self.w3.provider.make_request("hardhat_mine", [hex(blocks)])  # type: ignore[arg-type]

    async def hold_blocks(self) -> None:
        """No block is made until `resume_blocks` (transactions wait in the pool, as on a congested chain)."""
        tester = getattr(self.w3.provider, "ethereum_tester", None)
        if tester is not None:
            tester.disable_auto_mine_transactions()
        else:
            await self.w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]

    async def resume_blocks(self) -> None:
        import os

        tester = getattr(self.w3.provider, "ethereum_tester", None)
        if tester is not None:
            tester.enable_auto_mine_transactions()
        else:
            interval = int(os.environ.get("HARDHAT_BLOCK_MS", "50"))
            await self.w3.provider.make_request("evm_setIntervalMining", [interval])  # type: ignore[arg-type]

    async def balance(self, currency: str, owner: str) -> int:
        return int(await self.token_contracts[currency].functions.balanceOf(owner).call())

    async def send(self, private_key: str, fn: Any) -> Any:
        account = Account.from_key(private_key)
        tx = await fn.build_transaction(
            {
                "from": account.address,
                "nonce": await self.w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self.chain_id,
            }
        )
        signed = account.sign_transaction(tx)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return await self.w3.eth.wait_for_transaction_receipt(tx_hash)

    async def fund(
        self,
        escrow_row_id: str,
        expert: str,
        currency: str,
        amount: int,
        fee_bps: int,
        client_key: str = CLIENT_KEY,
        token: str | None = None,
    ) -> str:
        """What the client does from the marketplace's funding instructions: mint (test only), approve,
        fund, exactly as `evm_funding` spells them. `token` overrides the currency's token address."""
        from github_app.chains.addresses import evm_funding

        token_address = token or self.tokens[currency]
        contract = self.w3.eth.contract(address=token_address, abi=self.token_contracts[currency].abi)
        client = address(client_key)
        funding = evm_funding(
            escrow_row_id,
            contract=self.escrow_address,
            client=client,
            expert=expert,
            token=token_address,
            amount=amount,
            fee_bps=fee_bps,
        )
        await self.send(client_key, contract.functions.mint(client, amount))
        await self.send(client_key, contract.functions.approve(self.escrow_address, amount))
        escrow = self.w3.eth.contract(address=self.escrow_address, abi=self.chain().contract.abi)
        ref, expert_, token_, _, fee = funding.fund_args
        receipt = await self.send(client_key, escrow.functions.fund(ref, expert_, token_, amount, fee))
        assert receipt["status"] == 1
        return "0x" + bytes(receipt["transactionHash"]).hex()


async def give_gas(w3: AsyncWeb3, *private_keys: str) -> None:
    rich = (await w3.eth.accounts)[0]
    for k in private_keys:
        tx = await w3.eth.send_transaction({"from": rich, "to": address(k), "value": 10**19})
        await w3.eth.wait_for_transaction_receipt(tx)


async def deploy_env(w3: AsyncWeb3) -> EvmEnv:
    chain_id = int(await w3.eth.chain_id)
    await give_gas(w3, ARBITER_KEY, CLIENT_KEY, DEPLOYER_KEY)
    escrow_address = await deploy(w3, DEPLOYER_KEY, address(ARBITER_KEY), address(TREASURY_KEY), chain_id)
    env = EvmEnv(w3, chain_id, escrow_address, {})
    for currency, (kind, args) in {
        "USDC": ("TestToken", ["USD Coin", "USDC", 6]),
        "ETH": ("TestToken", ["Wrapped Ether", "WETH", 18]),
        "USDT": ("NoBoolToken", []),
    }.items():
        factory = w3.eth.contract(abi=TOKENS[kind]["abi"], bytecode=TOKENS[kind]["bytecode"])
        receipt = await env.send(DEPLOYER_KEY, factory.constructor(*args))
        env.tokens[currency] = receipt["contractAddress"]
        env.token_contracts[currency] = w3.eth.contract(address=receipt["contractAddress"], abi=TOKENS[kind]["abi"])
    return env


def in_process_web3() -> AsyncWeb3:
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    return AsyncWeb3(AsyncEthereumTesterProvider())
