"""AI enrichment: the worker (embeddings, summaries, sentiment, ...) and its OpenAI-compatible client.

Kept import-free: the search API imports `workers.ai.client` without the worker."""
