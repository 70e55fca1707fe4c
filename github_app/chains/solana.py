"""The Solana adapter: one escrow token account per escrow, owned by the app's authority, at
`create_with_seed(authority, <Escrow.id without dashes>, owner program)`. The release is ONE atomic
transaction (memo, the recipients' associated token accounts created if missing, TransferChecked to the
expert and to the treasury, the escrow account closed), so a second release finds no account and fails
on-chain. Transactions are built with solders/solana-py and sent through a transport: solana-py's
AsyncClient in production, LiteSVM in-process in tests.

A refund is the same kind of transaction (memo `escrow-refund:<id>`, everything back to the client's
wallet, the account closed).

SOL escrows use a System-owned seeded account the same way (`transfer_with_seed`). The app does not
create it: the client's transfer does, so every lamport in it is theirs (no rent of ours to tell apart),
whether they pay before or after the first sync. An emptied SOL account can be refilled by anyone, so
there the database status is the guard against a second release.

An account may hold more than the escrow's amount (a second transfer, anyone's dust): the release pays
the expert and the treasury the row's split and returns the rest to the client in the same transaction.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    ID as SYSTEM_PROGRAM_ID,
)
from solders.system_program import (
    CreateAccountWithSeedParams,
    TransferWithSeedParams,
    create_account_with_seed,
    transfer_with_seed,
)
from solders.transaction import Transaction
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.memo.instructions import create_memo
from spl.memo.models import MemoParams
from spl.token.constants import ACCOUNT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_account3,
)
from spl.token.models import CloseAccountParams, InitializeAccount3Params, TransferCheckedParams

from github_app.chains.addresses import SOLANA, solana_escrow_seed
from github_app.chains.errors import TxRejected
from github_app.chains.evm import SignedTx, TxOutcome
from github_app.domain.escrow import ONCHAIN_FUNDED, ONCHAIN_NONE, OnChainEscrow, fee_split

USDC_SPL = "USDC-SPL"
SOL = "SOL"
# Blocks a blockhash stays valid for (the cluster's MAX_PROCESSING_AGE plus margin).
BLOCKHASH_VALIDITY = 150


@dataclass(frozen=True)
class AccountInfo:
    owner: Pubkey
    lamports: int
    data: bytes
    executable: bool = False


@dataclass(frozen=True)
class SignatureStatus:
    """What the node knows of a signature: `final` once it is at the configured commitment (success
    and failure alike: a failure seen only at `processed` may still be rolled back with its fork)."""

    err: str | None
    final: bool


class Transport(Protocol):
    async def get_account(self, address: Pubkey) -> AccountInfo | None: ...
    async def latest_blockhash(self) -> tuple[Hash, int]: ...
    async def block_height(self) -> int: ...
    async def send(self, tx: Transaction) -> None: ...  # raises TxRejected when preflight refuses it
    async def status(self, signature: Signature) -> SignatureStatus | None: ...  # None: not seen
    async def rent_exempt(self, size: int) -> int: ...


def _token_amount(info: AccountInfo | None) -> int:
    if info is None or info.owner != TOKEN_PROGRAM_ID or len(info.data) < 72:
        return 0
    return int(struct.unpack_from("<Q", info.data, 64)[0])


class SolanaChain:
    chain = SOLANA
    confirmations = 1  # the transport's commitment decides when a status counts

    def __init__(
        self,
        transport: Transport,
        authority: Keypair,
        *,
        treasury: str,
        usdc_mint: str,
        usdc_decimals: int = 6,
        explorer_url: str = "https://explorer.solana.com",
        cluster: str | None = None,
    ) -> None:
        self.transport = transport
        self.authority = authority
        self.treasury = Pubkey.from_string(treasury)
        self.usdc_mint = Pubkey.from_string(usdc_mint)
        self.usdc_decimals = usdc_decimals
        self.explorer_url = explorer_url.rstrip("/")
        self.cluster = cluster

    @property
    def signer(self) -> str:
        return str(self.authority.pubkey())

    async def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            await close()

    def tx_url(self, tx_hash: str) -> str:
        suffix = f"?cluster={self.cluster}" if self.cluster else ""
        return f"{self.explorer_url}/tx/{tx_hash}{suffix}"

    def token_for(self, currency: str) -> str | None:
        if currency.upper() == USDC_SPL:
            return str(self.usdc_mint)
        return SOL if currency.upper() == SOL else None

    @staticmethod
    def owner_program(currency: str) -> Pubkey:
        return SYSTEM_PROGRAM_ID if currency.upper() == SOL else TOKEN_PROGRAM_ID

    def escrow_account(self, escrow_row_id: str, currency: str = USDC_SPL) -> Pubkey:
        return Pubkey.create_with_seed(
            self.authority.pubkey(), solana_escrow_seed(escrow_row_id), self.owner_program(currency)
        )

    def address_of(self, escrow_row_id: str, currency: str = USDC_SPL) -> str:
        return str(self.escrow_account(escrow_row_id, currency))

    async def ensure_account(self, escrow_row_id: str, currency: str = USDC_SPL) -> bool:
        """Create the escrow's token account (the client then transfers into it); True if created now.
        A SOL escrow's account is never created here: the client's transfer creates it, so it holds
        their lamports only."""
        if currency.upper() == SOL:
            return False
        account = self.escrow_account(escrow_row_id, currency)
        if await self.transport.get_account(account) is not None:
            return False
        authority = self.authority.pubkey()
        create = create_account_with_seed(
            CreateAccountWithSeedParams(
                from_pubkey=authority,
                to_pubkey=account,
                base=authority,
                seed=solana_escrow_seed(escrow_row_id),
                lamports=await self.transport.rent_exempt(ACCOUNT_LEN),
                space=ACCOUNT_LEN,
                owner=TOKEN_PROGRAM_ID,
            )
        )
        init = initialize_account3(
            InitializeAccount3Params(program_id=TOKEN_PROGRAM_ID, account=account, mint=self.usdc_mint, owner=authority)
        )
        blockhash, _ = await self.transport.latest_blockhash()
        await self.transport.send(self._transaction([create, init], blockhash))
        return True

    async def read(self, escrow_row_id: str, currency: str = USDC_SPL) -> OnChainEscrow:
        info = await self.transport.get_account(self.escrow_account(escrow_row_id, currency))
        if currency.upper() == SOL:
            if info is None or info.owner != SYSTEM_PROGRAM_ID:
                return OnChainEscrow(status=ONCHAIN_NONE, custodial=True)
            # Everything in it is the client's: the app put no rent in it.
            status = ONCHAIN_FUNDED if info.lamports > 0 else ONCHAIN_NONE
            return OnChainEscrow(status=status, token=SOL, amount=info.lamports, custodial=True)
        if info is None or info.owner != TOKEN_PROGRAM_ID or len(info.data) < 72:
            return OnChainEscrow(status=ONCHAIN_NONE, custodial=True)
        mint = Pubkey.from_bytes(info.data[0:32])
        (amount,) = struct.unpack_from("<Q", info.data, 64)
        if amount == 0:
            return OnChainEscrow(status=ONCHAIN_NONE, token=str(mint), custodial=True)
        return OnChainEscrow(status=ONCHAIN_FUNDED, token=str(mint), amount=amount, custodial=True)

    async def build_release(
        self,
        escrow_row_id: str,
        expert: str,
        amount: int,
        fee_bps: int,
        currency: str = USDC_SPL,
        *,
        client: str | None = None,
    ) -> SignedTx:
        """The row's `amount` split between the expert and the treasury; whatever else the account
        holds when this is built goes back to `client` in the same transaction (refused when there is
        some and no client to return it to)."""
        expert_amount, fee = fee_split(amount, fee_bps)
        payouts = ((Pubkey.from_string(expert), expert_amount), (self.treasury, fee))
        rest_to = Pubkey.from_string(client) if client else None
        return await self._build_payout(f"escrow-release:{escrow_row_id}", escrow_row_id, payouts, rest_to, currency)

    async def build_refund(self, escrow_row_id: str, client: str, amount: int, currency: str = USDC_SPL) -> SignedTx:
        """Everything the account holds back to the client, in one transaction that closes it."""
        return await self._build_payout(
            f"escrow-refund:{escrow_row_id}", escrow_row_id, (), Pubkey.from_string(client), currency
        )

    async def _build_payout(
        self,
        memo: str,
        escrow_row_id: str,
        payouts: tuple[tuple[Pubkey, int], ...],
        rest_to: Pubkey | None,
        currency: str,
    ) -> SignedTx:
        """One atomic transaction: the memo, a transfer to each recipient, what remains to `rest_to`,
        the escrow account emptied and closed (a token account's rent back to the authority that paid
        it). The remainder is read now, so the transaction empties the account exactly; should more
        arrive before it lands, it fails on-chain and moves nothing."""
        authority = self.authority.pubkey()
        account = self.escrow_account(escrow_row_id, currency)
        info = await self.transport.get_account(account)
        held = (info.lamports if info else 0) if currency.upper() == SOL else _token_amount(info)
        # Holding less than the payouts (emptied since it was read): the transaction is built anyway and
        # the chain refuses it; the release's own checks say why.
        rest = held - sum(share for _, share in payouts)
        if rest > 0 and payouts and currency.upper() == SOL and rest_to is not None:
            # Lamports an empty wallet could not hold (less than its rent) would make the whole release
            # fail: such dust (anyone can send it) goes to the treasury instead of blocking the payment.
            if await self.transport.get_account(rest_to) is None and rest < await self.transport.rent_exempt(0):
                rest_to = self.treasury
        if rest > 0:
            if rest_to is None:
                raise ValueError(f"the escrow account holds {rest} more than the amount: no client to return it to")
            payouts = (*payouts, (rest_to, rest))
        instructions: list[Instruction] = [
            create_memo(MemoParams(program_id=MEMO_PROGRAM_ID, signer=authority, message=memo.encode()))
        ]
        if currency.upper() == SOL:
            # Everything leaves the account: it ceases to exist.
            seed = solana_escrow_seed(escrow_row_id)
            for to, lamports in payouts:
                if lamports > 0:
                    instructions.append(
                        transfer_with_seed(
                            TransferWithSeedParams(
                                from_pubkey=account,
                                from_base=authority,
                                from_seed=seed,
                                from_owner=SYSTEM_PROGRAM_ID,
                                to_pubkey=to,
                                lamports=lamports,
                            )
                        )
                    )
        else:
            for owner, share in payouts:
                if share == 0:
                    continue
                instructions.append(create_idempotent_associated_token_account(authority, owner, self.usdc_mint))
                instructions.append(
                    _transfer_checked(
                        account,
                        self.usdc_mint,
                        get_associated_token_address(owner, self.usdc_mint),
                        authority,
                        share,
                        self.usdc_decimals,
                    )
                )
            instructions.append(_close(account, authority, authority))
        blockhash, last_valid = await self.transport.latest_blockhash()
        tx = self._transaction(instructions, blockhash)
        return SignedTx(
            tx_hash=str(tx.signatures[0]),
            raw=bytes(tx),
            signer=self.signer,
            recent_blockhash=str(blockhash),
            last_valid_block_height=last_valid,
        )

    def _transaction(self, instructions: list[Instruction], blockhash: Hash) -> Transaction:
        message = Message.new_with_blockhash(instructions, self.authority.pubkey(), blockhash)
        return Transaction([self.authority], message, blockhash)

    async def broadcast(self, tx: SignedTx) -> None:
        """Send the recorded bytes. TxRejected when the node's preflight refuses them (never on the
        chain: the caller ends the attempt with the node's error instead of waiting for it to expire)."""
        if await self.transport.status(Signature.from_string(tx.tx_hash)) is not None:
            return  # already processed: sending it again would only be refused as a duplicate
        try:
            await self.transport.send(Transaction.from_bytes(tx.raw))
        except TxRejected:
            raise
        except Exception:
            if (
                tx.last_valid_block_height is not None
                and await self.transport.block_height() > tx.last_valid_block_height
            ):
                return  # its blockhash expired unsent: outcome() reports that it can never land
            raise

    async def outcome(self, tx: SignedTx) -> TxOutcome:
        # The height first: a transaction that lands between the two reads is then seen by the second,
        # never called expired.
        height = await self.transport.block_height()
        status = await self.transport.status(Signature.from_string(tx.tx_hash))
        if status is not None:
            if not status.final:
                return TxOutcome(landed=False)  # seen, not at the configured commitment yet
            return TxOutcome(landed=True, succeeded=status.err is None, confirmations=1)
        if tx.last_valid_block_height is not None and height > tx.last_valid_block_height:
            # Its blockhash expired and the chain never saw it: it can never land.
            return TxOutcome(landed=False, never_lands=True)
        return TxOutcome(landed=False)

    async def find_transaction(self, kind: str, escrow_row_id: str) -> str | None:
        return None  # the custodial account keeps no history the app relies on: the recorded signature is it


