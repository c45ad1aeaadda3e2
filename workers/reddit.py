"""The reddit worker (placeholder until its sync logic lands): waits for `client_id`, then runs empty cycles."""

from __future__ import annotations

from workers.base import Worker
from workers.errors import NotConfigured


class RedditWorker(Worker[object]):
    def validate(self) -> None:
        if not self.setting("client_id"):
            raise NotConfigured("client_id is not set (set REDDIT_CLIENT_ID or workers.reddit.client_id)")


if __name__ == "__main__":
    RedditWorker.main()
