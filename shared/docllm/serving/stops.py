"""Stop sequences, matched on the decoded text as it grows.

A stop string may arrive split over several tokens ("###" as "#" then "##"), so text that could
be the beginning of a stop string is held back until the next token shows whether it is; the
stop string itself and everything after it are never sent (OpenAI's contract). When several
stop strings match, the one that starts first wins.

Example
-------
>>> m = StopMatcher(["###"])
>>> m.feed("Paris.#")
('Paris.', False)
>>> m.feed("## Next")
('', True)
>>> m.text
'Paris.'
"""

from __future__ import annotations


class StopMatcher:
    """Accumulates a completion's text and says how much of it may be sent."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self._stops), default=0)
        self.text = ""  # the completion so far, cut before the stop string once one matched
        self._sent = 0

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add ``delta``; returns (text now safe to send, whether a stop string matched)."""
        if not self._stops:
            self.text += delta
            self._sent = len(self.text)
            return delta, False
        # A new match must end inside delta, so it starts at most len(stop) - 1 characters before it.
        search_from = max(0, len(self.text) - self._longest + 1)
        self.text += delta
        found = [i for s in self._stops if (i := self.text.find(s, search_from)) >= 0]
        if found:
            cut = min(found)
            self.text = self.text[:cut]
            out = self.text[self._sent :]
            self._sent = cut
            return out, True
        safe = len(self.text) - self._held_back()
        out = self.text[self._sent : safe]
        self._sent = max(self._sent, safe)
        return out, False

    def flush(self) -> str:
        """The held-back text, when the completion ends for another reason."""
        out = self.text[self._sent :]
        self._sent = len(self.text)
        return out

    def _held_back(self) -> int:
        """Length of the longest suffix of the text that begins some stop string."""
        unsent = len(self.text) - self._sent
        for k in range(min(self._longest - 1, unsent), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self._stops):
                return k
        return 0
