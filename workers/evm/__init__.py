"""EVM chains (Ethereum, BASE, ...): the worker, its JSON-RPC client and batched contract reads."""

from workers.evm.worker import EvmWorker

__all__ = ["EvmWorker"]
