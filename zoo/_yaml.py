"""Safe YAML loading that remembers where every value was written.

PyYAML composes the node tree (no Python object is ever constructed from a tag), from libyaml's
parser events where PyYAML has them (``_FastComposer``: the same tree, about 15 times faster);
this module turns it into plain dicts and lists that carry their source positions (``YMap``/``YList``), so any
later stage can point an error at ``file:line:col``. It rejects what a data file has no business
containing: non-standard tags, duplicate keys, alias bombs, absurd nesting and non-UTF-8 bytes.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from ._errors import Location, SchemaError
from ._files import MAX_BYTES, read_file

__all__ = ["MAX_BYTES", "YList", "YMap", "load_yaml", "loc_of", "located_map", "parse_yaml"]

MAX_NODES = 200_000  # values after alias expansion; a real architecture file has a few thousand
MAX_DEPTH = 64  # nesting depth; real files stay under 20

_STR = "tag:yaml.org,2002:str"
_PLAIN_SCALAR_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}
_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class YMap(dict[str, Any]):
    """A mapping from a YAML file, with the location of itself and of each key."""

    loc: Location | None
    key_locs: dict[str, Location]
    # the keys whose values are not plain scalars (lists, mappings, text holding '${'), set by the
    # parser, which sees every value; None for a mapping made later ("not known"). Evaluating the
    # expressions of a mapping only needs to look at these.
    dyn: tuple[str, ...] | None

    def __init__(self, *args: Any, loc: Location | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loc = loc
        self.key_locs = {}
        self.dyn = None


_new_dict = dict.__new__


def located_map(values: dict[str, Any], loc: Location | None, key_locs: dict[str, Location]) -> YMap:
    """``YMap(values, loc=loc)`` with ``key_locs``, made without the Python ``__init__`` (half the
    time: the parser and every evaluation of a layer's arguments make one)."""
    out: YMap = _new_dict(YMap)
    dict.update(out, values)
    out.__dict__.update(loc=loc, key_locs=key_locs, dyn=None)
    return out


class YList(list[Any]):
    """A sequence from a YAML file, with the location of itself and of each item."""

    loc: Location | None
    item_locs: list[Location | None]
    flat: bool  # every item a plain scalar (see YMap.dyn); False when not known

    def __init__(self, *args: Any, loc: Location | None = None) -> None:
        super().__init__(*args)
        self.loc = loc
        self.item_locs = []
        self.flat = False


def loc_of(container: Any, key: Any = None) -> Location | None:
    """Location of ``container[key]`` (or of the container itself when key is None)."""
    if key is None:
        return getattr(container, "loc", None)
    if isinstance(container, YMap):
        value = container.get(key)
        return getattr(value, "loc", None) or container.key_locs.get(key) or container.loc
    if isinstance(container, YList) and isinstance(key, int) and 0 <= key < len(container):
        value = container[key]
        inner = getattr(value, "loc", None)
        return inner or (container.item_locs[key] if key < len(container.item_locs) else None)
    return getattr(container, "loc", None)


_new = object.__new__


def _location(file: str, node: Node) -> Location:
    """``Location(file, line, column)`` of the node, made without the frozen dataclass's
    ``__init__`` (which sets each field through ``object.__setattr__``; three times slower): a
    parse makes one per value, 16,000 for the shipped files. The result is an ordinary Location."""
    mark = node.start_mark
    loc: Location = _new(Location)
    loc.__dict__.update(file=file, line=mark.line + 1, column=mark.column + 1)
    return loc


_LIBYAML = yaml.__with_libyaml__  # False when PyYAML was built without it: the Python parser does it all
# Where libyaml reads a text PyYAML refuses, or places an empty value a column apart, found by
# comparing the two on mutated architecture files: tabs, '?', tags, and empty flow entries
# (``[1, , 2]``, ``{a: }``). Such a text goes to the pure-Python parser, whatever it holds.
_DIVERGES = re.compile(r"[\t?]|[,:]\s*[,\]}]|[\[{]\s*,")


class _Unsure(yaml.YAMLError):
    """libyaml met something it may read otherwise than PyYAML (a tag): PyYAML decides."""


class _FastComposer(Composer, Resolver):
    """PyYAML's own composer and resolver (Python, so a deeply nested file ends in RecursionError
    rather than in libyaml's C recursion overflowing the stack) over libyaml's parser events."""

    def __init__(self, text: str) -> None:
        from yaml._yaml import CParser  # present when PyYAML has libyaml

        self._parser = CParser(text)
        Composer.__init__(self)
        Resolver.__init__(self)

    def check_event(self, *choices: Any) -> bool:
        return bool(self._parser.check_event(*choices))

    def peek_event(self) -> Any:
        return self._parser.peek_event()

    def get_event(self) -> Any:
        event = self._parser.get_event()
        if getattr(event, "tag", None) is not None:  # libyaml takes '[!3, 4]' as a tagged empty value
            raise _Unsure("explicit tag")
        return event


@functools.cache
def _compiled_composer() -> Any:
    """libyaml's parser with PyYAML's composer compiled in (``yaml.CSafeLoader`` without the
    constructor): about twice as fast again, for texts with no node properties and no deep nesting."""
    from yaml._yaml import CParser  # present when PyYAML has libyaml

    class CComposer(CParser, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Resolver.__init__(self)

    return CComposer


# A node property, where libyaml and PyYAML may disagree (the event composer sees the tag and lets
# PyYAML decide; the compiled one cannot): '!' where a node starts (line start, after '- ', ': ',
# '? ', '[', '{', ','), or an anchor '&name' (a tag may follow it).
_PROPERTY = re.compile(r"(?:^|[\[{,:?\-])[ \t]*!|&\S", re.M)
# The compiled composer recurses in C, about 300 bytes of stack per nesting level (an overflow
# ends the process, not in a RecursionError): only texts with few enough collection indicators
# ('-', ':', '?', '[', '{': each nesting level needs one) go to it, and only on the main thread,
# whose stack is the process's (8 MiB; a thread's may be 512 KiB). The largest shipped file has
# about 540 indicators.
_C_MAX_INDICATORS = 1000


def _compiled_composable(text: str) -> bool:
    indicators = text.count("-") + text.count(":") + text.count("[") + text.count("{") + text.count("?")
    return (
        indicators <= _C_MAX_INDICATORS and not _PROPERTY.search(text)
        and threading.current_thread() is threading.main_thread()
    )


def _compose(text: str) -> Node | None:
    """The document's node tree, as ``yaml.SafeLoader`` composes it (a test compares the two on
    every shipped file, the bad-input corpus and mutations of them). A text libyaml rejects or
    may read differently goes to the pure-Python parser, whose messages and positions the errors
    (and the bad-input corpus) are written against."""
    if _LIBYAML and not _DIVERGES.search(text) and not yaml.reader.Reader.NON_PRINTABLE.search(text):
        try:
            if _compiled_composable(text):
                return _compiled_composer()(text).get_single_node()  # type: ignore[no-any-return]
            return _FastComposer(text).get_single_node()
        except yaml.YAMLError:
            pass  # the pure-Python parse below decides: its error, or its tree where it is more lenient
    return yaml.compose(text, Loader=yaml.SafeLoader)


class _Builder:
    """Turns a composed node tree into YMap/YList/scalars, enforcing the limits."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # used only for its scalar resolvers

    def build(self, node: Node, depth: int = 0, loc: Location | None = None) -> Any:
        """The node's value; ``loc`` is its location when the caller has made it already."""
        if loc is None:
            loc = _location(self.file, node)
        self.count += 1
        if self.count > MAX_NODES:
            raise SchemaError(
                f"file expands to more than {MAX_NODES} values "
                "(an alias/anchor bomb or a generated file far beyond any real architecture)",
                location=loc,
            )
        if depth > MAX_DEPTH:
            raise SchemaError(f"nesting deeper than {MAX_DEPTH} levels", location=loc)
        if node.tag == "tag:yaml.org,2002:merge":
            raise SchemaError("YAML merge keys ('<<') are not supported: write the keys out", location=loc)
        if node.tag == "tag:yaml.org,2002:timestamp" and isinstance(node, ScalarNode):
            return node.value  # dates stay text: nothing in a zoo file is a datetime
        if node.tag not in _STANDARD_TAGS:
            raise SchemaError(
                f"YAML tag {node.tag!r} is not allowed: architecture and recipe files hold plain "
                "data (mappings, lists, strings, numbers, booleans), never Python objects",
                location=loc,
            )
        if isinstance(node, ScalarNode):
            if node.tag == _STR:  # most scalars: the text itself, as the constructor would give it
                return node.value
            if node.tag in _PLAIN_SCALAR_TAGS:
                # the tag's own constructor, without construct_object's bookkeeping for shared
                # nodes (which a number, immutable once built, does not need)
                try:
                    return self.constructor.yaml_constructors[node.tag](self.constructor, node)
                except (ValueError, KeyError):  # an explicit tag on text that is not one: '!!int x'
                    kind = node.tag.rsplit(":", 1)[-1]
                    raise SchemaError(f"invalid YAML value: {node.value!r} is not a YAML {kind}", location=loc) from None
            return self.constructor.construct_object(node, deep=True)  # e.g. '!!map text': its error
        if isinstance(node, SequenceNode):
            out = YList(loc=loc)
            for item in node.value:
                item_loc = _location(self.file, item)
                out.append(self.build(item, depth + 1, item_loc))
                out.item_locs.append(item_loc)
            out.flat = all(map(_flat, out))
            return out
        if isinstance(node, MappingNode):
            result = located_map({}, loc, {})
            for key_node, value_node in node.value:
                key_loc = _location(self.file, key_node)
                key = self.build(key_node, depth + 1, key_loc)
                if not isinstance(key, (str, int, float, bool)) or isinstance(key, (YMap, YList)):
                    raise SchemaError("mapping keys must be plain scalars", location=key_loc)
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    first = result.key_locs[key]
                    raise SchemaError(
                        f"duplicate key {key!r} (first written at line {first.line})",
                        location=key_loc,
                    )
                result[key] = self.build(value_node, depth + 1)
                result.key_locs[key] = key_loc
            result.dyn = tuple(k for k, v in result.items() if not _flat(v))
            return result
        raise SchemaError(f"unsupported YAML node {type(node).__name__}", location=loc)


def _flat(value: Any) -> bool:
    """A scalar, and no '${' in it."""
    return "${" not in value if isinstance(value, str) else not isinstance(value, (YMap, YList))


def parse_yaml(text: str | bytes, file: str = "<string>") -> Any:
    """Parse one YAML document into located plain data; every failure is a SchemaError."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SchemaError(f"file is larger than {MAX_BYTES} bytes", location=Location(file, 1, 1))
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise SchemaError(
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                location=Location(file, line, 1),
            ) from None
    if len(text) > MAX_BYTES:
        raise SchemaError(f"file is larger than {MAX_BYTES} bytes", location=Location(file, 1, 1))
    _check_flow_depth(text, file)
    try:
        node = _compose(text)
    except yaml.reader.ReaderError as exc:  # a NUL or other control character: no mark, a position
        raise SchemaError(
            f"invalid YAML: control character U+{_codepoint(exc.character):04X} is not allowed in a YAML file",
            location=_position(file, text, exc.position),
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        raise SchemaError(f"invalid YAML: {exc.problem or exc.context}", location=loc) from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"invalid YAML: {exc}", location=Location(file, 1, 1)) from None
    except RecursionError:
        raise SchemaError(f"nesting deeper than {MAX_DEPTH} levels", location=_too_deep(file, text)) from None
    if node is None:
        raise SchemaError("file is empty", location=Location(file, 1, 1))
    try:
        return _Builder(file).build(node)
    except RecursionError:
        raise SchemaError(f"nesting deeper than {MAX_DEPTH} levels", location=_too_deep(file, text)) from None
    except yaml.YAMLError as exc:  # a scalar the resolvers reject (e.g. a bad timestamp)
        raise SchemaError(f"invalid YAML value: {exc}", location=Location(file, 1, 1)) from None


def _check_flow_depth(text: str, file: str) -> None:
    """Flow brackets nested past MAX_DEPTH, found in one linear pass: PyYAML's scanner is
    quadratic in flow depth (a 5,000-deep ``[[[...]]]`` takes seconds) before its composer's
    recursion fails. Quoted text and comments are skipped; a bracket inside a plain scalar is
    counted, which only matters for a value holding 64 unclosed brackets."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # every real file: nothing to scan
    depth = 0
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote or (ch == "\n" and quote == "#"):
                quote = ""
        elif ch in "'\"" or (ch == "#" and (i == 0 or text[i - 1] in " \t\n")):
            quote = "#" if ch == "#" else ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SchemaError(f"nesting deeper than {MAX_DEPTH} levels", location=_position(file, text, i))
        elif ch in "]}":
            depth = max(depth - 1, 0)


def _codepoint(character: int | str) -> int:
    return character if isinstance(character, int) else ord(character[:1] or "\0")


def _position(file: str, text: str, offset: int) -> Location:
    before = text[:offset]
    return Location(file, before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


_OPEN = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _too_deep(file: str, text: str) -> Location:
    """Where nesting first passes MAX_DEPTH, found by the (iterative) scanner after the recursive
    composer gave up, so a 5,000-deep flow sequence is reported where it is, not at 1:1."""
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            depth += isinstance(token, _OPEN) - isinstance(token, _CLOSE)
            if depth > MAX_DEPTH:
                return Location(file, token.start_mark.line + 1, token.start_mark.column + 1)
    except yaml.YAMLError:
        pass  # a later syntax error: the depth was found first or not at all
    return Location(file, 1, 1)


def load_yaml(path: str | Path) -> Any:
    """Read (see read_file) and parse a YAML file (see parse_yaml)."""
    return parse_yaml(read_file(path), str(path))
