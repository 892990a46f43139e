"""A feed's DOCTYPE: removed, and the internal entities it declares expanded within a bound.

Left to them, feedparser and lxml expand an entity declared once and referenced thousands of
times to gigabytes (expat blocks only the nested billion laughs); refusing every DOCTYPE that
declares entities lost every entry of a feed that declares ``&nbsp;`` or ``&eacute;`` this
way (issue 16).  External entities are never resolved.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.parsers import expat

_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", re.DOTALL | re.IGNORECASE)


class DoctypeRefused(Exception):
    """The DOCTYPE asks for more expansion than we allow; the message is the summary line."""


#: Characters that expanding a document's internal entities may produce in all: "a small
#: limit such as 64 KiB" (issue 16).  Feeds declare entities for single characters (&nbsp;,
#: &eacute;), so thousands of references fit; the bombs (billion laughs; one 50 KB entity
#: referenced 100,000 times) overshoot it within a few references and are refused before
#: anything big is built.
_MAX_EXPANSION = 64 * 1024
#: Entities inside entities: a DTD written for a feed nests one or two levels; the cap keeps
#: a long chain (a -> b -> c ...) far below Python's recursion limit of 1,000.
_MAX_NESTING = 16
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
#: In the document: a reference, or a section whose references are plain text (CDATA,
#: comments, processing instructions), matched so that it is skipped whole.
_DOCUMENT_REF = re.compile(r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<\?.*?\?>|&([^\s&;#<>\"']+);",
                           re.DOTALL)
#: In an entity's replacement text: character references count too (``&#38;#38;`` declares
#: a text that is itself a reference).
_VALUE_REF = re.compile(r"&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[^\s&;#<>\"']+);")
#: Where feedparser's replace_doctype ends the head it takes ENTITY declarations from.
_FIRST_ELEMENT = re.compile(rb"<\w")


class _RootReached(Exception):
    """Raised from expat's handler at the root element: the prolog has been read."""


@dataclass(frozen=True)
class _Doctype:
    start: int  # byte offsets of the whole declaration in the document
    end: int
    #: Every general entity declared: its replacement text, or None when it is external
    #: (SYSTEM/PUBLIC, or unparsed) and so is never read.
    entities: dict[str, str | None]


def expand_doctype(body: bytes) -> bytes:
    """The document without its DOCTYPE internal subset, and its internal entities expanded.

    expat reads the declarations (it never fetches or opens anything, not being given an
    external-entity handler); each reference in the document is then replaced by its
    replacement text, expanded and escaped as text, so a replacement containing markup reads
    as characters and cannot change the document's structure.  External entities expand to
    nothing; an undeclared name is left as it was.  Expansion past :data:`_MAX_EXPANSION`,
    nesting past :data:`_MAX_NESTING` or a loop is refused with a DoctypeRefused.
    """
    if b"<!DOCTYPE" not in body:  # XML spells it in capitals; so does feedparser's pattern
        return body
    doctype = _read_doctype(body)
    if doctype is not None:
        rest = body[doctype.end:]
        if doctype.entities:
            rest = _expand_references(rest.decode("utf-8", "replace"),
                                      doctype.entities).encode("utf-8")
        body = body[:doctype.start] + rest
    # Whatever expat could not read: feedparser collects ENTITY declarations from the head by
    # regular expression and expands them in its loose parser, unbounded.
    first = _FIRST_ELEMENT.search(body)
    if b"<!ENTITY" in body[: first.start() if first else len(body)].upper():
        raise DoctypeRefused("refused: entity declarations outside a readable DOCTYPE "
                         "(entity-expansion guard)")
    return body


