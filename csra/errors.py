"""The one exception type for user errors: its message is a single line the CLI prints as is."""


class CSRAError(Exception):
    """Bad input from a user (file, key, value): the message names what is wrong and what was expected."""
