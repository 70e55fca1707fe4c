"""LiteSVM (inside solders) with a USDC-like mint, a funded client and the app's authority: the real
SPL Token, Associated Token Account and Memo programs, in-process."""

from __future__ import annotations

from dataclasses import dataclass

from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import Transaction
from spl.token.constants import MINT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to_checked,
    transfer_checked,
)
from spl.token.models import InitializeMint2Params, MintToCheckedParams, TransferCheckedParams

from github_app.chains.solana import LiteSvmTransport, SolanaChain

DECIMALS = 6


@dataclass
class SolanaEnv:
    svm: LiteSVM
    authority: Keypair
    client: Keypair
    mint: Pubkey
    treasury: Pubkey

    def chain(self) -> SolanaChain:
        return SolanaChain(
            LiteSvmTransport(self.svm),
            self.authority,
            treasury=str(self.treasury),
            usdc_mint=str(self.mint),
            usdc_decimals=DECIMALS,
            cluster="devnet",
        )

    def send(self, payer: Keypair, instructions: list, signers: list[Keypair] | None = None) -> None:  # type: ignore[type-arg]
        blockhash = self.svm.latest_blockhash()
        tx = Transaction(
            signers or [payer], Message.new_with_blockhash(instructions, payer.pubkey(), blockhash), blockhash
        )
        result = self.svm.send_transaction(tx)
        assert "TransactionMetadata" == type(result).__name__, result

    def balance(self, owner: Pubkey) -> int:
        account = self.svm.get_account(get_associated_token_address(owner, self.mint))
        if account is None:
            return 0
        return int.from_bytes(bytes(account.data)[64:72], "little")

    def fund(self, escrow_account: Pubkey, amount: int) -> None:
        """The client mints (test only) and transfers into the escrow account, as the web page does."""
        client = self.client.pubkey()
        ata = get_associated_token_address(client, self.mint)
        self.send(
            self.client,
            [
                create_idempotent_associated_token_account(client, client, self.mint),
                mint_to_checked(
                    MintToCheckedParams(
                        program_id=TOKEN_PROGRAM_ID,
                        mint=self.mint,
                        dest=ata,
                        mint_authority=client,
                        amount=amount,
                        decimals=DECIMALS,
                    )
                ),
                transfer_checked(
                    TransferCheckedParams(
                        program_id=TOKEN_PROGRAM_ID,
                        source=ata,
                        mint=self.mint,
                        dest=escrow_account,
                        owner=client,
                        amount=amount,
                        decimals=DECIMALS,
                    )
                ),
            ],
        )


def solana_env() -> SolanaEnv:
    svm = LiteSVM()
    authority, client, mint = Keypair(), Keypair(), Keypair()
    for k in (authority, client):
        svm.airdrop(k.pubkey(), 100 * 10**9)
    env = SolanaEnv(svm, authority, client, mint.pubkey(), Keypair().pubkey())
    env.send(
        client,
        [
            create_account(
                CreateAccountParams(
                    from_pubkey=client.pubkey(),
                    to_pubkey=mint.pubkey(),
                    lamports=svm.minimum_balance_for_rent_exemption(MINT_LEN),
                    space=MINT_LEN,
                    owner=TOKEN_PROGRAM_ID,
                )
            ),
            initialize_mint2(
                InitializeMint2Params(
                    program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(), decimals=DECIMALS, mint_authority=client.pubkey()
                )
            ),
        ],
        [client, mint],
    )
    return env
