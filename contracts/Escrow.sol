// SPDX-License-Identifier: LicenseRef-Proprietary
pragma solidity ^0.8.20;

/// @title BMAD marketplace escrow
/// @notice One escrow per marketplace Escrow row and funder: `ref` = keccak256(utf8(Escrow.id)), stored under
/// escrowId = keccak256(abi.encode(funder, ref)), so a stranger who funds the same ref makes another escrow
/// and never blocks the client's. The client funds it with an ERC-20 (after approve); only the arbiter (the
/// marketplace's GitHub App) releases it to the expert, minus the platform fee to the treasury, or refunds it
/// to the client. Each escrow moves money once: status goes Funded -> Released or Funded -> Refunded and
/// never back, so a second release reverts. The contract counts what funded escrows hold per token; only
/// the excess over that (tokens sent outside `fund`) can be rescued by the arbiter.
contract Escrow {
    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_FUNDED = 1;
    uint8 public constant STATUS_RELEASED = 2;
    uint8 public constant STATUS_REFUNDED = 3;
    uint16 public constant MAX_FEE_BPS = 10000;

    struct Deposit {
        address client;
        address expert;
        address token;
        uint256 amount;
        uint16 feeBps;
        uint8 status;
    }

    address public immutable arbiter;
    address public immutable treasury;
    mapping(bytes32 => Deposit) public escrows;
    /// What the funded (not yet released or refunded) escrows hold, per token.
    mapping(address => uint256) public held;

    uint256 private _entered = 1;

    event Funded(
        bytes32 indexed escrowId,
        address indexed client,
        address indexed expert,
        bytes32 ref,
        address token,
        uint256 amount,
        uint16 feeBps
    );
    event Released(bytes32 indexed escrowId, address indexed expert, uint256 expertAmount, uint256 fee);
    event Refunded(bytes32 indexed escrowId, address indexed client, uint256 amount);
    event Rescued(address indexed token, address indexed to, uint256 amount);

    error NotArbiter();
    error EscrowExists();
    error NotFunded();
    error InvalidEscrow();
    error TransferFailed();
    error Reentrancy();
    error NothingToRescue();

    modifier nonReentrant() {
        if (_entered != 1) revert Reentrancy();
        _entered = 2;
        _;
        _entered = 1;
    }

    modifier onlyArbiter() {
        if (msg.sender != arbiter) revert NotArbiter();
        _;
    }

    constructor(address arbiter_, address treasury_) {
        if (arbiter_ == address(0) || treasury_ == address(0)) revert InvalidEscrow();
        arbiter = arbiter_;
        treasury = treasury_;
    }

    /// @notice The id under which `client`'s funding of `ref` is stored.
    function escrowIdOf(address client, bytes32 ref) public pure returns (bytes32) {
        return keccak256(abi.encode(client, ref));
    }

    function fund(bytes32 ref, address expert, address token, uint256 amount, uint16 feeBps)
        external
        nonReentrant
    {
        bytes32 escrowId = escrowIdOf(msg.sender, ref);
        if (escrows[escrowId].status != STATUS_NONE) revert EscrowExists();
        if (expert == address(0) || token.code.length == 0 || amount == 0 || feeBps > MAX_FEE_BPS) {
            revert InvalidEscrow();
        }
        escrows[escrowId] = Deposit(msg.sender, expert, token, amount, feeBps, STATUS_FUNDED);
        // The escrow holds exactly `amount`: a token that takes a fee on transfer cannot fund it.
        uint256 before = _balanceOf(token);
        _call(token, abi.encodeWithSelector(0x23b872dd, msg.sender, address(this), amount));
        if (_balanceOf(token) - before != amount) revert TransferFailed();
        held[token] += amount;
        emit Funded(escrowId, msg.sender, expert, ref, token, amount, feeBps);
    }

    function release(bytes32 escrowId) external onlyArbiter nonReentrant {
        Deposit storage d = escrows[escrowId];
        if (d.status != STATUS_FUNDED) revert NotFunded();
        d.status = STATUS_RELEASED;
        held[d.token] -= d.amount;
        uint256 fee = feeOf(d.amount, d.feeBps);
        uint256 expertAmount = d.amount - fee;
        if (fee != 0) _transfer(d.token, treasury, fee);
        if (expertAmount != 0) _transfer(d.token, d.expert, expertAmount);
        emit Released(escrowId, d.expert, expertAmount, fee);
    }

    function refund(bytes32 escrowId) external onlyArbiter nonReentrant {
        Deposit storage d = escrows[escrowId];
        if (d.status != STATUS_FUNDED) revert NotFunded();
        d.status = STATUS_REFUNDED;
        held[d.token] -= d.amount;
        _transfer(d.token, d.client, d.amount);
        emit Refunded(escrowId, d.client, d.amount);
    }

    /// @notice Send `to` what the contract holds of `token` beyond what funded escrows hold (tokens sent
    /// to it outside `fund`). Never touches an escrow's money.
    function rescue(address token, address to) external onlyArbiter nonReentrant returns (uint256 excess) {
        if (to == address(0) || token.code.length == 0) revert InvalidEscrow();
        excess = _balanceOf(token) - held[token];
        if (excess == 0) revert NothingToRescue();
        _transfer(token, to, excess);
        emit Rescued(token, to, excess);
    }

    function statusOf(bytes32 escrowId) external view returns (uint8) {
        return escrows[escrowId].status;
    }

    /// @notice amount * feeBps / 10000 rounded down, exact for every uint256 amount: with
    /// amount = q * 10000 + r, the product splits into q * feeBps (at most amount) and r * feeBps / 10000.
    function feeOf(uint256 amount, uint16 feeBps) public pure returns (uint256) {
        if (feeBps > MAX_FEE_BPS) revert InvalidEscrow();
        return (amount / MAX_FEE_BPS) * feeBps + ((amount % MAX_FEE_BPS) * feeBps) / MAX_FEE_BPS;
    }

    function _transfer(address token, address to, uint256 amount) private {
        _call(token, abi.encodeWithSelector(0xa9059cbb, to, amount));
    }

    /// Tokens such as USDT return nothing from transfer: accept no return data, or a true bool.
    function _call(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TransferFailed();
        }
    }

    function _balanceOf(address token) private view returns (uint256) {
        (bool ok, bytes memory ret) = token.staticcall(abi.encodeWithSelector(0x70a08231, address(this)));
        if (!ok || ret.length != 32) revert TransferFailed();
        return abi.decode(ret, (uint256));
    }
}
