"""`python -m manager --devnet`: start every local stand-in and point the workers at them.

Two anvil nodes play Ethereum (chain 1, with ENS) and BASE (chain 8453), seeded with tokens, NFTs
and transfers; a Farcaster Hub, a Reddit API, a Solana JSON-RPC node and an OpenAI-compatible API
run as child processes on loopback. Every child gets a parent-death signal, so a SIGKILLed manager
leaves none of them behind. The stack then rewrites the workers' config (endpoints, wallets, fids)
and supplies the credentials through the environment, as production would.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from manager.config import Config

REDDIT_CLIENT = ("devnet-client", "devnet-secret")
OPENAI_KEY = "sk-devnet"
# The shipped config paces the chain workers for public endpoints; local stand-ins need no pacing.
UNPACED = {"requests_per_second": 0}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback stand-in only
        return json.load(response)


@dataclass
class DevnetStack:
    """The running stand-ins; `apply()` points a config at them, `stop()` ends them."""

    worker_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _stoppers: list[Callable[[], object]] = field(default_factory=list)

    def apply(self, config: Config) -> Config:
        """A copy of `config` whose standard workers talk to the stand-ins (and all are enabled)."""
        workers = {}
        for name, spec in config.workers.items():
            overrides = self.worker_settings.get(spec.replica_of or name)  # a replica: as its worker
            if overrides is None:
                workers[name] = spec
                continue
            data = spec.model_dump(mode="json")
            data.update(overrides)
            data["enabled"] = True
            workers[name] = type(spec).model_validate(data)
        return config.model_copy(update={"workers": workers})

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            with contextlib.suppress(Exception):  # best effort: the rest must still stop
                stop()
        self._stoppers.clear()


def start_devnet(say: Callable[[str], None]) -> DevnetStack:
    """Start everything (about 2 s); on any failure, stop what was started and re-raise."""
    from devnet.chains import seed_chain, start_anvil
    from devnet.http_stub import StubProcess

    stack = DevnetStack()
    try:
        hub = StubProcess("devnet.farcaster_hub", ["--seed", "1"]).start()
        stack._stoppers.append(hub.stop)
        reddit = StubProcess(
            "devnet.reddit_api",
            ["--client-id", REDDIT_CLIENT[0], "--client-secret", REDDIT_CLIENT[1], "--ratelimit-requests", "100000"],
        ).start()
        stack._stoppers.append(reddit.stop)
        solana = StubProcess("devnet.solana_rpc").start()
        stack._stoppers.append(solana.stop)
        openai = StubProcess("devnet.openai_api", ["--api-key", OPENAI_KEY]).start()
        stack._stoppers.append(openai.stop)

        chains = {}
        for name, chain_id in (("ethereum", 1), ("base", 8453)):
            node = start_anvil(chain_id)  # automine while seeding, then a block every 2 s
            stack._stoppers.append(node.stop)
            chains[name] = (node, seed_chain(node))
            node.rpc("evm_setIntervalMining", [2])

        fids = _get_json(f"{hub.url}/_devnet/dataset")["fids"]
        solana_seed = _get_json(f"{solana.url}/_devnet/seed")
        stack.worker_settings = {
            "farcaster": {"hub_url": hub.url, "fids": fids[:10], "follow_expansion_limit": 40, "interval_ms": 15000},
            "reddit": {
                "client_id": REDDIT_CLIENT[0],
                "oauth_url": reddit.url,
                "reddit_url": reddit.url,
                "requests_per_minute": 600,
                "interval_ms": 30000,
            },
            "solana": {
                "rpc_url": solana.url,
                "wallets": _solana_wallets(solana_seed),
                "interval_ms": 10000,
                "max_concurrency": 8,
                **UNPACED,
            },
            "ai": {"base_url": f"{openai.url}/v1", "interval_ms": 5000},
            "search": {"interval_ms": 5000},
        }
        for name, (node, seed) in chains.items():
            stack.worker_settings[name] = {
                "rpc_url": node.url,
                "chain_id": seed.chain_id,
                "wallets": [{"address": w.address, "label": w.label} for w in seed.tracked],
                "tokens": [t.address for t in seed.tokens],
                "nft_contracts": [seed.nft.address],
                "confirmations": 1,
                "interval_ms": 5000,
                **UNPACED,
            }
        stack.worker_settings["base"]["ens_rpc_url"] = chains["ethereum"][0].url  # names live on mainnet
        stack.env = {
            "REDDIT_CLIENT_SECRET": REDDIT_CLIENT[1],
            "OPENAI_API_KEY": OPENAI_KEY,
            "PRAW_ALLOW_ENDPOINT_OVERRIDE": "1",
        }
        say(
            "devnet: farcaster hub {hub}, reddit {reddit}, solana {sol}, openai {oa}, "
            "ethereum {eth}, base {base}".format(
                hub=hub.url,
                reddit=reddit.url,
                sol=solana.url,
                oa=openai.url,
                eth=chains["ethereum"][0].url,
                base=chains["base"][0].url,
            )
        )
        return stack
    except BaseException:
        stack.stop()
        raise


def _solana_wallets(seed: dict[str, Any]) -> list[dict[str, str]]:
    return [{"address": w["pubkey"], "label": w["label"]} for w in seed["wallets"] if w["tracked"]]
