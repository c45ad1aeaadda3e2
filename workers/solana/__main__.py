"""`python -m workers.solana`: run the worker as the manager does."""

from workers.solana.worker import SolanaWorker

SolanaWorker.main()
