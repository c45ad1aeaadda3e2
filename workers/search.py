"""The search worker (placeholder until its indexing logic lands): runs empty cycles."""

from __future__ import annotations

from workers.base import Worker


class SearchWorker(Worker[object]):
    pass


if __name__ == "__main__":
    SearchWorker.main()
