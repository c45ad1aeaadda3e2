"""Solana: the worker (SOL/SPL balances, transactions) and Metaplex metadata decoding."""

from workers.solana.worker import SolanaWorker

__all__ = ["SolanaWorker"]
