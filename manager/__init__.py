"""The worker manager: supervises data-sync workers, judges their health, serves status."""
