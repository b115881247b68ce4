"""Errors raised by the search driver on bad flags, unreachable resources or unknown searches."""


class SearchError(RuntimeError):
    """A search cannot start or continue. The message says what to change."""
