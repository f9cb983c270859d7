"""Structured outputs: a request's ``format`` (``"json"`` or a JSON schema) as a llama.cpp grammar.

Converted in the server process, before a request is queued, so a schema the converter
cannot express is refused (400) instead of reaching a runner; the runner only compiles GBNF.

The converter is llama-cpp-python's (`llama_cpp.llama_grammar.json_schema_to_gbnf`, a copy of
llama.cpp's json-schema-to-grammar.py). It does not say what it cannot do: it drops keywords it
does not know (``minimum``, ``uniqueItems``, an unknown string ``format`` …), keywords next to a
``$ref`` or ``anyOf``, and ``required`` names missing from ``properties``, and the answer is then
silently less constrained than the schema asked. So `check_schema` walks the schema first and
accepts exactly what the converter honours (the table below), ignores purely descriptive
keywords, and refuses everything else with a `SchemaError` naming the keyword and its JSON
pointer. It also hands the converter a normalised copy, working around three of its quirks:

- ``{}`` / ``true`` (any value) would become "any *object*": it becomes a union of all types;
- a definition's rule is named after its bare name, so a ``$defs`` entry called ``string`` or
  ``space`` would silently reuse a built-in rule: definitions are renamed ``ref--<name>``;
- its ``char`` rule lets control characters into strings (invalid JSON); the GBNF gets
  llama.cpp's current rule, which excludes them (as `JSON_GBNF` does).

What is honoured, by schema kind:

=========  ===============================================================================
any        ``type`` (one, or a list without other keywords), ``enum``, ``const``,
           ``anyOf``/``oneOf`` (``oneOf`` as ``anyOf``: exclusivity is not enforced),
           ``allOf`` with one subschema, ``$ref`` to ``#/$defs/<name>`` or
           ``#/definitions/<name>`` (recursion included), ``$defs``/``definitions``
object     ``properties``, ``required`` (names in ``properties``), ``additionalProperties``
           (``false``, ``true`` or a schema; absent counts as ``false``, which only narrows)
array      ``items`` (one schema, or a list: a tuple), ``prefixItems``, ``minItems``, ``maxItems``
string     ``minLength``, ``maxLength``, ``pattern`` (anchored ``^…$``), ``format`` (``date``,
           ``time``, ``date-time``, ``uuid``), one of these four at a time
=========  ===============================================================================
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

DESCRIPTIVE = frozenset(
    {
        "title",
        "description",
        "examples",
        "example",
        "default",
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
    }
)
"""Annotations: they do not constrain an instance, so the grammar may ignore them."""

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
STRING_FORMATS = ("date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5")

_OBJECT = frozenset({"properties", "required", "additionalProperties"})
_ARRAY = frozenset({"items", "prefixItems", "minItems", "maxItems"})
_STRING = frozenset({"pattern", "format", "minLength", "maxLength"})
_BY_TYPE = {"object": _OBJECT, "array": _ARRAY, "string": _STRING}
_GENERIC = frozenset(
    {"type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf", "$defs", "definitions"}
)
_KNOWN = _GENERIC | _OBJECT | _ARRAY | _STRING
_ANY: dict[str, Any] = {"type": ["object", "array", "string", "number", "boolean", "null"]}
_REF = re.compile(r"#/(\$defs|definitions)/([^/~]+)")
_CANNOT = "the grammar cannot enforce it; remove it or validate after decoding"
# The converter's string character rule admits control characters (invalid in JSON strings);
# llama.cpp's current json-schema-to-grammar excludes them, as JSON_GBNF does.
_CHAR_RULE = re.compile(r'^char ::= \[\^"\\\\\] \|.*$', re.MULTILINE)
_JSON_CHAR_RULE = (
    r'char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)
CACHE_SIZE = 256


class SchemaError(ValueError):
    """A JSON schema mfc cannot turn into a grammar; names the keyword and where it is.

    ``pointer`` is a JSON pointer into the request's schema ("" for its root).
    """

    def __init__(self, message: str, *, keyword: str = "", pointer: str = ""):
        super().__init__(message)
        self.keyword = keyword
        self.pointer = pointer


def grammar_for(fmt: str | Mapping[str, Any] | bool | None) -> str | None:
    """GBNF for a request's ``format``: ``"json"`` (any JSON value), a JSON schema, or None."""
    if fmt is None:
        return None
    if fmt == "json":
        from llama_cpp.llama_grammar import JSON_GBNF

        return str(JSON_GBNF)
    if not isinstance(fmt, Mapping):
        raise SchemaError(f'format must be "json" or a JSON schema object, not {fmt!r}')
    # Property order matters (the grammar emits properties in schema order): no sort_keys.
    return _grammar_for_text(json.dumps(fmt, ensure_ascii=False))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _grammar_for_text(text: str) -> str:
    """One conversion per distinct schema text: clients send the same schema every request,
    and converting a nested schema costs milliseconds of the server's event loop."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = check_schema(json.loads(text))
    try:
        gbnf = str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises bare exceptions (e.g. on a regex it can't do)
        raise SchemaError(f"the JSON schema cannot be turned into a grammar: {exc}") from None
    return _CHAR_RULE.sub(lambda _: _JSON_CHAR_RULE, gbnf)


def check_schema(schema: Any) -> Any:
    """The schema the converter should get, or a `SchemaError` for what it cannot honour."""
    return _Checker(schema).run()


def _pointer(parts: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _fail(keyword: str, where: tuple[str, ...], why: str = _CANNOT) -> SchemaError:
    pointer = _pointer(where)
    place = pointer or "the root"
    return SchemaError(
        f'unsupported JSON schema keyword "{keyword}" at {place}: {why}',
        keyword=keyword,
        pointer=pointer,
    )


def _count(node: Mapping[str, Any], key: str, where: tuple[str, ...]) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(key, where, f'"{key}" must be a non-negative integer, not {value!r}')
    return value


class _Checker:
    """One walk over a schema: checks every keyword and builds the normalised copy."""

    def __init__(self, root: Any):
        self.root = root
        self.defs: dict[tuple[str, str], str] = {}  # (container, name) → the rule-safe name
        self.out_defs: dict[str, Any] = {}

    def run(self) -> Any:
        root = self.root
        if isinstance(root, Mapping):
            for container in ("$defs", "definitions"):
                defs = root.get(container)
                if defs is None:
                    continue
                if not isinstance(defs, Mapping):
                    raise _fail(container, (), f'"{container}" must be an object')
                for name in defs:
                    safe = "ref--" + re.sub(r"[^a-zA-Z0-9-]+", "-", name)
                    while safe in self.defs.values():
                        safe += "-"
                    self.defs[(container, name)] = safe
            for (container, name), safe in self.defs.items():
                self.out_defs[safe] = self.schema(root[container][name], (container, name))
        out = self.schema(root, ())
        if self.out_defs:
            if "$ref" in out:  # the converter resolves refs only below a root without one
                out = {"anyOf": [out]}
            out["$defs"] = self.out_defs  # where the converter resolves "#/$defs/…"
        return out

    def schema(self, node: Any, where: tuple[str, ...]) -> Any:
        if node is True:
            return dict(_ANY)
        if node is False:
            raise _fail("false", where, "a schema that accepts nothing cannot be generated")
        if not isinstance(node, Mapping):
            raise SchemaError(
                f"a JSON schema must be an object or a boolean, not {node!r} "
                f"(at {_pointer(where) or 'the root'})",
                pointer=_pointer(where),
            )
        keys = [k for k in node if k not in DESCRIPTIVE]
        for key in keys:
            if key not in _KNOWN:
                raise _fail(key, where)
        if where and any(k in node for k in ("$defs", "definitions")):
            raise _fail(
                "$defs" if "$defs" in node else "definitions",
                where,
                "definitions are only looked up at the schema's root; move them there",
            )
        keys = [k for k in keys if k not in ("$defs", "definitions")]
        if not keys:
            return dict(_ANY)
        for lead in ("$ref", "anyOf", "oneOf", "allOf"):
            if lead in node:
                for key in keys:
                    if key != lead:
                        raise _fail(
                            key,
                            where,
                            f'the grammar converter ignores it next to "{lead}"; '
                            "move it into the subschemas or remove it",
                        )
                return getattr(self, "_" + lead.strip("$").lower())(node[lead], (*where, lead))
        return self._typed(node, keys, where)

    def _ref(self, ref: Any, where: tuple[str, ...]) -> dict[str, Any]:
        match = _REF.fullmatch(ref) if isinstance(ref, str) else None
        if match is None:
            raise _fail(
                "$ref",
                where[:-1],
                f'{ref!r} is not a local reference "#/$defs/<name>" or "#/definitions/<name>"',
            )
        safe = self.defs.get((match[1], match[2]))
        if safe is None:
            raise _fail("$ref", where[:-1], f"{ref!r} names no definition of this schema")
        return {"$ref": f"#/$defs/{safe}"}

    def _union(self, alternatives: Any, where: tuple[str, ...], keyword: str) -> dict[str, Any]:
        if not isinstance(alternatives, list) or not alternatives:
            raise _fail(keyword, where[:-1], f'"{keyword}" must be a non-empty list of schemas')
        return {"anyOf": [self.schema(alt, (*where, str(i))) for i, alt in enumerate(alternatives)]}

    def _anyof(self, alternatives: Any, where: tuple[str, ...]) -> dict[str, Any]:
        return self._union(alternatives, where, "anyOf")

    def _oneof(self, alternatives: Any, where: tuple[str, ...]) -> dict[str, Any]:
        return self._union(alternatives, where, "oneOf")

    def _allof(self, parts: Any, where: tuple[str, ...]) -> Any:
        if not isinstance(parts, list) or len(parts) != 1:
            raise _fail(
                "allOf",
                where[:-1],
                "the grammar converter merges only the properties of several subschemas "
                "(their other keywords are lost); write one schema instead",
            )
        return self.schema(parts[0], (*where, "0"))

    def _typed(self, node: Mapping[str, Any], keys: list[str], where: tuple[str, ...]) -> Any:
        kind = node.get("type")
        out: dict[str, Any] = {}
        if isinstance(kind, list):
            if not kind or any(t not in TYPES for t in kind):
                raise _fail("type", where, f"{kind!r} is not a list of JSON types")
            for key in keys:
                if key != "type":
                    raise _fail(
                        key,
                        where,
                        "the grammar converter ignores it next to a list of types; "
                        'write "anyOf" with one schema per type instead',
                    )
            return {"type": list(dict.fromkeys(kind))}
        if kind is not None:
            if kind not in TYPES:
                raise _fail("type", where, f"{kind!r} is not a JSON type")
            out["type"] = kind
        if "const" in node or "enum" in node:
            lead = "const" if "const" in node else "enum"
            for key in keys:
                if key not in ("type", lead):
                    raise _fail(
                        key,
                        where,
                        f'the grammar converter ignores it next to "{lead}"; remove it',
                    )
            if lead == "enum" and (not isinstance(node["enum"], list) or not node["enum"]):
                raise _fail("enum", where, '"enum" must be a non-empty list')
            out[lead] = node[lead]
            return out
        # Keywords for another type than the declared one constrain nothing (JSON Schema).
        applicable = _BY_TYPE.get(kind, frozenset()) if kind is not None else _KNOWN
        present = {k for k in keys if k in applicable}
        if present & _OBJECT:
            self._object(node, where, out)
        elif present & _ARRAY:
            self._array(node, where, out)
        elif present & _STRING:
            self._string(node, present, where, out)
        if kind is None:
            mixed = [k for k in keys if k in _KNOWN - _GENERIC and k not in out]
            if mixed:
                raise _fail(mixed[0], where, 'add "type" so the grammar knows')
            if not out:
                return dict(_ANY)
        return out

    def _object(self, node: Mapping[str, Any], where: tuple[str, ...], out: dict[str, Any]) -> None:
        props = node.get("properties", {})
        if not isinstance(props, Mapping):
            raise _fail("properties", where, '"properties" must be an object')
        out["properties"] = {
            name: self.schema(sub, (*where, "properties", name)) for name, sub in props.items()
        }
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _fail("required", where, '"required" must be a list of names')
        for name in required:
            if name not in props:
                raise _fail(
                    "required",
                    where,
                    f'it lists "{name}", which is not in "properties": the grammar can only '
                    "require declared properties",
                )
        if required:
            out["required"] = list(required)
        extra = node.get("additionalProperties", False)
        if extra is not True and extra is not False:
            extra = self.schema(extra, (*where, "additionalProperties"))
        out["additionalProperties"] = extra

    def _array(self, node: Mapping[str, Any], where: tuple[str, ...], out: dict[str, Any]) -> None:
        items = node.get("items")
        prefix = node.get("prefixItems")
        low = _count(node, "minItems", where)
        high = _count(node, "maxItems", where)
        tuple_form = isinstance(items, list) or prefix is not None
        if tuple_form:
            if prefix is not None and items not in (None, False):
                raise _fail(
                    "items",
                    where,
                    'the grammar converter ignores "prefixItems" next to it; '
                    "list every item in prefixItems",
                )
            for key, value in (("minItems", low), ("maxItems", high)):
                if value is not None:
                    raise _fail(key, where, "the grammar converter ignores it on a tuple")
            parts = prefix if prefix is not None else items
            if not isinstance(parts, list) or not parts:
                raise _fail(
                    "prefixItems",
                    where,
                    "a tuple must list at least one item schema",
                )
            key = "prefixItems" if prefix is not None else "items"
            out["prefixItems"] = [
                self.schema(s, (*where, key, str(i))) for i, s in enumerate(parts)
            ]
            return
        if low is not None and high is not None and low > high:
            raise _fail("maxItems", where, f"it is below minItems ({low})")
        if items is not None:
            out["items"] = self.schema(items, (*where, "items"))
        elif low is not None or high is not None:
            out["items"] = dict(_ANY)
        if low:
            out["minItems"] = low
        if high is not None:
            out["maxItems"] = high
        out.setdefault("type", "array")

    def _string(
        self,
        node: Mapping[str, Any],
        present: set[str],
        where: tuple[str, ...],
        out: dict[str, Any],
    ) -> None:
        groups: list[str] = [k for k in ("format", "pattern") if k in present]
        if {"minLength", "maxLength"} & present:
            groups.append("minLength" if "minLength" in present else "maxLength")
        if len(groups) > 1:
            raise _fail(
                groups[1],
                where,
                "the grammar converter honours only one of format, pattern and lengths "
                f'("{groups[0]}" wins, this one would be ignored)',
            )
        out.setdefault("type", "string")
        if "format" in present:
            fmt = node["format"]
            if fmt not in STRING_FORMATS:
                raise _fail(
                    "format",
                    where,
                    f"{json.dumps(fmt)} is not a string format the grammar knows (date, time, "
                    "date-time, uuid); remove it or validate after decoding",
                )
            out["format"] = fmt
        elif "pattern" in present:
            pattern = node["pattern"]
            if not isinstance(pattern, str) or not (
                pattern.startswith("^") and pattern.endswith("$")
            ):
                raise _fail(
                    "pattern",
                    where,
                    'the grammar converter needs a pattern anchored at both ends ("^…$")',
                )
            out["pattern"] = pattern
        else:
            low = _count(node, "minLength", where)
            high = _count(node, "maxLength", where)
            if low is not None and high is not None and low > high:
                raise _fail("maxLength", where, f"it is below minLength ({low})")
            out["minLength"] = low or 0
            if high is not None:
                out["maxLength"] = high
