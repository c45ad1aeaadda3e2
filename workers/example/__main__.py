"""`python -m workers.example`: run the worker as the manager does."""

from workers.example.worker import ExampleWorker

ExampleWorker.main()
