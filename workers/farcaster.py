"""The farcaster worker (placeholder until its sync logic lands): waits for `hub_url`, then runs empty cycles."""

from __future__ import annotations

from workers.base import Worker
from workers.errors import NotConfigured


class FarcasterWorker(Worker[object]):
    def validate(self) -> None:
        if not self.setting("hub_url"):
            raise NotConfigured("hub_url is not set (set FARCASTER_HUB_URL or workers.farcaster.hub_url)")


if __name__ == "__main__":
    FarcasterWorker.main()
