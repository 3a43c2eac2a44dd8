"""The one exception type for user errors (its message is a single line the CLI prints as is), the one way such a
line quotes another exception (first_line) and the one way it says how two name lists differ."""

from __future__ import annotations


class CSRAError(Exception):
    """Bad input from a user (file, key, value): the message names what is wrong and what was expected."""


def first_line(error: BaseException, typed: bool = False) -> str:
    """The first line of an exception's message (its type's name when it has none); typed: after its type's name
    ('OSError: …')."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text.splitlines()[0]}" if typed else text.splitlines()[0]


def describe_difference(names: list[str], expected: list[str]) -> str:
    """How two class lists differ, the first way found: their lengths, or the first name that differs."""
    if len(names) != len(expected):
        return f"{len(names)} class names, not {len(expected)}"
    i = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
    return f"class {i} is {names[i]!r}, not {expected[i]!r}"
