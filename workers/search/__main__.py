"""`python -m workers.search`: run the worker as the manager does."""

from workers.search.worker import SearchWorker

SearchWorker.main()
