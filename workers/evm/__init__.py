"""EVM chains (Ethereum, BASE, ...): the worker, its JSON-RPC client and batched contract reads."""
