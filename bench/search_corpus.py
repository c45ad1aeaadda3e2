"""A synthetic social corpus for the search benchmark: Zipf-distributed words with crypto terms at
realistic ranks, hashtags, cashtags, mentions, links and 1% typos, COPYed into `external_posts`.

The vocabulary is 120,000 words: common English function words first, about 100 crypto terms spread
from rank 30 to rank 3,000 (common, not stop-word common), the rest pronounceable pseudo-words;
word ranks follow p(r) ~ 1/r^1.07, post lengths a log-normal around 20 words. 30% of the posts are
reddit submissions with a title. Deterministic for a seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg


def _words(text: str) -> list[str]:
    return text.split()


FUNCTION_WORDS = _words(
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had "
    "by not but what all were we when your can said there use an each which she do how their if will up other "
    "about out many then them these so some her would make like him into time has look two more write go see "
    "number no way could people my than first been call who its now find long down day did get come made may "
    "part just today really think good know new still why need lol gm gn ser fren wagmi ngmi"
)
CRYPTO_TERMS = _words(
    "ethereum eth bitcoin btc solana sol base farcaster warpcast defi nft nfts airdrop staking validator "
    "validators gas fees wallet token tokens onchain layer rollup rollups bridge swap uniswap dex liquidity "
    "yield memecoin memecoins degen hodl bullish bearish pump dump rug mint minted block blocks chain mainnet "
    "testnet vitalik coinbase ledger metamask phantom jupiter raydium arbitrum optimism polygon zksync usdc "
    "usdt stablecoin stablecoins dao governance proposal contract contracts solidity frame frames channel "
    "casts cast zora blast restaking eigenlayer lido merge sharding blobs calldata sequencer mev searcher "
    "builder relayer"
)
SYLLABLES = _words(
    "ka ro ten mi sa lo ver un der pro ti na le co ma ra di po se ta ne li ga mo be fi re ca lu ha zo pe vi ku "
    "do ar en in on or at st tr pl br cr gr ex"
)
SUFFIXES = ["", "", "", "s", "ing", "ed", "er", "tion", "ly", "ness", "ment", "able"]
TAGS = [
    "ethereum",
    "bitcoin",
    "solana",
    "base",
    "farcaster",
    "defi",
    "nft",
    "airdrop",
    "gm",
    "buildinpublic",
    "degen",
    "memecoin",
    "web3",
    "crypto",
    "dao",
]
TICKERS = [
    "ETH",
    "BTC",
    "SOL",
    "DEGEN",
    "USDC",
    "OP",
    "ARB",
    "PEPE",
    "DOGE",
    "HIGHER",
    "BRETT",
    "MOG",
    "TOSHI",
    "AERO",
    "JUP",
    "BONK",
    "WIF",
    "LINK",
    "UNI",
    "AAVE",
]
DOMAINS = [
    "github.com",
    "x.com",
    "youtube.com",
    "warpcast.com",
    "mirror.xyz",
    "etherscan.io",
    "basescan.org",
    "solscan.io",
    "coindesk.com",
    "paragraph.xyz",
    "zora.co",
    "medium.com",
]
COPY_POSTS = (
    "COPY external_posts (platform, external_id, author_external_id, author_name, title, body, url, channel, "
    "created_at) FROM STDIN"
)


def _zipf(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


class Corpus:
    def __init__(self, seed: int = 42, vocabulary: int = 120_000) -> None:
        self.rng = np.random.default_rng(seed)
        rest = self.pseudo_words(vocabulary - len(FUNCTION_WORDS) - len(CRYPTO_TERMS))
        self.rng.shuffle(rest)
        words = list(FUNCTION_WORDS) + rest
        for j, term in enumerate(CRYPTO_TERMS):  # ranks 30 .. 3000
            words.insert(int(30 * (100 ** (j / len(CRYPTO_TERMS)))), term)
        self.vocab = np.array(words, dtype=object)
        self.p = _zipf(len(self.vocab), 1.07)
        self.tags = np.array(TAGS + self.pseudo_words(2000), dtype=object)
        self.tag_p = _zipf(len(self.tags), 1.2)
        self.tickers = np.array(TICKERS, dtype=object)
        self.ticker_p = _zipf(len(self.tickers), 1.0)
        self.domains = np.array(DOMAINS + [w + ".com" for w in self.pseudo_words(500)], dtype=object)
        self.domain_p = _zipf(len(self.domains), 1.1)

    def pseudo_words(self, n: int) -> list[str]:
        out: set[str] = set()
        while len(out) < n:
            syllables = self.rng.choice(SYLLABLES, int(self.rng.integers(2, 5)))
            out.add("".join(syllables) + SUFFIXES[int(self.rng.integers(0, len(SUFFIXES)))])
        return sorted(out)

    def typo(self, word: str) -> str:
        """One deletion, transposition or substitution inside the word (words under 4 letters stay)."""
        if len(word) < 4:
            return word
        i = int(self.rng.integers(1, len(word) - 1))
        op = int(self.rng.integers(0, 3))
        if op == 0:
            return word[:i] + word[i + 1 :]
        if op == 1:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        return word[:i] + "aeiou"[int(self.rng.integers(0, 5))] + word[i + 1 :]

    def rows(self, n: int, first_id: int, t0: float, t1: float) -> Iterator[str]:
        """COPY text lines for n posts created between epochs t0 and t1 (in order of creation)."""
        rng = self.rng
        lengths = np.clip(rng.lognormal(3.0, 0.6, n).astype(int), 3, 200)
        tokens = self.vocab[rng.choice(len(self.vocab), int(lengths.sum()), p=self.p)]
        for k in np.nonzero(rng.random(len(tokens)) < 0.01)[0]:
            tokens[k] = self.typo(tokens[k])
        ends = np.cumsum(lengths)
        starts = ends - lengths
        stamps = np.datetime_as_string(np.sort(rng.uniform(t0, t1, n)).astype("datetime64[s]"), unit="s")
        is_reddit = rng.random(n) < 0.3
        has_tag, has_cash = rng.random(n) < 0.12, rng.random(n) < 0.08
        has_mention, has_url = rng.random(n) < 0.15, rng.random(n) < 0.10
        tags = rng.choice(self.tags, n, p=self.tag_p)
        ticks = rng.choice(self.tickers, n, p=self.ticker_p)
        doms = rng.choice(self.domains, n, p=self.domain_p)
        users = rng.zipf(1.3, n) % 50_000
        for i in range(n):
            body = " ".join(tokens[starts[i] : ends[i]])
            extra = []
            if has_tag[i]:
                extra.append("#" + tags[i])
            if has_cash[i]:
                extra.append("$" + ticks[i])
            if has_mention[i]:
                extra.append(f"@user{users[i] * 7 % 50_000}")
            if has_url[i]:
                extra.append(f"https://{'www.' if i % 3 == 0 else ''}{doms[i]}/p/{first_id + i}")
            if extra:
                body = body + " " + " ".join(extra)
            pid = first_id + i
            if is_reddit[i]:
                title = " ".join(tokens[starts[i] : starts[i] + min(8, int(lengths[i]))])
                yield (
                    f"reddit\tt3_{pid}\tuser{users[i]}\tuser{users[i]}\t{title}\t{body}\t\\N\t"
                    f"r/sub{users[i] % 300}\t{stamps[i]}+00\n"
                )
            else:
                yield f"farcaster\t0x{pid:040x}\t{users[i]}\tfid{users[i]}\t\\N\t{body}\t\\N\t\\N\t{stamps[i]}+00\n"

    def load(self, conn: psycopg.Connection[Any], n: int, t0: float, t1: float, chunk: int = 100_000) -> float:
        """COPY n new posts in one transaction; returns the seconds it took."""
        started = time.perf_counter()
        row = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM external_posts").fetchone()
        first = int(row[0]) if row else 1
        with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_POSTS) as copy:
            for offset in range(0, n, chunk):
                size = min(chunk, n - offset)
                span = (t1 - t0) * size / n
                start = t0 + (t1 - t0) * offset / n
                copy.write("".join(self.rows(size, first + offset, start, start + span)))
        return time.perf_counter() - started
