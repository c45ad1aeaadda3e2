"""Social sources: Farcaster and Reddit workers (`python -m workers.social.farcaster`, `... .reddit`)
and the store they share."""
