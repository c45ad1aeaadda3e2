"""AI enrichment: the worker (embeddings, summaries, sentiment, ...) and its OpenAI-compatible client."""

from workers.ai.worker import AiWorker, topic_label

__all__ = ["AiWorker", "topic_label"]
