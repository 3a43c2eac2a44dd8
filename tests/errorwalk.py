"""A walk over user errors: each case makes one mistake a user meets in practice; each must raise a CSRAError
with a one-line message (what the CLI prints after `error: `), holding the words registered with it."""

import json

import pytest

from csra.errors import CSRAError

ITEMS = [{"target": [1, 0], "img_path": "x/a.jpg"}, {"target": [0, 1], "img_path": "x/b.jpg"}]


class Walk:
    """The cases of one test file: `@walk.says(words…)` registers a case whose message must hold each of these
    words, at least one: the file or key it names and what was expected; `walk.check(name, tmp)` runs one."""

    def __init__(self):
        self.cases, self.messages = {}, {}

    def says(self, *words):
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise TypeError("says() takes the words of the message: the file or key it names, what was expected")

        def register(fn):
            if fn.__name__ in self.cases:
                raise ValueError(f"{fn.__name__}: a case of this name is already registered")
            self.cases[fn.__name__], self.messages[fn.__name__] = fn, words
            return fn
        return register

    def check(self, name, tmp):
        try:
            self.cases[name](tmp)
        except Exception as e:  # any type: the point is which one it is
            assert isinstance(e, CSRAError), f"{type(e).__name__}: {e}"
            message = str(e)
            assert message.strip() and "\n" not in message and "Traceback" not in message, message
            for words in self.messages[name]:
                assert words in message, f"{words!r} not in: {message}"
        else:
            pytest.fail(f"{name}: no error")


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path
