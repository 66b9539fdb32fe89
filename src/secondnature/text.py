"""Small text helpers every stage shares: clipping long text, words, file-name slugs, and word overlap."""
from __future__ import annotations

import re


def elide(text: str, bound: int, what: str = "") -> str:
    """`text` if it fits in `bound` characters, else its head and tail with a marker saying how much is gone:
    the start says what was tried and the end how it finished, which is what a reader of a long reply needs."""
    if len(text) <= bound:
        return text
    half = bound // 2
    of = f" of {what}" if what else ""
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters{of} elided ...]\n{text[-half:]}"


def approx_tokens(text: str) -> int:
    """A tokenizer-free count that over-counts (about 3 characters a token), so a budget it enforces is safe."""
    return (len(text) + 2) // 3


def words(text: str) -> list[str]:
    """The lower-case words of `text` (letters and digits), in order."""
    return re.findall(r"[a-z0-9]+", text.lower())


def slug(name: str) -> str:
    """A task set's name as a file name part ("bbh/object_counting" -> "bbh_object_counting")."""
    return re.sub(r"[/:,+]", "_", name)


DUPLICATE = 0.6  # the similarity from which two lessons say the same thing
SIMILARITY_STOPWORDS = frozenset({"the", "a", "an", "of", "to", "and", "or", "in", "it"})


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' word sets, small words aside (lexical: two lessons that say the same
    thing in nearly the same words score 0.6 and more)."""
    wa, wb = set(words(a)) - SIMILARITY_STOPWORDS, set(words(b)) - SIMILARITY_STOPWORDS
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0
