"""`python -m workers.ai`: run the worker as the manager does."""

from workers.ai.worker import AiWorker

AiWorker.main()
