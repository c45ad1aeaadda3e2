"""The anvil devnet: real nodes for chains 1 and 8453, seeded contracts read back with web3.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from devnet import chains
from devnet.chains import AnvilError, AnvilNode, ChainSeed

REPO = Path(__file__).resolve().parents[2]
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


@pytest.fixture(scope="module")
def ethereum() -> Iterator[tuple[AnvilNode, ChainSeed]]:
    with chains.start_anvil(chains.ETHEREUM_CHAIN_ID) as node:
        yield node, chains.seed_chain(node)


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[AnvilNode, ChainSeed]]:
    with chains.start_anvil(chains.BASE_CHAIN_ID) as node:
        yield node, chains.seed_chain(node)


@pytest.fixture
def scratch() -> Iterator[tuple[AnvilNode, ChainSeed]]:
    """A chain of its own for tests that change state."""
    with chains.start_anvil(chains.BASE_CHAIN_ID) as node:
        yield node, chains.seed_chain(node)


# --- finding and running anvil --------------------------------------------------------------------


def test_anvil_bin_override_must_be_an_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANVIL_BIN", str(tmp_path / "nope"))
    with pytest.raises(AnvilError, match="ANVIL_BIN"):
        chains.anvil_path()


def test_missing_anvil_names_the_make_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANVIL_BIN", raising=False)
    monkeypatch.setattr(chains, "TOOLS_ANVIL", tmp_path / "no-anvil")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilError, match="make tools"):
        chains.anvil_path()


@pytest.mark.parametrize("fixture", ["ethereum", "base"])
def test_anvil_reports_the_chain_id_it_was_started_with(fixture: str, request: pytest.FixtureRequest) -> None:
    node, seed = request.getfixturevalue(fixture)
    w3 = node.web3()
    assert w3.eth.chain_id == node.chain_id == seed.chain_id
    assert node.url.startswith("http://127.0.0.1:") and node.port > 0
    assert node.rpc("eth_chainId") == hex(node.chain_id)


def test_stop_ends_the_process_and_is_idempotent() -> None:
    with chains.start_anvil(31337) as node:
        assert node.alive() and node.web3().eth.chain_id == 31337
    assert not node.alive()
    node.stop()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie has exited
    except FileNotFoundError:
        return True


def test_anvil_dies_with_the_process_that_started_it() -> None:
    script = "from devnet import chains; import time; print(chains.start_anvil(1).pid, flush=True); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert parent.stdout is not None
    anvil_pid = int(parent.stdout.readline())
    assert not _gone(anvil_pid)
    parent.kill()  # SIGKILL: no cleanup code runs in the parent
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 3
    while not _gone(anvil_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(anvil_pid)


def test_a_node_that_cannot_start_reports_its_output() -> None:
    with pytest.raises(AnvilError, match="anvil"):
        chains.start_anvil(1, extra_args=["--no-such-flag"], timeout=5)


# --- seeded state ---------------------------------------------------------------------------------


def test_seeding_transactions_all_succeeded(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    assert len(seed.tx_hashes) == len(set(seed.tx_hashes)) > 20
    assert all(w3.eth.get_transaction_receipt(h)["status"] == 1 for h in seed.tx_hashes)
    assert seed.first_block < seed.last_block == w3.eth.block_number


def test_eth_balances_match_the_seed(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    assert [w.label for w in seed.tracked] == ["alice", "bob", "carol"]
    for wallet in seed.wallets:
        assert w3.eth.get_balance(wallet.address) == seed.eth_balances[wallet.address] > 0
    # alice was funded 5 ETH and paid bob 0.1 ETH plus gas.
    alice = seed.wallet("alice").address
    assert Web3.to_wei(4.89, "ether") < seed.eth_balances[alice] < Web3.to_wei(4.9, "ether")


def test_wallet_keys_are_real_and_deterministic(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    from eth_account import Account

    _, seed = ethereum
    for wallet in seed.wallets:
        assert Account.from_key(wallet.private_key).address == wallet.address
    assert chains.devnet_wallets() == seed.wallets


def test_erc20_tokens_read_back_with_web3(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    assert {(t.symbol, t.decimals) for t in seed.tokens} == {("DUSD", 6), ("DGOV", 18)}
    for token in seed.tokens:
        contract = chains.contract_at(w3, "DevToken", token.address)
        assert contract.functions.symbol().call() == token.symbol
        assert contract.functions.name().call() == token.name
        assert contract.functions.decimals().call() == token.decimals
        for address, amount in token.balances.items():
            assert contract.functions.balanceOf(address).call() == amount
        assert contract.functions.totalSupply().call() == sum(token.balances.values())
    dusd = seed.token("DUSD")
    assert dusd.balances[seed.wallet("alice").address] == 1_150_250_000  # 1250.5 minted - 100.25 sent


def test_token_transfers_are_ordinary_logs(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    dusd = chains.contract_at(w3, "DevToken", seed.token("DUSD").address)
    events = dusd.events.Transfer().get_logs(from_block=seed.first_block)
    assert len(events) == 5  # three mints, two transfers
    raw = w3.eth.get_logs({"fromBlock": seed.first_block, "toBlock": "latest", "topics": [TRANSFER_TOPIC]})
    erc20 = [log for log in raw if len(log["topics"]) == 3]
    erc721 = [log for log in raw if len(log["topics"]) == 4]
    assert len(erc20) == 8 + 0 and len(erc721) == 7  # 5 DUSD + 3 DGOV; 6 mints + 1 transfer


def test_nfts_read_back_with_web3(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    nft = chains.contract_at(w3, "DevNft", seed.nft.address)
    assert nft.functions.symbol().call() == "DPUNK"
    assert nft.functions.supportsInterface(bytes.fromhex("80ac58cd")).call()  # ERC-721
    assert nft.functions.supportsInterface(bytes.fromhex("5b5e139f")).call()  # metadata
    for token in seed.nft.tokens:
        assert nft.functions.ownerOf(token.token_id).call() == token.owner
        assert (
            nft.functions.tokenURI(token.token_id).call()
            == token.uri
            == f"ipfs://bafydevnetpunks/{token.token_id}.json"
        )
    alice, bob = seed.wallet("alice").address, seed.wallet("bob").address
    assert [t.token_id for t in seed.nft.owned_by(alice)] == [1, 2]
    assert [t.token_id for t in seed.nft.owned_by(bob)] == [3, 4]
    assert nft.functions.balanceOf(bob).call() == 2


def test_the_same_contracts_have_other_addresses_on_base(
    ethereum: tuple[AnvilNode, ChainSeed], base: tuple[AnvilNode, ChainSeed]
) -> None:
    _, eth_seed = ethereum
    _, base_seed = base
    assert base_seed.chain_id == 8453
    assert {t.address for t in eth_seed.tokens}.isdisjoint({t.address for t in base_seed.tokens})
    assert eth_seed.nft.address != base_seed.nft.address
    assert [w.address for w in eth_seed.wallets] == [w.address for w in base_seed.wallets]
    assert base_seed.ens is None


# --- ENS ------------------------------------------------------------------------------------------


def test_ens_reverse_lookup_works_end_to_end(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    assert seed.ens is not None
    alice, bob = seed.wallet("alice").address, seed.wallet("bob").address
    assert seed.ens.names == {alice: "alice.eth", bob: "bob.eth"}
    assert w3.ens.name(alice) == "alice.eth"
    assert w3.ens.name(bob) == "bob.eth"
    assert w3.ens.address("alice.eth") == alice
    assert w3.ens.owner("alice.eth") == alice  # the registry sits at the mainnet registry address


def test_a_spoofed_reverse_record_fails_the_forward_check(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    assert seed.ens is not None
    carol = seed.wallet("carol").address
    assert seed.ens.spoofed == {carol: "alice.eth"}
    reverse = chains.contract_at(w3, "DevPublicResolver", seed.ens.resolver)
    node_hash = chains.namehash(f"{carol[2:].lower()}.addr.reverse")
    assert reverse.functions.name(node_hash).call() == "alice.eth"  # the claim is on chain ...
    assert w3.ens.name(carol) is None  # ... and web3.py rejects it


def test_names_without_a_reverse_record_give_none(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = ethereum
    w3 = node.web3()
    dave = seed.wallet("dave").address
    assert w3.ens.address("dave.eth") == dave
    assert w3.ens.name(dave) is None
    assert w3.ens.name(seed.deployer) is None
    assert w3.ens.address("nobody.eth") is None


def test_nobody_can_set_another_accounts_records(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    from web3.exceptions import ContractLogicError

    node, seed = ethereum
    w3 = node.web3()
    assert seed.ens is not None
    resolver = chains.contract_at(w3, "DevPublicResolver", seed.ens.resolver)
    carol = seed.wallet("carol").address
    with pytest.raises(ContractLogicError, match="not authorised"):
        resolver.functions.setAddr(chains.namehash("alice.eth"), carol).call({"from": carol})


# --- activity between cycles ----------------------------------------------------------------------


def test_helpers_change_the_chain(scratch: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = scratch
    w3 = node.web3()
    alice, bob, dave = (seed.wallet(x).address for x in ("alice", "bob", "dave"))
    dusd = seed.token("DUSD")
    token = chains.contract_at(w3, "DevToken", dusd.address)
    nft = chains.contract_at(w3, "DevNft", seed.nft.address)
    start = w3.eth.block_number

    chains.transfer_token(w3, dusd.address, alice, dave, 50 * 10**6)
    assert token.functions.balanceOf(alice).call() == dusd.balances[alice] - 50 * 10**6
    chains.mint_tokens(w3, dusd.address, bob, 7)
    assert token.functions.balanceOf(bob).call() == dusd.balances[bob] + 7
    chains.transfer_nft(w3, seed.nft.address, alice, dave, 1)
    assert nft.functions.ownerOf(1).call() == dave
    chains.mint_nft(w3, seed.nft.address, bob, 99, "ipfs://x/99.json")
    assert nft.functions.tokenURI(99).call() == "ipfs://x/99.json"
    tx = chains.send_eth(w3, bob, alice, 12345)
    assert w3.eth.get_transaction(tx)["value"] == 12345
    assert w3.eth.block_number == start + 5  # one block per transaction
    assert chains.mine_blocks(w3, 3) == start + 8
    chains.set_eth_balance(w3, dave, 42)
    assert w3.eth.get_balance(dave) == 42


def test_a_reverting_helper_raises(base: tuple[AnvilNode, ChainSeed]) -> None:
    from web3.exceptions import ContractLogicError

    node, seed = base
    w3 = node.web3()
    with pytest.raises(ContractLogicError, match="DevToken: balance"):
        chains.transfer_token(w3, seed.token("DGOV").address, seed.wallet("bob").address, seed.deployer, 1)
