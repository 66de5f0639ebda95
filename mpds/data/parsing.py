"""Parsing of the raw MPDS CSV cells.

The release writes list and dict columns in several ways (Python literals, JSON, or separated
strings); every parser here accepts all of them and never evaluates code: Python literals go
through `ast.literal_eval`, which only builds constants.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from typing import Any, Optional

EMPTY_MARKERS = {"", "nan", "none", "null", "n/a", "na", "[]", "{}", "()"}
_SEPARATORS = re.compile(r"\s*[|;]\s*")
_URL = re.compile(r"https?://\S+")
# Between URLs: white space, `|`, or `,`/`;` before the next scheme (CDN URLs have commas inside).
_URL_SEPARATORS = re.compile(r"[\s|]+|[,;](?=\s*[A-Za-z][A-Za-z0-9+.\-]*://)")
_PERSON_ID = re.compile(r"/name/nm0*(\d+)")
_TITLE_ID = re.compile(r"/title/tt0*(\d+)")


class CellError(ValueError):
    """A CSV cell that cannot be read as the type its column needs."""


def normalize_header(name: str) -> str:
    """`'Actors Name'`, `'actors_name'` and `'actors-name'` all become `'actors-name'`."""
    return re.sub(r"[\s_\-]+", "-", name.strip().lower())


def is_empty(cell: Optional[str]) -> bool:
    return cell is None or cell.strip().lower() in EMPTY_MARKERS


def clean_text(cell: Optional[str]) -> Optional[str]:
    """Unicode-normalised text with collapsed white space, or None for an empty cell."""
    if is_empty(cell):
        return None
    text = cell if cell.isascii() else unicodedata.normalize("NFKC", cell)
    return " ".join(text.split()) or None


def parse_id(cell: Optional[str]) -> int:
    """A positive integer id; `'2024'`, `'2024.0'` and `'tt0002024'` are all 2024."""
    if cell is None:
        raise CellError("id is empty")
    text = cell.strip()
    match = re.fullmatch(r"(?:tt|nm)?0*(\d+)(?:\.0+)?", text)
    if not match or int(match.group(1)) <= 0:
        raise CellError(f"id {cell!r} is not a positive integer")
    return int(match.group(1))


def _literal(cell: str) -> Any:
    """A JSON or Python-literal container, or None when the cell is neither."""
    text = cell.strip()
    if not text or text[0] not in "[{(":
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise CellError(f"cell {cell[:80]!r} looks like a list or dict but does not parse") from None


def parse_list(cell: Optional[str]) -> list[str]:
    """A list of strings from `"['Drama', 'Crime']"`, `'["Drama"]'`, `'Drama|Crime'` or `'Drama, Crime'`."""
    if is_empty(cell):
        return []
    value = _literal(cell)
    if value is None:
        separator = _SEPARATORS if _SEPARATORS.search(cell) else re.compile(r"\s*,\s*")
        value = separator.split(cell.strip())
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise CellError(f"cell {cell[:80]!r} is not a list")
    items = [clean_text(str(item)) for item in value if item is not None]
    return [item for item in items if item]


def parse_url_list(cell: Optional[str]) -> list[str]:
    """The URLs of an `image-url` cell: a JSON or Python list, or URLs separated by white space, `|`,
    or `,`/`;` before the next scheme.

    `parse_list` would split a bare URL at its commas, and image-CDN URLs have commas
    (`..._V1_UX380_CR0,0,380,562_.jpg`), so a cell that is not a list is split only where a URL ends.
    """
    text = (cell or "").strip()
    if not text:
        return []
    if text[0] in "[{(":
        return parse_list(text)
    return [part for part in _URL_SEPARATORS.split(text) if part]


def person_id_from_url(url: Optional[str]) -> Optional[int]:
    """The numeric id in an IMDb-style person URL (`.../name/nm0002024/` is 2024), else None."""
    match = _PERSON_ID.search(url or "")
    return int(match.group(1)) if match else None


def title_id_from_url(url: Optional[str]) -> Optional[int]:
    match = _TITLE_ID.search(url or "")
    return int(match.group(1)) if match else None


def _cast_member(name: Any, url: Any) -> Optional[dict]:
    name = clean_text(str(name)) if name is not None else None
    url = clean_text(str(url)) if url is not None else None
    if not name:
        return None
    return {"id": person_id_from_url(url), "name": name, "url": url}


def parse_cast(cell: Optional[str]) -> list[dict]:
    """The cast as `[{'id', 'name', 'url'}, ...]`, in billing order.

    Accepts a name->url dict (JSON or Python literal), a list of names or of `[name, url]`
    pairs, or a separated string whose items are `name`, `name: url`, `name=url` or `name (url)`.
    """
    if is_empty(cell):
        return []
    value = _literal(cell)
    members = []
    if isinstance(value, dict):
        members = [_cast_member(name, url) for name, url in value.items()]
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, dict):
                members.append(_cast_member(item.get("name"), item.get("url")))
            elif isinstance(item, (list, tuple)) and item:
                members.append(_cast_member(item[0], item[1] if len(item) > 1 else None))
            else:
                members.append(_cast_member(item, None))
    elif value is None:
        separator = _SEPARATORS if _SEPARATORS.search(cell) else re.compile(r"\s*,\s*(?![^()]*\))")
        for item in separator.split(cell.strip()):
            url_match = _URL.search(item)
            url = url_match.group(0).rstrip(")") if url_match else None
            name = _URL.sub("", item).strip(" :=()\t") if url_match else item
            members.append(_cast_member(name, url))
    else:
        raise CellError(f"cell {cell[:80]!r} is not a cast list or dict")
    return [member for member in members if member]


def split_name(genre: str) -> str:
    """The split of a genre: lowercase, every non-word character turned into `_` (`Sci-Fi` -> `sci_fi`)."""
    return re.sub(r"\W", "_", genre.strip().lower())
