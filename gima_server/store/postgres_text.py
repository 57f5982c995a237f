"""Text as the PostgreSQL store writes it: storable (no NUL) and folded for search."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """What search compares: lower case without diacritics ("Café" → "cafe"), as SQLite's unicode61
    remove_diacritics tokenizer does; done here so PostgreSQL needs no extension (unaccent)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def storable(text: str) -> str:
    """PostgreSQL's text cannot hold NUL; clients' NULs are refused at the door, an upstream's are replaced."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
