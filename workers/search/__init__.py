"""Search: the worker that keeps indexes and tags fresh, and the query side the search API uses."""

from workers.search.worker import SearchWorker

__all__ = ["SearchWorker"]
