"""Local EVM chains for tests and `--devnet`: real anvil nodes, seeded with real contracts.

Ethereum and BASE are both anvil (npm `@foundry-rs/anvil-linux-amd64`, installed under `.tools/`),
started with the real chain ids 1 and 8453. `seed_chain` deploys the ERC-20 / ERC-721 contracts
compiled from `devnet/contracts/*.sol` (the committed JSON artifacts, so no compiler is needed),
moves ETH, tokens and NFTs between a few deterministic wallets, and on chain 1 sets up ENS so that
`w3.ens.name(addr)` works end to end, forward check included. It also puts Multicall3 at its
canonical address, as every real chain has it, so sync workers batch reads as in production. The rest
is ordinary transactions, so a sync worker sees real blocks, receipts and Transfer logs; the
`ChainSeed` it returns says what was put there so tests can compare a database with the chain.

The helpers at the bottom (`send_eth`, `transfer_token`, `transfer_nft`, `mint_*`, `mine_blocks`)
make new activity between a worker's cycles. Senders need no keys: nodes from `start_anvil` run with
`--auto-impersonate`.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Self

from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import Wei

from manager.process import die_with_parent as parent_death_hook

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(__file__).resolve().parent / "contracts" / "artifacts"
ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
TOOLS_ANVIL = REPO_ROOT / ".tools" / "node_modules" / ANVIL_PACKAGE / "bin" / "anvil"

ETHEREUM_CHAIN_ID = 1
BASE_CHAIN_ID = 8453

# Where web3.py (ens.constants) looks for the ENS registry and the UniversalResolver on mainnet.
ENS_REGISTRY_ADDR = Web3.to_checksum_address("0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e")
UNIVERSAL_RESOLVER_ADDR = Web3.to_checksum_address("0xeEeEEEeE14D718C2B47D9923Deab1335E144EeEe")
# Multicall3's canonical address, the same on Ethereum, BASE and most EVM chains.
MULTICALL3_ADDR = Web3.to_checksum_address("0xcA11bde05977b3631167028862bE2a173976CA11")

_LISTENING_RE = re.compile(r"Listening on ([\d.]+):(\d+)")


class AnvilError(RuntimeError):
    """anvil is missing, did not start, or a devnet transaction failed."""


# ---------------------------------------------------------------------------------------------------
# Finding and running anvil.
# ---------------------------------------------------------------------------------------------------


def anvil_path() -> Path:
    """The anvil binary: `$ANVIL_BIN`, else the repo's `.tools/` npm install, else `anvil` on PATH."""
    override = os.environ.get("ANVIL_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise AnvilError(f"ANVIL_BIN={override} is not an executable file")
        return path
    if TOOLS_ANVIL.is_file():
        return TOOLS_ANVIL
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise AnvilError(
        f"anvil not found (looked at $ANVIL_BIN, {TOOLS_ANVIL} and PATH). "
        "Run `make tools` (`make test` and `make devnet` do it too) to install it from npm into .tools/."
    )


@dataclass
class AnvilNode:
    """A running anvil process. Stop it with `stop()` or use it as a context manager."""

    chain_id: int
    host: str
    port: int
    process: subprocess.Popen[str]
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))
    reader: threading.Thread | None = None
    _w3: Web3 | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """Also the process group id: anvil runs in its own session."""
        return self.process.pid

    def web3(self) -> Web3:
        """A Web3 client for this node (one per node, reused)."""
        if self._w3 is None:
            # web3's validation middleware asks eth_chainId before every transaction; a node's chain id
            # never changes, so caching it halves the round trips of a seeding run.
            provider = Web3.HTTPProvider(
                self.url,
                request_kwargs={"timeout": 30},
                cache_allowed_requests=True,
                cacheable_requests={"eth_chainId"},
            )
            self._w3 = Web3(provider)
        return self._w3

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A raw JSON-RPC call (for anvil_* / evm_* methods web3 has no wrapper for)."""
        return rpc(self.web3(), method, params or [])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)  # it ends at EOF, i.e. as soon as anvil has exited
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._w3 = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(
    chain_id: int,
    *,
    block_time: float | None = None,
    extra_args: list[str] | tuple[str, ...] = (),
    timeout: float = 10.0,
    die_with_parent: bool = True,
) -> AnvilNode:
    """Start anvil on 127.0.0.1 with a free port and `chain_id`, and wait until it listens.

    `--port 0` lets the kernel pick the port and anvil prints it, which avoids the race of picking a
    free port in Python first. Without `block_time` anvil mines one block per transaction (what tests
    want); with it, blocks also come on a timer, as on a live chain. `die_with_parent` ties anvil's
    life to the *calling thread* (Linux parent-death signal): start it from a long-lived thread.
    """
    # --auto-impersonate: any address may send eth_sendTransaction without its key, so the seeder
    # and the helpers below can act for any wallet (a worker reading the chain cannot tell).
    args = [str(anvil_path()), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id), "--auto-impersonate"]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    args += list(extra_args)
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C in a terminal goes to the owner, which stops anvil in order
        preexec_fn=parent_death_hook(os.getpid(), signal.SIGKILL) if die_with_parent else None,
    )
    output: collections.deque[str] = collections.deque(maxlen=200)
    listening = threading.Event()
    found: list[tuple[str, int]] = []

    def drain() -> None:
        # anvil logs every RPC method it serves; keep reading or its stdout pipe fills and it blocks.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if not found:
                match = _LISTENING_RE.search(line)
                if match:
                    found.append((match.group(1), int(match.group(2))))
                    listening.set()
        listening.set()  # EOF: anvil exited

    reader = threading.Thread(target=drain, name=f"anvil-{chain_id}-stdout", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    listening.wait(timeout)
    if not found:
        if process.poll() is None:
            process.kill()
        process.wait()
        tail = "\n".join(list(output)[-20:])
        waited = "exited" if time.monotonic() < deadline else f"did not listen within {timeout} s"
        raise AnvilError(f"anvil (chain {chain_id}) {waited}; last output:\n{tail}")
    host, port = found[0]
    return AnvilNode(chain_id=chain_id, host=host, port=port, process=process, output=output, reader=reader)


# ---------------------------------------------------------------------------------------------------
# Contracts and small chain primitives.
# ---------------------------------------------------------------------------------------------------


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """ABI and bytecode of one compiled contract (`DevToken`, `DevNft`, `DevEnsRegistry`, ...)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise AnvilError(f"no compiled artifact {path}; see devnet/contracts/compile.py")
    return json.loads(path.read_text())


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract object for a deployed devnet contract."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"])


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """A raw JSON-RPC call; raises AnvilError on a JSON-RPC error."""
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if response.get("error"):
        raise AnvilError(f"{method} failed: {response['error']}")
    return response.get("result")


