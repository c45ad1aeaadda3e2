"""The runnable template for a new worker (`python -m workers.example`); see README "Adding a worker"."""

from workers.example.worker import ExampleWorker

__all__ = ["ExampleWorker"]