def _transfer_checked(
    source: Pubkey, mint: Pubkey, dest: Pubkey, owner: Pubkey, amount: int, decimals: int
) -> Instruction:
    from spl.token.instructions import transfer_checked

    return transfer_checked(
        TransferCheckedParams(
            program_id=TOKEN_PROGRAM_ID,
            source=source,
            mint=mint,
            dest=dest,
            owner=owner,
            amount=amount,
            decimals=decimals,
        )
    )


def _close(account: Pubkey, dest: Pubkey, owner: Pubkey) -> Instruction:
    from spl.token.instructions import close_account

    return close_account(CloseAccountParams(program_id=TOKEN_PROGRAM_ID, account=account, dest=dest, owner=owner))


class LiteSvmTransport:
    """LiteSVM in-process: the tests' and the benchmark's Solana."""

    def __init__(self, svm: Any) -> None:
        self.svm = svm

    async def get_account(self, address: Pubkey) -> AccountInfo | None:
        account = self.svm.get_account(address)
        if account is None or account.lamports == 0:
            return None
        return AccountInfo(account.owner, account.lamports, bytes(account.data), bool(account.executable))

    async def latest_blockhash(self) -> tuple[Hash, int]:
        return self.svm.latest_blockhash(), await self.block_height() + BLOCKHASH_VALIDITY

    async def block_height(self) -> int:
        return int(self.svm.get_clock().slot)

    async def send(self, tx: Transaction) -> None:
        """As a node with preflight: a transaction whose simulation fails is refused, not sent."""
        from solders.transaction_metadata import FailedTransactionMetadata

        if self.svm.get_transaction(tx.signatures[0]) is not None:
            return  # already processed
        simulated = self.svm.simulate_transaction(tx)
        if isinstance(simulated, FailedTransactionMetadata):
            if "BlockhashNotFound" in str(simulated.err()):
                raise RuntimeError("Blockhash not found")  # not a verdict on the transaction
            raise TxRejected(f"Transaction simulation failed: {simulated.err()}")
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata) and "AlreadyProcessed" not in str(result.err()):
            raise TxRejected(f"transaction failed: {result.err()}")

    async def status(self, signature: Signature) -> SignatureStatus | None:
        from solders.transaction_metadata import FailedTransactionMetadata

        found = self.svm.get_transaction(signature)
        if found is None:
            return None
        err = str(found.err()) if isinstance(found, FailedTransactionMetadata) else None
        return SignatureStatus(err=err, final=True)  # in-process: what is processed is final

    async def rent_exempt(self, size: int) -> int:
        return int(self.svm.minimum_balance_for_rent_exemption(size))


