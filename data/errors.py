"""Errors raised on bad user input to the data layer (files, CSVs, taxonomies, folders)."""


class DataError(ValueError):
    """Input data cannot be used. The message names the file or column and what would be accepted."""
