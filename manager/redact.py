"""Moved to `workers.redact` (workers never import the manager); kept so manager imports still work."""

from workers.redact import MASK, SecretScrubber, is_secret_key, mask_secrets, redact_url

__all__ = ["MASK", "SecretScrubber", "is_secret_key", "mask_secrets", "redact_url"]