class RpcTransport:
    """A Solana JSON-RPC node through solana-py's AsyncClient (production)."""

    def __init__(self, url: str, commitment: str = "finalized") -> None:
        from solana.rpc.async_api import AsyncClient
        from solana.rpc.commitment import Commitment

        self.commitment = Commitment(commitment)
        self.client = AsyncClient(url, commitment=self.commitment, timeout=30)

    async def get_account(self, address: Pubkey) -> AccountInfo | None:
        value = (await self.client.get_account_info(address, commitment=self.commitment)).value
        if value is None or value.lamports == 0:
            return None
        return AccountInfo(value.owner, value.lamports, bytes(value.data), bool(value.executable))

    async def latest_blockhash(self) -> tuple[Hash, int]:
        value = (await self.client.get_latest_blockhash(commitment=self.commitment)).value
        return value.blockhash, int(value.last_valid_block_height)

    async def block_height(self) -> int:
        return int((await self.client.get_block_height(commitment=self.commitment)).value)

    async def send(self, tx: Transaction) -> None:
        from solana.rpc.core import RPCException
        from solana.rpc.models import TxOpts

        try:
            await self.client.send_raw_transaction(
                bytes(tx), opts=TxOpts(skip_preflight=False, preflight_commitment=self.commitment)
            )
        except RPCException as exc:
            message = _rpc_error_message(exc)
            if "already been processed" in message or "AlreadyProcessed" in message:
                return
            if "Blockhash not found" in message or "BlockhashNotFound" in message:
                raise  # this node has not seen our blockhash yet: try again, it is not a verdict
            if "simulation failed" in message or "preflight" in message.lower():
                raise TxRejected(message) from None
            raise

    async def status(self, signature: Signature) -> SignatureStatus | None:
        from solders.transaction_status import TransactionConfirmationStatus

        [found] = (await self.client.get_signature_statuses([signature], search_transaction_history=True)).value
        if found is None:
            return None
        wanted = (
            (TransactionConfirmationStatus.Finalized,)
            if str(self.commitment) == "finalized"
            else (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)
        )
        err = None if found.err is None else str(found.err)
        return SignatureStatus(err=err, final=found.confirmation_status in wanted)

    async def rent_exempt(self, size: int) -> int:
        return int((await self.client.get_minimum_balance_for_rent_exemption(size)).value)

    async def close(self) -> None:
        await self.client.close()


def _rpc_error_message(exc: Exception) -> str:
    """The node's own words from solana-py's RPCException (it wraps the parsed error object)."""
    arg = exc.args[0] if exc.args else exc
    message = getattr(arg, "message", None)
    data = getattr(arg, "data", None)
    err = getattr(data, "err", None)
    text = str(message) if message is not None else str(arg)
    return f"{text} ({err})" if err is not None and str(err) not in text else text


def from_settings(settings: Any) -> SolanaChain:
    """The chain with the authority's key: only the process that releases builds it (see chains.keys)."""
    from github_app.chains.keys import solana_authority_secret

    secret = solana_authority_secret(settings)
    return SolanaChain(
        RpcTransport(settings.solana_rpc_url, settings.solana_commitment),
        Keypair.from_bytes(secret),
        treasury=settings.solana_treasury,
        usdc_mint=settings.solana_usdc_mint,
        explorer_url=settings.solana_explorer_url,
    )
