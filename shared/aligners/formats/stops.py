"""Stop strings: where a correction ends, for whole texts and for streams."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i != -1]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


class StopCutter:
    """Cuts a stream at the first stop string, holding back text that may begin one.

    With ``strip=True`` leading whitespace of the whole text is dropped and trailing whitespace
    at the end is not emitted, so the joined pieces equal ``PromptFormat.parse_output``.
    """

    def __init__(self, stops: Sequence[str], *, strip: bool = False) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.strip = strip
        self.buffer = ""
        self.stopped = False
        self.started = not strip

    def feed(self, piece: str) -> str:
        """Text that is safe to emit now."""
        if self.stopped:
            return ""
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        self.buffer += piece
        text, found = cut_at_stop(self.buffer, self.stops)
        if found:
            self.stopped = True
            self.buffer = ""
            return text
        if self.hold <= 0:
            out, self.buffer = self.buffer, ""
            return out
        out, self.buffer = self.buffer[: -self.hold], self.buffer[-self.hold :]
        return out

    def flush(self) -> str:
        """Whatever is still held back once the stream has ended."""
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out.rstrip() if self.strip else out
