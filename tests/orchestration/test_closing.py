"""Naming an incident in a resolve or cancel: ids, prefixes and what reads as a reason."""

from orchestration.closing import looks_like_ref, short_id, split_ref


def test_the_short_id_is_eight_characters_and_always_holds_a_digit() -> None:
    assert short_id("ab12cd34ef56") == "ab12cd34"
    assert short_id("facadebeef0123") == "facadebeef0"  # letters only would read as a word


def test_the_first_word_is_an_id_only_when_it_looks_like_one() -> None:
    assert split_ref("ab12cd34 restarted by hand") == ("ab12cd34", "restarted by hand")
    assert split_ref("AB12CD34") == ("ab12cd34", "")
    assert split_ref("restarted by hand") == (None, "restarted by hand")
    assert split_ref("facade repainted") == (None, "facade repainted")  # hex letters, no digit
    assert split_ref("ab12 too short") == (None, "ab12 too short")
    assert split_ref("") == (None, "")
    assert not looks_like_ref("0123456789abcdef0123456789abcdef0")  # longer than any id
