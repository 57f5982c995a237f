"""A conservative count of the tokens a text costs a model, from its characters (ADR 22).

No tokenizer fits every model a deployment names, and tiktoken cannot fetch its encodings offline, so this
estimates from the same pieces OpenAI's cl100k/o200k pre-tokenizer splits text into: a dictionary-like word is one
token per five letters, a random-looking run of letters (base64, ids) three per four, digits one per three, a
punctuation run one per two, a whitespace run one per eight (a single space joins its word for free), and other
scripts by their UTF-8 size. Calibrated against cl100k and o200k on tests/data/token_samples.json: never under,
1.0-1.8x over (English 1.2x, JSON 1.5x, Russian 1.75x).
"""

from __future__ import annotations

import re

# Hand-written: a tokenizer would need encodings this machine cannot download, and one per model family.
_PIECES = re.compile(r"[A-Za-z]+|[^\W\d_]+|\d+|\s+|[!-/:-@\[-`{-~]+|.", re.S)
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_CONSONANTS = re.compile(r"[^aeiouyAEIOUY]{4}")
MESSAGE_OVERHEAD = 4  # a chat message's role and separators (OpenAI's own counting guide: 3 to 4 per message)


def _letters(run: str) -> int:
    n = len(run)
    if n <= 3:
        return 1
    cased = run.islower() or run.isupper() or (run[0].isupper() and run[1:].islower())
    if cased and n <= 14 and _VOWEL.search(run) and not _CONSONANTS.search(run):
        return -(-n // 5)  # reads like a word: a vocabulary has it whole or in few parts
    return -(-n * 3 // 4)


def _other_script(run: str) -> int:
    size = len(run.encode())
    if not run[0].isalpha():
        return -(-size * 3 // 4)  # emoji and symbols: about one token per byte and a third
    if size <= 2 * len(run):
        return -(-size * 2 // 5)  # two-byte letters (Latin, Cyrillic, Greek, Arabic, Hebrew)
    return -(-len(run) * 5 // 4)  # CJK and other three-byte scripts: a little over one token per character


def estimate_tokens(text: str) -> int:
    """At least as many tokens as cl100k or o200k count for the text (within the calibration's reach)."""
    total = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if not first.isascii():
            total += _other_script(piece)
        elif first.isalpha():
            total += _letters(piece)
        elif first.isdigit():
            total += -(-len(piece) // 3) + 1  # groups of three digits, and the separator before them
        elif first.isspace():
            total += 0 if piece == " " else -(-len(piece) // 8)
        else:
            total += 1 if len(piece) == 1 else -(-len(piece) // 2)
    return max(total, 1) if text else 0


# Estimating is ~0.5 ms per KB of text; a chat's next reply sends mostly the messages its last one sent, so each
# text's count is kept under (hash, length) rather than the text itself (lru_cache would hold every message alive).
_CACHE_MIN_CHARS = 24
_CACHE_ENTRIES = 32_768
_counted: dict[tuple[int, int], int] = {}


def message_tokens(content: str) -> int:
    """What one chat message costs in a request: its text and its framing."""
    if len(content) < _CACHE_MIN_CHARS:
        return estimate_tokens(content) + MESSAGE_OVERHEAD
    key = (hash(content), len(content))
    tokens = _counted.get(key)
    if tokens is None:
        tokens = _counted[key] = estimate_tokens(content)
        if len(_counted) > _CACHE_ENTRIES:
            del _counted[next(iter(_counted))]  # the oldest count: insertion order
    return tokens + MESSAGE_OVERHEAD
