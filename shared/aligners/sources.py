"""The sources an answer should rest on: passages, the answer's sentences, and the support
report that says which sentence rests on which passage.

Framework-neutral and model-free, so the ``grounded`` inspector (which scores support) and the
``grounded`` repair (which drops what is unsupported) share one reading of the text: the same
sentence spans, byte offsets into the answer, and the same idea of a trivial sentence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from aligners.validation import is_blank, validate_text

#: What users pass as a context: one text, or a list of passages (retrieved chunks).
Context = str | Sequence[str]

#: Words a sentence can consist of and still claim nothing.
_STOPWORD_TEXT = (
    "a an the and or but if then so of to in on at by for with from as is are was were be "
    "been being it its this that these those there here i you we they he she me my your our "
    "their his her them us do does did done have has had will would can could should may "
    "might must shall not no yes very just also too more most some any all each other such "
    "than into about over what which who whom whose when where why how let know feel free "
    "hope helps help glad happy sure certainly course absolutely great good question "
    "questions thanks thank welcome please answer answers following below above ask asking "
    "anything else further additional "
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
#: Words that carry no claim on their own (lower case).
STOPWORDS = _STOPWORDS

#: Whole sentences that carry no claim ("Sure!", "I hope this helps.").
_PLEASANTRY = re.compile(
    r"(sure|certainly|of course|absolutely|okay|ok|great|great question|good question|"
    r"happy to help|glad to help|(i )?hope (this|that|it) helps( you)?|"
    r"let me know if .*|feel free to .*|(please )?don't hesitate to .*|thanks?( you)?( for .*)?|"
    r"you're welcome|i'?d be happy to help( .*)?|in summary|to summari[sz]e|"
    r"(based on|according to) the (provided |given |retrieved )?"
    r"(context|sources?|passages?|documents?|information)( provided)?|"
    # abstentions say what the sources lack, which needs no support from them
    r"((the|these|those) )?(provided |given |retrieved )?(context|sources?|passages?|documents?|"
    r"information)( provided| given)? (do|does|did) not .*|"
    r"i (don't|do not|cannot|can't|could not|couldn't) (know|find|tell|say)( .*)?|"
    # conversation: replies, wishes and compliments on a choice
    r"((yes|yeah|yep|no|nope|right|alright|cool|nice|awesome|wow|oh|hmm|well|indeed) ?)+|"
    r"my pleasure|no problem|any ?time|me too|same here|good luck( with .*)?|"
    r"enjoy( it| them| the \w+)?|have (a|an) (nice|great|good|wonderful) (day|time|one|evening)|"
    r"(that's|that is|what|it's|it is) (a )?(great|good|nice|fine|excellent|interesting|wonderful) "
    r"(choice|pick|idea|one|question|movie|book|film|show|song)|"
    r"(that )?sounds (good|great|fun|interesting|like a plan))"
)

#: A short sentence about the speaker, not the world: a taste, a feeling, what they have not
#: seen or do not know ("I love that movie.", "Other than that I don't know much about him.";
#: at most four words after the verb). It is trivial only when it names nothing (no number, no
#: capitalised name) a source could hold.
_SPEAKER = re.compile(
    r"((yes|yeah|no|well|oh|honestly|personally|actually|but|and|so|other than that|"
    r"apart from that|otherwise|to be honest) )*"
    r"(i|we)('m|'ve|'d| am| have| would| do| did| really| also| just| personally| too| still| "
    r"never| always| truly| absolutely| kind of| not)* "
    r"(like|likes|liked|love|loved|enjoy|enjoyed|adore|hate|dislike|prefer|"
    r"(don't|do not|didn't|did not) (know|remember|recall|care)|not sure|unsure|no idea|"
    r"(haven't|have not|hadn't|never) (seen|read|heard|watched|been|tried|played|listened|"
    r"visited)|a (big |huge )?fan|glad|happy|excited|sorry|afraid|hope|wish|agree|"
    r"think so|can't wait|cannot wait|would love|would like)( \S+){0,4}"
)
_SPEAKER_WORDS = frozenset({"i", "i'm", "i've", "i'd", "i'll"})

_ABBREVIATION_TEXT = (
    "mr mrs ms dr prof sr jr st vs etc inc ltd co corp no fig al approx dept est mt ft jan "
    "feb mar apr jun jul aug sep sept oct nov dec e.g i.e u.s u.k a.m p.m "
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s)")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)]|[a-zA-Z][.)](?=\s))\s+")
_MARKUP = re.compile(r"[*_`#>]+")
_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Span:
    """A sentence of a text: ``text[start:end]`` of the text it came from."""

    start: int
    end: int
    text: str


def as_passages(context: Any, field: str = "context") -> tuple[str, ...]:
    """A context as its non-blank passages: a str is one passage, a list or tuple of str holds
    several; ``None`` and blank texts give none.

    Raises:
        TypeError: ``context`` is neither, or holds something other than str (named by index).
        ValueError: a passage is not valid Unicode text.
    """
    if context is None:
        return ()
    if isinstance(context, str):
        validate_text(context, field)
        return () if is_blank(context) else (context,)
    if isinstance(context, (bytes, bytearray)) or not isinstance(context, Sequence):
        raise TypeError(
            f"{field} must be a str or a list of str passages, got {type(context).__name__}"
        )
    passages = []
    for i, passage in enumerate(context):
        if not isinstance(passage, str):
            raise TypeError(
                f"{field}[{i}] must be a str passage, got {type(passage).__name__} "
                "(pass the documents' text, e.g. [doc.page_content for doc in docs])"
            )
        validate_text(passage, f"{field}[{i}]")
        if not is_blank(passage):
            passages.append(passage)
    return tuple(passages)


def _ends_sentence(text: str, end: int) -> bool:
    """Whether the punctuation that ends at ``end`` closes a sentence (not "Dr." or "J.")."""
    before = text[:end].rstrip("\"')]").rstrip(".!?")
    token = before.rsplit(None, 1)[-1] if before.split() else ""
    if text[end - 1] in "!?" or text[:end].rstrip("\"')]").endswith(("!", "?")):
        return True
    if token.lower().strip("(") in _ABBREVIATIONS:
        return False
    if len(token) == 1 and token.isupper():  # an initial: "J. K. Rowling"
        return False
    if before.strip() == token and len(token) <= 3:  # a list marker: "1. First, ..."
        return False
    rest = text[end:].lstrip()
    return not rest or not rest[0].islower()


def split_sentences(text: str) -> list[Span]:
    """The sentences of ``text`` with their offsets; lines (list items, headings) are
    sentences of their own, and whitespace between sentences belongs to none."""
    spans: list[Span] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        start = 0
        for match in _BOUNDARY.finditer(line):
            if _ends_sentence(line, match.end()):
                _add_span(spans, line, offset, start, match.end())
                start = match.end()
        _add_span(spans, line, offset, start, len(line))
        offset += len(line)
    return spans


def _add_span(spans: list[Span], line: str, offset: int, start: int, end: int) -> None:
    piece = line[start:end]
    stripped = piece.strip()
    if not stripped or is_blank(stripped):
        return
    lead = len(piece) - len(piece.lstrip())
    begin = offset + start + lead
    spans.append(Span(begin, begin + len(stripped), stripped))


def claim_words(sentence: str) -> list[str]:
    """The lower-cased words of a sentence, list markers and markup removed."""
    plain = _MARKUP.sub(" ", _LIST_MARKER.sub("", sentence))
    return [w.lower() for w in _WORD.findall(plain)]


def is_trivial(sentence: str) -> bool:
    """Whether a sentence claims nothing a source could support or contradict: pleasantries
    ("Sure!", "I hope this helps."), lead-ins that end with a colon, questions ("Do you want the
    recipe?"), abstentions ("The sources do not say.", "I don't know."), conversational
    replies ("My pleasure!", "Good luck!"), what the speaker likes, feels or has not seen when it
    names nothing ("I love that movie."), words with no content."""
    words = claim_words(sentence)
    if not words or sentence.rstrip().rstrip("\"')]*_").endswith("?"):
        return True
    plain = _MARKUP.sub(" ", _LIST_MARKER.sub("", sentence)).lower().replace("\u2019", "'")
    flat = " ".join(re.sub(r"[^\w\s']", " ", plain).split())
    if _PLEASANTRY.fullmatch(flat):
        return True
    if sentence.rstrip().endswith(":") and len(words) <= 8:
        return True
    if _SPEAKER.fullmatch(flat) and not _names_anything(sentence):
        return True
    return all(w in _STOPWORDS for w in words)


def _names_anything(sentence: str) -> bool:
    """Whether a sentence holds a number or a capitalised word past its first ("I" aside)."""
    plain = _MARKUP.sub(" ", _LIST_MARKER.sub("", sentence)).replace("\u2019", "'")
    if _NUMBER.search(plain):
        return True
    first = len(plain) - len(plain.lstrip())
    names = [m.group(1) for m in _NAME.finditer(plain) if m.start() != first]
    return any(n.lower() not in _SPEAKER_WORDS for n in names)


def claim_text(question: str, sentence: str, short_claim_words: int = 5) -> str:
    """What is checked against the sources for one sentence: the sentence without list markers
    and markup, preceded by the question when the sentence is too short to say anything alone
    ("Paris." answers "What is the capital of France?")."""
    plain = " ".join(_MARKUP.sub(" ", _LIST_MARKER.sub("", sentence)).split())
    if question.strip() and len(claim_words(sentence)) < short_claim_words:
        return f"{' '.join(question.split())} {plain}"
    return plain


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NAME = re.compile(r"(?<![\w'])([A-Z][\w\-]+)")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".").removesuffix(".0") for n in _NUMBER.findall(text)}


class SourceTerms:
    """The numbers and words of some passages, read once, to find what a sentence names that
    they do not."""

    def __init__(self, passages: Sequence[str]) -> None:
        text = " ".join(passages)
        self.numbers = _numbers(text)
        self.words = set(claim_words(text))

    def missing(self, sentence: str, names: bool = True) -> list[str]:
        """Numbers (and, with ``names``, capitalised words after the first) of ``sentence``
        that no passage contains: a claim built on them cannot be supported, whatever it
        sounds like."""
        missing = sorted(_numbers(sentence) - self.numbers)
        if names:
            plain = _MARKUP.sub(" ", _LIST_MARKER.sub("", sentence))
            matches = list(_NAME.finditer(plain))
            for match in matches[1:] if plain[:1].isupper() else matches:
                name = match.group(1).removesuffix("'s").lower()
                if name not in _STOPWORDS and name not in self.words:
                    missing.append(match.group(1).removesuffix("'s"))
        return missing


def missing_terms(sentence: str, passages: Sequence[str], names: bool = True) -> list[str]:
    """:meth:`SourceTerms.missing` for one sentence."""
    return SourceTerms(passages).missing(sentence, names)


def chunk_passages(passages: Sequence[str], max_words: int = 60) -> list[tuple[int, str]]:
    """Passages cut into windows of whole sentences of at most ``max_words`` words (a longer
    sentence is cut by words), each window overlapping the previous by one sentence so a claim
    that spans a cut still finds its evidence; ``(passage index, text)`` pairs."""
    chunks: list[tuple[int, str]] = []
    for index, passage in enumerate(passages):
        pieces: list[str] = []
        for span in split_sentences(passage):
            words = span.text.split()
            pieces.extend(
                " ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)
            )
        window: list[str] = []
        size = 0
        for piece in pieces:
            length = len(piece.split())
            if window and size + length > max_words:
                chunks.append((index, " ".join(window)))
                window, size = window[-1:], len(window[-1].split())
                if size + length > max_words:
                    window, size = [], 0
            window.append(piece)
            size += length
        if window:
            chunks.append((index, " ".join(window)))
    return chunks


def content_words(text: str) -> set[str]:
    """The words of ``text`` that can carry a claim (:func:`claim_words` less stop words)."""
    return set(claim_words(text)) - _STOPWORDS


class ChunkIndex:
    """Some chunks' content words and their idf (``log(1 + chunks / chunks holding it)``),
    read once per answer, to rank the chunks for a claim and measure how much of a claim a
    chunk covers."""

    def __init__(self, chunks: Sequence[str]) -> None:
        self.bags = [content_words(chunk) for chunk in chunks]
        frequency = Counter(word for bag in self.bags for word in bag)
        size = len(self.bags)
        self.idf = {word: math.log(1 + size / count) for word, count in frequency.items()}
        #: The weight of a word no chunk holds (rarer than any word that is somewhere).
        self.unseen = math.log(1 + size / 0.5) if size else 1.0

    def ranked(self, claim: str) -> list[tuple[int, float]]:
        """Every chunk with the idf-weighted content words it shares with ``claim``, best
        first; ties keep chunk order."""
        wanted = content_words(claim)
        # summed in word order: a set's order changes from run to run, and with it the last
        # bits of a sum, which would decide between two tied chunks
        overlaps = [
            (i, sum(self.idf[w] for w in sorted(wanted & bag))) for i, bag in enumerate(self.bags)
        ]
        return sorted(overlaps, key=lambda item: (-item[1], item[0]))

    def coverage(self, words: set[str], chunk: int) -> float:
        """The idf-weighted share of ``words`` (content words) that ``chunk`` holds; 1.0 when
        there are none."""
        total = sum(self.idf.get(w, self.unseen) for w in sorted(words))
        if not total:
            return 1.0
        return sum(self.idf[w] for w in sorted(words & self.bags[chunk])) / total


_NEGATION = re.compile(
    r"\b(not|no|never|none|neither|nor|nobody|nothing|nowhere|without|cannot)\b|n't\b",
    re.IGNORECASE,
)


def negated(text: str) -> bool:
    """Whether ``text`` holds a negation ("not", "never", "didn't", "without", ...)."""
    return _NEGATION.search(text.replace("\u2019", "'")) is not None


def closest_sentence(claim: str, texts: Sequence[str]) -> str:
    """The sentence of ``texts`` that shares the most content words with ``claim`` (the first
    of those tied); empty when there is none."""
    wanted = content_words(claim)
    best, best_shared = "", -1
    for text in texts:
        for span in split_sentences(text):
            shared = len(wanted & content_words(span.text))
            if shared > best_shared:
                best, best_shared = span.text, shared
    return best


def best_chunks(claim: str, chunks: Sequence[str], top: int) -> list[int]:
    """Indices of the ``top`` chunks that share the most (idf-weighted) content words with
    ``claim``, best first; ties keep passage order."""
    if len(chunks) <= top:
        return list(range(len(chunks)))
    return [i for i, _ in ChunkIndex(chunks).ranked(claim)[:top]]


class SentenceSupport(BaseModel):
    """One sentence of an answer and whether the sources support it."""

    text: str
    start: int = Field(description="Offset of the sentence in the answer.")
    end: int
    trivial: bool = Field(
        default=False, description="Claims nothing (e.g. 'Sure!'); not scored, never dropped."
    )
    score: float | None = Field(
        default=None, description="P(supported) by the best passage; None for trivial ones."
    )
    supported: bool = True
    passage: int | None = Field(
        default=None, description="Index of the passage that supports it best (None: trivial)."
    )
    missing: list[str] = Field(
        default_factory=list,
        description="Numbers (and names, where the inspector checks them) of the sentence that "
        "no passage contains: a claim built on them cannot be supported.",
    )


class GroundingReport(BaseModel):
    """Per sentence of one answer: supported or not, and by which passage."""

    score: float = Field(description="The answer's score: its least supported sentence's.")
    threshold: float = Field(description="Sentences scoring under it are unsupported.")
    passages: int = Field(description="How many passages the answer was checked against.")
    sentences: list[SentenceSupport] = Field(default_factory=list)

    @classmethod
    def of(
        cls, sentences: list[SentenceSupport], *, threshold: float, passages: int
    ) -> GroundingReport:
        """The report of scored sentences: the answer scores as its least supported sentence,
        and one with nothing to check (only pleasantries) as fully supported."""
        scored = [s.score for s in sentences if s.score is not None]
        return cls(
            score=min(scored, default=1.0),
            threshold=threshold,
            passages=passages,
            sentences=sentences,
        )

    @property
    def unsupported(self) -> list[SentenceSupport]:
        """The sentences no passage supports."""
        return [s for s in self.sentences if not s.supported]
