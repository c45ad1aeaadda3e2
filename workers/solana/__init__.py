"""Solana: the worker (SOL/SPL balances, transactions) and Metaplex metadata decoding."""
