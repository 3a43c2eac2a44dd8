"""A walk over user errors: each case makes one mistake a user meets in practice; each must raise a CSRAError
with a one-line message (what the CLI prints after `error: `), holding the words registered with it."""

import json

import pytest

from csra.errors import CSRAError

ITEMS = [{"target": [1, 0], "img_path": "x/a.jpg"}, {"target": [0, 1], "img_path": "x/b.jpg"}]


class Walk:
    """The cases of one test file: `@walk.case` registers a case, `@walk.says(words…)` one whose message must
    hold these words; `walk.check(name, tmp)` runs one."""

    def __init__(self):
        self.cases, self.messages = {}, {}

    def case(self, fn):
        self.cases[fn.__name__] = fn
        return fn

    def says(self, *words):
        def register(fn):
            self.messages[fn.__name__] = words
            return self.case(fn)
        return register

    def check(self, name, tmp):
        try:
            self.cases[name](tmp)
        except Exception as e:  # any type: the point is which one it is
            assert isinstance(e, CSRAError), f"{type(e).__name__}: {e}"
            message = str(e)
            assert message.strip() and "\n" not in message and "Traceback" not in message, message
            for words in self.messages.get(name, ()):
                assert words in message, message
        else:
            pytest.fail(f"{name}: no error")


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path
