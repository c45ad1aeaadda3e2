"""The ai worker (placeholder until its sync logic lands): waits for `base_url`, then runs empty cycles."""

from __future__ import annotations

from workers.base import Worker
from workers.errors import NotConfigured


class AiWorker(Worker[object]):
    def validate(self) -> None:
        if not self.setting("base_url"):
            raise NotConfigured("base_url is not set (set OPENAI_BASE_URL or workers.ai.base_url)")


if __name__ == "__main__":
    AiWorker.main()