def _send(w3: Web3, tx_hash: HexBytes) -> str:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.02)
    if receipt["status"] != 1:
        raise AnvilError(f"transaction {receipt['transactionHash'].to_0x_hex()} reverted")
    return receipt["transactionHash"].to_0x_hex()


def deploy(w3: Web3, name: str, *args: Any, sender: str) -> Contract:
    """Deploy a devnet contract from `sender` and return it."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.02)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise AnvilError(f"deploying {name} failed")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def namehash(name: str) -> bytes:
    """ENS namehash (EIP-137) of an already normalised (lowercase ASCII) name."""
    node = b"\x00" * 32
    if name:
        for label in reversed(name.split(".")):
            node = Web3.keccak(node + Web3.keccak(text=label))
    return node


# ---------------------------------------------------------------------------------------------------
# What was seeded.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wallet:
    """A seeded account. `tracked` wallets are the ones a worker is configured to follow."""

    label: str
    address: str  # checksum
    private_key: str = field(repr=False)  # 0x-hex, deterministic: for code that wants to sign itself
    tracked: bool


@dataclass(frozen=True)
class SeededToken:
    """An ERC-20 deployed on the devnet, with the balances left after seeding (base units)."""

    address: str
    name: str
    symbol: str
    decimals: int
    balances: dict[str, int]


@dataclass(frozen=True)
class SeededNft:
    """One ERC-721 token and its owner after seeding."""

    token_id: int
    owner: str
    uri: str


@dataclass(frozen=True)
class NftCollection:
    address: str
    name: str
    symbol: str
    tokens: tuple[SeededNft, ...]

    def owned_by(self, owner: str) -> list[SeededNft]:
        return [t for t in self.tokens if t.owner == owner]


@dataclass(frozen=True)
class EnsSetup:
    """ENS on the Ethereum devnet. `names` verify both ways; `spoofed` reverse records claim a name
    that resolves elsewhere, so `w3.ens.name` must return None for them; `forward_only` names
    resolve to an address that set no reverse record."""

    registry: str
    resolver: str
    reverse_registrar: str
    universal_resolver: str
    names: dict[str, str]  # address -> name
    spoofed: dict[str, str]  # address -> claimed name
    forward_only: dict[str, str]  # name -> address


@dataclass(frozen=True)
class ChainSeed:
    """Everything `seed_chain` put on one chain, as it stands right after seeding."""

    chain_id: int
    url: str
    deployer: str
    wallets: tuple[Wallet, ...]
    eth_balances: dict[str, int]  # wei, for every wallet
    tokens: tuple[SeededToken, ...]
    nft: NftCollection
    ens: EnsSetup | None
    tx_hashes: tuple[str, ...]  # every seeding transaction, in order
    first_block: int
    last_block: int

    @property
    def tracked(self) -> list[Wallet]:
        return [w for w in self.wallets if w.tracked]

    def wallet(self, label: str) -> Wallet:
        return next(w for w in self.wallets if w.label == label)

    def token(self, symbol: str) -> SeededToken:
        return next(t for t in self.tokens if t.symbol == symbol)


# ---------------------------------------------------------------------------------------------------
# Seeding.
# ---------------------------------------------------------------------------------------------------

# (label, tracked). The same wallets exist on every chain, as the same EOA does on L1 and L2.
WALLET_LABELS: tuple[tuple[str, bool], ...] = (
    ("alice", True),
    ("bob", True),
    ("carol", True),
    ("dave", False),  # a counterparty nobody tracks: transfers to and from it must still be seen
)
TOKEN_SPECS: tuple[tuple[str, str, int], ...] = (
    ("Devnet USD", "DUSD", 6),
    ("Devnet Governance", "DGOV", 18),
)
NFT_NAME, NFT_SYMBOL = "Devnet Punks", "DPUNK"
NFT_URI = "ipfs://bafydevnetpunks/{id}.json"


def devnet_wallets() -> tuple[Wallet, ...]:
    """The seeded wallets: fixed private keys (keccak of a label) so addresses never change."""
    wallets = []
    for label, tracked in WALLET_LABELS:
        key = Web3.keccak(text=f"worker-manager devnet wallet {label}")
        account = Account.from_key(key)
        wallets.append(Wallet(label, account.address, key.to_0x_hex(), tracked))
    return tuple(wallets)


def seed_chain(node: AnvilNode, *, with_ens: bool | None = None) -> ChainSeed:
    """Deploy the devnet contracts on `node` and create a small, deterministic history.

    ENS goes only on chain 1 unless `with_ens` says otherwise: mainnet is where web3.py's ENS lives.
    The deployer differs per chain (anvil account 0 on Ethereum, 1 elsewhere) so the same contract
    has a different address on each chain, and a row filed under the wrong chain shows up.
    """
    w3 = node.web3()
    chain_id = w3.eth.chain_id
    deployer = w3.eth.accounts[0 if chain_id == ETHEREUM_CHAIN_ID else 1]
    first_block = w3.eth.block_number
    wallets = devnet_wallets()
    alice, bob, carol, dave = (w.address for w in wallets)
    txs: list[str] = []
    eth = Web3.to_wei

    # ETH: fund from the deployer, then a few wallet-to-wallet payments.
    for address, amount in (
        (alice, eth(5, "ether")),
        (bob, eth(2.5, "ether")),
        (carol, eth(0.75, "ether")),
        (dave, eth(1, "ether")),
    ):
        txs.append(send_eth(w3, deployer, address, amount))
    txs.append(send_eth(w3, alice, bob, eth(0.1, "ether")))
    txs.append(send_eth(w3, bob, dave, eth(0.05, "ether")))

    # ERC-20s: mint, then transfers in every direction (tracked <-> tracked, tracked <-> untracked).
    token_contracts = [
        deploy(w3, "DevToken", name, symbol, decimals, sender=deployer) for name, symbol, decimals in TOKEN_SPECS
    ]
    dusd, dgov = (c.address for c in token_contracts)
    usd, gov = 10**6, 10**18
    for token, to, units in (
        (dusd, alice, 1_250 * usd + 500_000),
        (dusd, bob, 300 * usd),
        (dusd, dave, 10_000 * usd),
        (dgov, alice, 42 * gov + gov // 2),
        (dgov, carol, 7 * gov),
    ):
        txs.append(mint_tokens(w3, token, to, units))
    for token, sender, to, units in (
        (dusd, alice, bob, 100 * usd + 250_000),
        (dusd, dave, carol, 55 * usd),
        (dgov, carol, dave, 1 * gov),
    ):
        txs.append(transfer_token(w3, token, sender, to, units))

    # ERC-721: tokens for each wallet, then one moves between tracked wallets.
    nft = deploy(w3, "DevNft", NFT_NAME, NFT_SYMBOL, sender=deployer)
    for token_id, owner in ((1, alice), (2, alice), (3, alice), (4, bob), (5, dave), (7, carol)):
        txs.append(mint_nft(w3, nft.address, owner, token_id, NFT_URI.format(id=token_id)))
    txs.append(transfer_nft(w3, nft.address, alice, bob, 3))

    install_multicall3(w3)

    ens: EnsSetup | None = None
    if with_ens if with_ens is not None else chain_id == ETHEREUM_CHAIN_ID:
        ens = _seed_ens(w3, deployer, wallets, txs)

    return ChainSeed(
        chain_id=chain_id,
        url=node.url,
        deployer=deployer,
        wallets=wallets,
        eth_balances={w.address: w3.eth.get_balance(Web3.to_checksum_address(w.address)) for w in wallets},
        tokens=tuple(
            SeededToken(
                c.address, name, symbol, decimals, {w.address: c.functions.balanceOf(w.address).call() for w in wallets}
            )
            for c, (name, symbol, decimals) in zip(token_contracts, TOKEN_SPECS, strict=True)
        ),
        nft=NftCollection(
            nft.address,
            NFT_NAME,
            NFT_SYMBOL,
            tuple(
                SeededNft(i, nft.functions.ownerOf(i).call(), nft.functions.tokenURI(i).call())
                for i in (1, 2, 3, 4, 5, 7)
            ),
        ),
        ens=ens,
        tx_hashes=tuple(txs),
        first_block=first_block,
        last_block=w3.eth.block_number,
    )


def install_multicall3(w3: Web3) -> str:
    """Put Multicall3 (the read side, `devnet/contracts/DevMulticall3.sol`) at its canonical address,
    as every real chain the workers sync has it there; returns the address. No transaction, no block."""
    rpc(w3, "anvil_setCode", [MULTICALL3_ADDR, load_artifact("DevMulticall3")["deployedBytecode"]])
    return MULTICALL3_ADDR


def _seed_ens(w3: Web3, deployer: str, wallets: tuple[Wallet, ...], txs: list[str]) -> EnsSetup:
    """ENS as mainnet has it, in miniature: the registry at the mainnet registry address, a public
    resolver, a reverse registrar owning addr.reverse, and the UniversalResolver web3.py reads through.

    Contract code is copied into the fixed addresses with anvil_setCode. The registry's constructor
    never runs there, so the root node's owner is written straight into its storage.
    """
    alice, bob, carol, dave = (w.address for w in wallets)
    rpc(w3, "anvil_setCode", [ENS_REGISTRY_ADDR, load_artifact("DevEnsRegistry")["deployedBytecode"]])
    root_owner_slot = Web3.keccak(b"\x00" * 32 + (0).to_bytes(32, "big"))  # _owners[0x0], mapping at slot 0
    rpc(
        w3,
        "anvil_setStorageAt",
        [
            ENS_REGISTRY_ADDR,
            root_owner_slot.to_0x_hex(),
            "0x" + bytes.fromhex(deployer[2:]).rjust(32, b"\x00").hex(),
        ],
    )
    registry = contract_at(w3, "DevEnsRegistry", ENS_REGISTRY_ADDR)
    resolver = deploy(w3, "DevPublicResolver", registry.address, sender=deployer)
    reverse = deploy(w3, "DevReverseRegistrar", registry.address, resolver.address, sender=deployer)

    def call(fn: Any, sender: str) -> None:
        txs.append(_send(w3, fn.transact({"from": sender})))

    call(registry.functions.setSubnodeOwner(b"\x00" * 32, Web3.keccak(text="reverse"), deployer), deployer)
    call(registry.functions.setSubnodeOwner(namehash("reverse"), Web3.keccak(text="addr"), reverse.address), deployer)
    call(registry.functions.setSubnodeOwner(b"\x00" * 32, Web3.keccak(text="eth"), deployer), deployer)

    def register(label: str, owner: str) -> str:
        name = f"{label}.eth"
        node = namehash(name)
        call(registry.functions.setSubnodeOwner(namehash("eth"), Web3.keccak(text=label), owner), deployer)
        call(registry.functions.setResolver(node, resolver.address), owner)
        call(resolver.functions.setAddr(node, owner), owner)
        return name

    names = {alice: register("alice", alice), bob: register("bob", bob)}
    for address, name in names.items():
        call(reverse.functions.setName(name), address)
    forward_only = {register("dave", dave): dave}  # dave owns dave.eth but set no reverse record
    spoofed = {carol: names[alice]}  # carol claims alice.eth; it resolves to alice, so it must not count
    call(reverse.functions.setName(names[alice]), carol)

    universal = deploy(w3, "DevUniversalResolver", registry.address, sender=deployer)
    # The registry address is immutable, i.e. inside the runtime code, so copying the code suffices.
    rpc(w3, "anvil_setCode", [UNIVERSAL_RESOLVER_ADDR, w3.eth.get_code(universal.address).to_0x_hex()])
    return EnsSetup(
        registry=registry.address,
        resolver=resolver.address,
        reverse_registrar=reverse.address,
        universal_resolver=UNIVERSAL_RESOLVER_ADDR,
        names=names,
        spoofed=spoofed,
        forward_only=forward_only,
    )


# ---------------------------------------------------------------------------------------------------
# Activity between a worker's cycles. Each returns the 0x transaction hash (already mined).
# ---------------------------------------------------------------------------------------------------


def send_eth(w3: Web3, sender: str, to: str, wei: int) -> str:
    """A plain value transfer."""
    return _send(
        w3,
        w3.eth.send_transaction(
            {"from": Web3.to_checksum_address(sender), "to": Web3.to_checksum_address(to), "value": Wei(wei)}
        ),
    )


def transfer_token(w3: Web3, token: str, sender: str, to: str, amount: int) -> str:
    """ERC-20 `transfer` of `amount` base units from `sender`."""
    fn = contract_at(w3, "DevToken", token).functions.transfer(Web3.to_checksum_address(to), amount)
    return _send(w3, fn.transact({"from": Web3.to_checksum_address(sender)}))


def mint_tokens(w3: Web3, token: str, to: str, amount: int) -> str:
    """ERC-20 `mint`, sent by the token's minter (its deployer)."""
    contract = contract_at(w3, "DevToken", token)
    minter = contract.functions.minter().call()
    return _send(w3, contract.functions.mint(Web3.to_checksum_address(to), amount).transact({"from": minter}))


