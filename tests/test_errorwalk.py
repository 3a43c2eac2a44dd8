"""The error walk's helper itself: a case must state the words of its message, and a case whose message lacks
them, names the wrong thing, spans lines or is not a CSRAError fails."""

import pytest
from errorwalk import Walk

from csra.errors import CSRAError


def test_a_case_without_words_cannot_be_registered():
    walk = Walk()
    for words in [(), ("",), ("  ",), (None,)]:
        with pytest.raises(TypeError, match="the file or key it names"):
            walk.says(*words)
    assert not hasattr(walk, "case")


def test_a_case_name_is_registered_once():
    walk = Walk()
    walk.says("a.json")(lambda tmp: None)
    with pytest.raises(ValueError, match="already registered"):
        walk.says("b.json")(lambda tmp: None)


def raises(error):
    def case(tmp):
        raise error
    return case


@pytest.mark.parametrize("error, words", [
    (CSRAError("scores.json: entry 1 has score nan for class 0"), ("entry 1 has score nan for class 0",)),
    (CSRAError("a.json: item 1 has no 'img_path'"), ("a.json: item 1", "'img_path'")),
])
def test_a_case_passes_when_its_message_holds_every_word(error, words, tmp_path):
    walk = Walk()
    walk.says(*words)(raises(error))
    walk.check("case", tmp_path)


@pytest.mark.parametrize("error, words", [
    (CSRAError("scores.json: entry 0 has score nan for class 1"), ("entry 1 has score nan for class 0",)),
    (CSRAError("images[2].targets[1] needs a 'bbox'"), ("images[1].targets[2]",)),
    (CSRAError("official state dict: give --num_heads"), ("--num-heads",)),
    (CSRAError("a.json: item 1 has no 'img_path'"), ("a.json: item 1", "'target'")),
    (CSRAError("a.json: not valid JSON\n  line 1"), ("a.json: not valid JSON",)),
    (ValueError("a.json: not valid JSON"), ("a.json: not valid JSON",)),
])
def test_a_case_fails_when_its_message_is_not_the_one_stated(error, words, tmp_path):
    walk = Walk()
    walk.says(*words)(raises(error))
    with pytest.raises(AssertionError):
        walk.check("case", tmp_path)


def test_a_case_that_raises_nothing_fails(tmp_path):
    walk = Walk()
    walk.says("a.json")(lambda tmp: None)
    with pytest.raises(pytest.fail.Exception, match="no error"):
        walk.check("<lambda>", tmp_path)
