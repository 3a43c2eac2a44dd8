"""csra.errors: the one way a message quotes another exception."""

from csra.errors import first_line


def test_first_line_is_the_first_line_of_the_message_or_the_type():
    assert first_line(OSError("\n  disk full\n  at /x\n")) == "disk full"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(OSError("disk full\nmore"), typed=True) == "OSError: disk full"
    assert first_line(KeyError(), typed=True) == "KeyError"