def _read_doctype(body: bytes) -> _Doctype | None:
    """The DOCTYPE before the root element, when it has an internal subset; else None."""
    # expat refuses whitespace before an XML declaration, which some feeds send.
    lead = len(body) - len(body.lstrip())
    parser = expat.ParserCreate()
    spans: dict[str, int] = {}
    entities: dict[str, str | None] = {}

    def start(_name: str, _sysid: str | None, _pubid: str | None, subset: int) -> None:
        if subset:  # expat is at the "[": the declaration starts at the last <!DOCTYPE
            found = body.rfind(b"<!DOCTYPE", 0, lead + parser.CurrentByteIndex + 1)
            if found >= 0:
                spans["start"] = found

    def end() -> None:
        if "start" in spans:
            spans["end"] = lead + parser.CurrentByteIndex + 1  # expat is at the closing ">"

    def entity(name: str, is_parameter: int, value: str | None, *_rest: object) -> None:
        if not is_parameter:  # parameter entities only serve the DTD, which is dropped
            entities.setdefault(name, value)  # the first declaration binds (XML 1.0, 4.2)

    def root(*_args: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = start
    parser.EndDoctypeDeclHandler = end
    parser.EntityDeclHandler = entity
    parser.StartElementHandler = root
    try:
        for offset in range(lead, len(body), 65536):
            parser.Parse(body[offset:offset + 65536], False)
        parser.Parse(b"", True)
    except _RootReached:
        pass
    except expat.ExpatError:
        if "end" not in spans:
            # A prolog expat cannot read: remove a subset that declares no entities, as
            # before; one that does stays, and expand_doctype refuses the document.
            first = _FIRST_ELEMENT.search(body)
            m = _DOCTYPE_SUBSET.search(body, 0, first.start() if first else len(body))
            if m and b"<!ENTITY" not in m.group(1).upper():
                return _Doctype(m.start(), m.end(), {})
            return None
    if "end" not in spans:
        return None
    return _Doctype(spans["start"], spans["end"], entities)


def _expand_references(text: str, entities: Mapping[str, str | None]) -> str:
    """``text`` with each reference to a declared entity replaced, within the budget."""
    memo: dict[str, str] = {}
    spent = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal spent
        name = m.group(1)
        if name is None or name not in entities:
            return m.group(0)  # a CDATA section, comment or PI; a predefined or unknown name
        value = _entity_text(name, entities, memo, ())
        spent += len(value)
        if spent > _MAX_EXPANSION:
            raise _too_big()
        return html.escape(value)

    return _DOCUMENT_REF.sub(replace, text)


def _entity_text(name: str, entities: Mapping[str, str | None], memo: dict[str, str],
                 within: tuple[str, ...]) -> str:
    """An entity's replacement text with the references in it expanded, as characters."""
    if name in memo:
        return memo[name]
    if name in within:
        raise DoctypeRefused(f"refused: entity '{name[:40]}' refers to itself "
                         "(entity-expansion guard)")
    if len(within) >= _MAX_NESTING:
        raise DoctypeRefused(f"refused: entities nested more than {_MAX_NESTING} deep "
                         "(entity-expansion guard)")
    value = entities[name] or ""  # an external entity expands to nothing
    pieces: list[str] = []
    size = pos = 0
    for m in _VALUE_REF.finditer(value):
        ref = m.group(1)
        if ref.startswith("#"):
            code = int(ref[2:], 16) if ref[1] == "x" else int(ref[1:])
            piece = chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else ""
        elif ref in _PREDEFINED:
            piece = _PREDEFINED[ref]
        elif ref in entities:
            piece = _entity_text(ref, entities, memo, (*within, name))
        else:
            piece = m.group(0)
        pieces += [value[pos:m.start()], piece]
        size += m.start() - pos + len(piece)
        if size > _MAX_EXPANSION:
            raise _too_big()
        pos = m.end()
    pieces.append(value[pos:])
    memo[name] = text = "".join(pieces)
    if len(text) > _MAX_EXPANSION:
        raise _too_big()
    return text


def _too_big() -> DoctypeRefused:
    return DoctypeRefused(f"refused: the DOCTYPE's entities expand to more than {_MAX_EXPANSION:,} "
                      "characters (entity-expansion guard)")
