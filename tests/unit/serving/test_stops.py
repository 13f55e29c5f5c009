from __future__ import annotations

from docllm.serving.stops import StopMatcher


def feed_all(m: StopMatcher, deltas: list[str]) -> tuple[str, bool]:
    sent = ""
    for d in deltas:
        out, stopped = m.feed(d)
        sent += out
        if stopped:
            return sent, True
    return sent + m.flush(), False


def test_a_stop_string_split_over_tokens_is_caught_and_not_sent() -> None:
    m = StopMatcher(["\n###"])
    assert feed_all(m, ["Versioning", " is on", ".\n", "#", "##", " Question"]) == ("Versioning is on.", True)
    assert m.text == "Versioning is on."


def test_text_that_only_starts_like_a_stop_string_is_sent_once_it_diverges() -> None:
    m = StopMatcher(["###"])
    assert m.feed("a #") == ("a ", False)  # "#" could begin "###": held back
    assert m.feed("# b") == ("## b", False)


def test_the_earliest_stop_string_wins() -> None:
    m = StopMatcher(["world", "lo"])
    assert feed_all(m, ["hello world"]) == ("hel", True)


def test_without_a_match_everything_is_sent() -> None:
    m = StopMatcher(["xyz"])
    assert feed_all(m, ["abc", "x", "y"]) == ("abcxy", False)
    assert feed_all(StopMatcher([]), ["a", "b"]) == ("ab", False)
