"""`python -m manager --devnet`: the whole system on loopback stand-ins, healthy and filling tables."""

from __future__ import annotations

import os
import signal

import psutil
import yaml

from tests.support.manager import ROOT, wait_gone
from tests.support.waiting import wait_for

STANDARD = {"farcaster", "reddit", "ethereum", "base", "solana", "ai", "search"}


def cmdline(process: psutil.Process) -> list[str]:
    """A process's command line, or nothing for one that exited while we looked (a zombie)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_devnet_boots_every_worker_healthy_and_cleans_up(boot_manager):
    workers = yaml.safe_load((ROOT / "config.yaml").read_text())["workers"]
    m = boot_manager(workers, args=["--devnet"], timeout=90)
    assert {w["name"] for w in m.status()} == STANDARD

    def all_healthy() -> bool:
        return all(w["healthy"] and w["state"] == "running" for w in m.status())

    wait_for(all_healthy, 60, 0.5, "every worker healthy within 60 s of boot")

    def data_flowing() -> bool:
        rows = dict(m.sql("SELECT platform, count(*) FROM external_posts GROUP BY platform"))
        return rows.get("farcaster", 0) > 0 and rows.get("reddit", 0) > 0

    wait_for(data_flowing, 60, 0.5, "casts and reddit posts in external_posts")

    def chains_synced() -> bool:
        (evm,) = m.sql("SELECT count(DISTINCT chain) FROM evm_native_balances")[0]
        (sol,) = m.sql("SELECT count(*) FROM solana_balances")[0]
        return evm == 2 and sol > 0

    wait_for(chains_synced, 60, 0.5, "Ethereum, BASE and Solana balances")

    def processed() -> bool:
        (ai,) = m.sql("SELECT count(*) FROM ai_posts")[0]
        (indexed,) = m.sql("SELECT count(*) FROM search_posts")[0]
        return ai > 0 and indexed > 0

    wait_for(processed, 60, 0.5, "embeddings and search documents for the synced posts")
    # a word that the index really holds as a word (not, say, part of a URL's host name)
    (word,) = m.sql(
        "SELECT w[1] FROM search_posts s JOIN external_posts p ON p.id = s.post_id, "
        "regexp_matches(p.body, '\\m([a-z]{6,})\\M', 'g') AS w "
        "WHERE s.tsv @@ plainto_tsquery('english', w[1]) LIMIT 1"
    )[0]
    found = m.api("GET", "/api/search", params={"q": word, "kind": "posts"})
    assert found.status_code == 200, found.text
    assert found.json()["results"], f"searching {word!r} found nothing"
    children = m.descendants()
    names = " ".join(" ".join(cmdline(p)) for p in children)
    for stand_in in ("devnet.farcaster_hub", "devnet.reddit_api", "devnet.solana_rpc", "devnet.openai_api", "anvil"):
        assert stand_in in names

    pids = [p.pid for p in children]
    os.kill(m.proc.pid, signal.SIGKILL)  # even stand-ins die with the manager
    m.proc.wait(5)
    wait_gone(pids, 3)
