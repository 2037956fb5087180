"""Text to tokens as TorchServe 0.12's text_classifier does it, without torchtext.

Called by text_classifier.py once per request. The steps and their order are TorchServe's
TextHandler: strip HTML tags and entities, lowercase, expand English contractions (an ordered
regex alternation, no word boundaries, first alternative wins), drop apostrophes, strip accents
(NFKD, non-ASCII dropped), drop ASCII punctuation, then torchtext's `basic_english` tokenizer and
bigram expansion (`ngrams_iterator`). The golden tests compare every step with TorchServe's own.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator, Sequence

_CONTRACTIONS = (
    "ain't=is not|aren't=are not|can't=cannot|can't've=cannot have|'cause=because|could've=could have|"
    "couldn't=could not|couldn't've=could not have|didn't=did not|doesn't=does not|don't=do not|"
    "hadn't=had not|hadn't've=had not have|hasn't=has not|haven't=have not|he'd=he would|"
    "he'd've=he would have|he'll=he will|he'll've=he he will have|he's=he is|how'd=how did|"
    "how'd'y=how do you|how'll=how will|how's=how is|I'd=I would|I'd've=I would have|I'll=I will|"
    "I'll've=I will have|I'm=I am|I've=I have|i'd=i would|i'd've=i would have|i'll=i will|"
    "i'll've=i will have|i'm=i am|i've=i have|isn't=is not|it'd=it would|it'd've=it would have|"
    "it'll=it will|it'll've=it will have|it's=it is|let's=let us|ma'am=madam|mayn't=may not|"
    "might've=might have|mightn't=might not|mightn't've=might not have|must've=must have|"
    "mustn't=must not|mustn't've=must not have|needn't=need not|needn't've=need not have|"
    "o'clock=of the clock|oughtn't=ought not|oughtn't've=ought not have|shan't=shall not|"
    "sha'n't=shall not|shan't've=shall not have|she'd=she would|she'd've=she would have|"
    "she'll=she will|she'll've=she will have|she's=she is|should've=should have|shouldn't=should not|"
    "shouldn't've=should not have|so've=so have|so's=so as|that'd=that would|"
    "that'd've=that would have|that's=that is|there'd=there would|there'd've=there would have|"
    "there's=there is|they'd=they would|they'd've=they would have|they'll=they will|"
    "they'll've=they will have|they're=they are|they've=they have|to've=to have|wasn't=was not|"
    "we'd=we would|we'd've=we would have|we'll=we will|we'll've=we will have|we're=we are|"
    "we've=we have|weren't=were not|what'll=what will|what'll've=what will have|what're=what are|"
    "what's=what is|what've=what have|when's=when is|when've=when have|where'd=where did|"
    "where's=where is|where've=where have|who'll=who will|who'll've=who will have|who's=who is|"
    "who've=who have|why's=why is|why've=why have|will've=will have|won't=will not|"
    "won't've=will not have|would've=would have|wouldn't=would not|wouldn't've=would not have|"
    "y'all=you all|y'all'd=you all would|y'all'd've=you all would have|y'all're=you all are|"
    "y'all've=you all have|you'd=you would|you'd've=you would have|you'll=you will|"
    "you'll've=you will have|you're=you are|you've=you have"
)
"""TorchServe's contraction table, in its order (the alternation tries them in this order)."""

CONTRACTION_MAP: dict[str, str] = {
    short: long for short, long in (entry.split("=", 1) for entry in _CONTRACTIONS.split("|"))
}
_CONTRACTION_RE = re.compile("({})".format("|".join(CONTRACTION_MAP)), flags=re.IGNORECASE | re.DOTALL)
_MARKUP_RE = re.compile("<.*?>|&([a-z0-9]+|#[0-9]{1,6}|#x[0-9a-f]{1,6});")
_PUNCTUATION = str.maketrans("", "", string.punctuation)

_BASIC_ENGLISH = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\'", " '  "),
        (r"\"", ""),
        (r"\.", " . "),
        (r"<br \/>", " "),
        (r",", " , "),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r"\!", " ! "),
        (r"\?", " ? "),
        (r"\;", " "),
        (r"\:", " "),
        (r"\s+", " "),
    )
)
"""torchtext's `basic_english` normalisation: (pattern, replacement), applied in order."""

NGRAMS = 2
"""TorchServe's TextClassifier.ngrams: every token, then every bigram."""


def _expand(match: re.Match[str]) -> str:
    found = match.group(0)
    expanded = CONTRACTION_MAP.get(found) or CONTRACTION_MAP.get(found.lower())
    if expanded is None:
        # Case-insensitive matching also lets 'ı' or 'ſ' stand for 'i' or 's', and their lower() is no
        # key: TorchServe fails the request with a TypeError there; the text is left as it is instead.
        return found
    return found[0] + expanded[1:]


def clean(text: str) -> str:
    """TorchServe's TextClassifier.preprocess up to (not including) tokenizing."""
    text = _MARKUP_RE.sub("", text)
    text = text.lower()
    text = _CONTRACTION_RE.sub(_expand, text)
    text = text.replace("'", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("utf-8", "ignore")
    return text.translate(_PUNCTUATION)


def basic_english(line: str) -> list[str]:
    """torchtext's get_tokenizer("basic_english")."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(tokens: Sequence[str], n: int) -> Iterator[str]:
    """torchtext's ngrams_iterator: the tokens, then each k-gram joined by spaces for k = 2..n."""
    yield from tokens
    for size in range(2, n + 1):
        for gram in zip(*(tokens[start:] for start in range(size))):
            yield " ".join(gram)


def tokens(text: str) -> list[str]:
    """The vocabulary keys TorchServe's text_classifier looks up for one text."""
    return list(ngrams(basic_english(clean(text)), NGRAMS))
