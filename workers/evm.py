"""The EVM worker (placeholder until its chain sync lands), run as `ethereum` and as `base`:
waits for `rpc_url`, then runs empty cycles.
"""

from __future__ import annotations

from workers.base import Worker
from workers.errors import NotConfigured


class EvmWorker(Worker[object]):
    def validate(self) -> None:
        if not self.setting("rpc_url"):
            raise NotConfigured(f"rpc_url is not set (set {self.name.upper()}_RPC_URL or workers.{self.name}.rpc_url)")


if __name__ == "__main__":
    EvmWorker.main()
