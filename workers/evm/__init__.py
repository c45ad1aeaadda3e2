"""EVM chains (Ethereum, BASE, ...): the worker, its JSON-RPC client and batched contract reads."""

from workers.evm.worker import EvmWorker

#: The parts switched by `<chain worker>_<feature>_enabled` flags (seeded by the manager).
FEATURES = {"ens": "Resolve ENS reverse names of the chain's wallets"}

__all__ = ["EvmWorker"]