def transfer_nft(w3: Web3, nft: str, sender: str, to: str, token_id: int) -> str:
    """ERC-721 `transferFrom` by the current owner `sender`."""
    sender = Web3.to_checksum_address(sender)
    fn = contract_at(w3, "DevNft", nft).functions.transferFrom(sender, Web3.to_checksum_address(to), token_id)
    return _send(w3, fn.transact({"from": sender}))


def mint_nft(w3: Web3, nft: str, to: str, token_id: int, uri: str) -> str:
    """ERC-721 `mint(to, id, uri)`, sent by the collection's minter."""
    contract = contract_at(w3, "DevNft", nft)
    minter = contract.functions.minter().call()
    fn = contract.functions.mint(Web3.to_checksum_address(to), token_id, uri)
    return _send(w3, fn.transact({"from": minter}))


def mine_blocks(w3: Web3, count: int = 1) -> int:
    """Mine `count` empty blocks (e.g. to pass a confirmation depth); returns the new block number."""
    rpc(w3, "anvil_mine", [hex(count)])
    return w3.eth.block_number


def set_eth_balance(w3: Web3, address: str, wei: int) -> None:
    """Set a balance without a transaction (anvil_setBalance): a change no log or tx will show."""
    rpc(w3, "anvil_setBalance", [Web3.to_checksum_address(address), hex(wei)])
