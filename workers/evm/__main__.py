"""`python -m workers.evm`: run the worker as the manager does."""

from workers.evm.worker import EvmWorker

EvmWorker.main()
