"""The exception training raises for problems a user can fix (bad data, settings or base model)."""


class TrainingError(Exception):
    """A training run cannot start or go on; the message says why and what to change."""
