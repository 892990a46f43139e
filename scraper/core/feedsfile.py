"""feeds.yaml as YAML text: its loading, strict about repeated keys (``load_yaml``), and its
edits: feeds appended (``scrape opml import``), a feed renamed (``scrape feeds rename``).

An edit leaves the file the user's: its comments, order, quoting and layout stay.  So
nothing is dumped through a YAML writer (PyYAML's drops every comment); the places to edit
come from ``yaml.compose``, whose nodes know where they start and end in the text, and only
those places change.  The caller loads the result with the config loader and compares it with
what it meant before writing anything.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml

#: Names made from titles are cut here: long enough for a site's name and a channel.
MAX_SLUG = 60


@dataclass(frozen=True)
class NewFeed:
    name: str
    url: str
    categories: tuple[str, ...] = ()


def slug(text: str) -> str:
    """A feed name from a title: NFKC, case-folded, runs of anything but letters and digits
    (of any script: ``IT之家`` stays ``it之家``) made one ``-``."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", "-", folded).strip("-")[:MAX_SLUG].strip("-")


def unique_name(title: str, url: str, taken: set[str]) -> str:
    """``slug(title)`` (else the URL's host, else ``feed``), with ``-2``, ``-3``... when
    taken; the name is added to ``taken``."""
    base = slug(title) or slug(urlsplit(url).hostname or "") or "feed"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


# -- loading ---------------------------------------------------------------------------------

class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping: PyYAML keeps the last one without a word, which
    dropped a whole ``feeds:`` block (and ``scrape feeds prune`` then deleted its data)."""

    def __init__(self, key: object, line: int, first_line: int, where: str) -> None:
        super().__init__(f"line {line}: duplicate key {key!r}")
        self.key, self.line, self.first_line, self.where = key, line, first_line, where


#: libyaml when PyYAML has it: load_config of 2,000 feeds in 102 ms of CPU, not 530.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml(text: str) -> object:
    """The document, after :func:`_check_duplicates` has seen every mapping of it.

    The check walks the composed nodes rather than overriding ``construct_mapping``: the
    constructor flattens ``<<`` merges in place, sometimes before the merged mapping is
    constructed itself, and a key that overrides a merged one would then look repeated.
    """
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_duplicates(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Raise DuplicateKeyError for a key repeated in one mapping of ``root``'s tree.

    Each mapping is named as the config errors name it (``feeds[1] 'b'``, ``fetch``).  A
    ``<<`` merge is not a repetition (a key beside it overrides the merged one), and an
    alias is checked once, where its anchor is, which also ends recursive aliases.  A stack,
    not recursion: libyaml allows 1,000 levels of nesting, Python's recursion limit fewer.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(item, f"{where}[{index}]{_name_of(item)}")
                        for index, item in enumerate(node.value)]
        first: dict[object, int] = {}
        for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == _MERGE_TAG:
                children.append((value_node, where))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a mapping as a key: the constructor refuses it (unhashable)
            # Constructed, so that spellings of one key compare equal (url, "url", 'url').
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                raise DuplicateKeyError(key, line, first[key], where)
            first[key] = line
            children.append((value_node, _inside(where, key)))
        stack.extend(reversed(children))  # the file's first repetition is the one reported


def _inside(where: str, key: object) -> str:
    """The path of ``key`` in the mapping at ``where``: ``fetch.timeout``, and after a list
    item ``feeds[1] 'b': rules``, as the validation errors write them."""
    if not where:
        return str(key)
    after_item = where.endswith(("]", "'"))
    return f"{where}{': ' if after_item else '.'}{key}"


def _name_of(node: yaml.Node) -> str:
    """`` 'name'`` of a list item that has a ``name:`` (a feed), as errors show a feed."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if (isinstance(key_node, yaml.ScalarNode) and key_node.value == "name"
                    and isinstance(value_node, yaml.ScalarNode) and value_node.value):
                return f" '{value_node.value}'"
    return ""


# -- YAML text --------------------------------------------------------------------------------

#: Characters JSON leaves raw that a YAML reader refuses (C1 controls, non-characters) or
#: reads as line breaks (NEL, LS, PS): escaped, so that a hostile title cannot change the
#: value or break the file.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _json(value: object) -> str:
    """JSON text that is also safe YAML flow text (JSON is nearly a subset of YAML 1.2)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}",
                       json.dumps(value, ensure_ascii=False))


def quote(text: str) -> str:
    """A YAML double-quoted scalar."""
    return _json(text)


def _feeds_node(text: str) -> tuple[yaml.Node, yaml.Node]:
    """The ``feeds`` key node and its value node; ValueError when there is none."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "feeds":
                return key, value
    raise ValueError("no 'feeds:' list at the top level")


def _last_index(node: yaml.Node) -> int:
    """Where the node's last character ends in the text."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    children: Iterable[yaml.Node]
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = node.value
    return max((_last_index(child) for child in children), default=node.start_mark.index)


def append_feeds(text: str, feeds: Sequence[NewFeed], comment: str = "") -> str:
    """``text`` with ``feeds`` added at the end of its ``feeds:`` list, in the list's own
    style and indentation; ``comment`` (one line) heads the block of a block list."""
    if not feeds:
        return text
    key, node = _feeds_node(text)
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError("'feeds:' is not a list")
    newline = "\r\n" if "\r\n" in text else "\n"
    if node.flow_style and node.value:  # feeds: [{...}, {...}]: more of the same
        close = node.end_mark.index - 1
        items = "".join(", " + _json(_mapping(f)) for f in feeds)
        return text[:close].rstrip() + items + text[close:]
    if node.flow_style:  # feeds: []  ->  feeds:  followed by a block list
        dash = key.start_mark.column + 2
        keys = dash + 2
        before = text[:node.start_mark.index].rstrip(" \t")
        text = before + text[node.end_mark.index:]
        after = len(before)
    else:
        dash = node.start_mark.column
        first = node.value[0]
        keys = (first.start_mark.column if isinstance(first, yaml.MappingNode)
                and not first.flow_style else dash + 2)
        after = _last_index(node.value[-1])
    end = text.find("\n", after)
    lines = [" " * dash + "# " + comment] if comment else []
    for feed in feeds:
        lines.append(" " * dash + "- " + " " * (keys - dash - 2) + f"name: {quote(feed.name)}")
        lines.append(" " * keys + f"url: {quote(feed.url)}")
        if feed.categories:
            lines.append(" " * keys + "categories: ["
                         + ", ".join(quote(c) for c in feed.categories) + "]")
    block = newline.join(lines) + newline
    if end < 0:  # the list ends the file, without a final newline
        return text + newline + block
    return text[:end + 1] + block + text[end + 1:]


def _mapping(feed: NewFeed) -> dict[str, object]:
    data: dict[str, object] = {"name": feed.name, "url": feed.url}
    if feed.categories:
        data["categories"] = list(feed.categories)
    return data


def rename_feed(text: str, old: str, new: str) -> str:
    """``text`` with the ``name:`` of the feed named ``old`` set to ``new`` (quoted); only
    that scalar changes.  ValueError when no feed has that name."""
    _, node = _feeds_node(text)
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            for key, value in item.value:
                if (isinstance(key, yaml.ScalarNode) and key.value == "name"
                        and isinstance(value, yaml.ScalarNode) and value.value.strip() == old):
                    return (text[:value.start_mark.index] + quote(new)
                            + text[value.end_mark.index:])
    raise ValueError(f"no feed named {old!r} in the 'feeds:' list")
