"""The solana worker (placeholder until its sync logic lands): waits for `rpc_url`, then runs empty cycles."""

from __future__ import annotations

from workers.base import Worker
from workers.errors import NotConfigured


class SolanaWorker(Worker[object]):
    def validate(self) -> None:
        if not self.setting("rpc_url"):
            raise NotConfigured("rpc_url is not set (set SOLANA_RPC_URL or workers.solana.rpc_url)")


if __name__ == "__main__":
    SolanaWorker.main()
