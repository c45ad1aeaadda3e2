"""Data-sync workers. Each runs as its own process under the manager; see `workers.base`."""
