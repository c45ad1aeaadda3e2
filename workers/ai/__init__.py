"""AI enrichment: the worker (embeddings, summaries, sentiment, ...) and its OpenAI-compatible client."""

from workers.ai.topics import topic_label
from workers.ai.worker import AiWorker

#: The parts switched by `ai_<feature>_enabled` flags (seeded by the manager; see workers/features.py).
FEATURES = {
    "embeddings": "Embed posts and profiles (similarity, topics, recommendations)",
    "summaries": "Summarise posts and label their sentiment with a chat model",
}

__all__ = ["AiWorker", "topic_label"]
