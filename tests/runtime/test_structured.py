"""Structured outputs: which JSON schemas become grammars, the located refusals, and decoding
under them on real llama.cpp (the counter fixture; greedy decoding under a grammar is
deterministic, and every schema here bounds its output so the answer ends by itself)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mfc.runtime import structured
from mfc.runtime.engine import Engine
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.runtime.structured import SchemaError, check_schema, grammar_for

SMALL = LoadOptions(n_ctx=512, n_batch=512, n_threads=1, n_gpu_layers=0, main_gpu=0, use_mmap=True)
GREEDY = SamplingOptions(temperature=0.0, num_predict=400)


@pytest.fixture(scope="module")
def engine(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        yield e


# -- refusals: keyword + pointer ------------------------------------------------------------

REFUSED = [
    # (schema, keyword, pointer)
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems", ""),
    (
        {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
        "uniqueItems",
        "/properties/tags",
    ),
    ({"type": "integer", "minimum": 0}, "minimum", ""),
    ({"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum", ""),
    ({"type": "integer", "multipleOf": 2}, "multipleOf", ""),
    ({"not": {"type": "string"}}, "not", ""),
    ({"if": {"type": "string"}, "then": {"maxLength": 2}}, "if", ""),
    ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties", ""),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired", ""),
    ({"type": "object", "minProperties": 1}, "minProperties", ""),
    ({"type": "array", "contains": {"type": "integer"}}, "contains", ""),
    ({"type": "string", "format": "email"}, "format", ""),
    (
        {"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}},
        "format",
        "/properties/a",
    ),
    ({"$ref": "https://example.com/schema.json"}, "$ref", ""),
    ({"$ref": "#/properties/a", "properties": {"a": {}}}, "properties", ""),
    ({"$ref": "#/$defs/missing"}, "$ref", ""),
    (
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/A", "maxLength": 3}}},
        "maxLength",
        "/properties/a",
    ),
    ({"anyOf": [{"type": "string"}], "type": "string"}, "type", ""),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "allOf", ""),
    ({"type": ["string", "null"], "maxLength": 3}, "maxLength", ""),
    ({"type": "object", "required": ["a"]}, "required", ""),
    ({"type": "object", "properties": {"b": {}}, "required": ["a"]}, "required", ""),
    ({"type": "string", "pattern": "abc"}, "pattern", ""),
    ({"type": "string", "pattern": "^a$", "maxLength": 3}, "maxLength", ""),
    ({"type": "array", "items": [{"type": "string"}], "minItems": 1}, "minItems", ""),
    ({"type": "array", "minItems": 3, "maxItems": 1}, "maxItems", ""),
    ({"type": "array", "minItems": -1}, "minItems", ""),
    ({"type": "date"}, "type", ""),
    ({"properties": {"a": {"enum": []}}}, "enum", "/properties/a"),
    (
        {"properties": {"a/b~c": {"type": "integer", "maximum": 3}}},
        "maximum",
        "/properties/a~1b~0c",
    ),
    ({"type": "object", "properties": {"a": {"$defs": {}}}}, "$defs", "/properties/a"),
    ({"type": "object", "properties": {"a": False}}, "false", "/properties/a"),
    ({"type": "string", "nullable": True}, "nullable", ""),
]


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"), REFUSED, ids=[json.dumps(r[0])[:60] for r in REFUSED]
)
def test_unsupported_keywords_are_refused_with_their_place(
    schema: dict[str, Any], keyword: str, pointer: str
) -> None:
    with pytest.raises(SchemaError) as info:
        grammar_for(schema)
    assert (info.value.keyword, info.value.pointer) == (keyword, pointer)
    assert f'"{keyword}"' in str(info.value)


def test_the_message_names_keyword_place_and_what_to_do() -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(SchemaError) as info:
        grammar_for(schema)
    assert str(info.value) == (
        'unsupported JSON schema keyword "uniqueItems" at /properties/tags: the grammar cannot '
        "enforce it; remove it or validate after decoding"
    )
    with pytest.raises(SchemaError) as info:
        grammar_for({"type": "string", "format": "email"})
    assert str(info.value) == (
        'unsupported JSON schema keyword "format" at the root: "email" is not a string format '
        "the grammar knows (date, time, date-time, uuid); remove it or validate after decoding"
    )


@pytest.mark.parametrize("fmt", ["xml", 3, ["json"]])
def test_format_must_be_json_or_a_schema(fmt: Any) -> None:
    with pytest.raises(SchemaError, match="format must be"):
        grammar_for(fmt)


# -- what converts ----------------------------------------------------------------------------

ADDRESS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}, "zip": {"type": "integer"}},
    "required": ["city"],
    "additionalProperties": False,
}
FEATURES: dict[str, dict[str, Any]] = {
    "formats": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "time"},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["day", "at", "when", "id"],
    },
    "enum-const": {
        "type": "object",
        "properties": {
            "kind": {"enum": ["cat", "dog", 3, None]},
            "v": {"const": {"x": [1, 2]}},
        },
        "required": ["kind", "v"],
    },
    "optional-properties": {
        "type": "object",
        "properties": {
            "a": {"type": "boolean"},
            "b": {"type": "null"},
            "c": {"type": "number"},
        },
        "required": ["b"],
    },
    "array-bounds": {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 3,
    },
    "nested": {
        "type": "object",
        "properties": {
            "home": ADDRESS,
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2},
            "name": {"type": "string", "minLength": 2, "maxLength": 4, "title": "Name"},
        },
        "required": ["home", "tags", "name"],
        "additionalProperties": False,
        "description": "a person",
    },
    "defs-and-refs": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"Address": ADDRESS, "string": {"type": "integer"}},
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "where"},
            "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
            "count": {"$ref": "#/$defs/string"},
        },
        "required": ["home", "work", "count"],
    },
    "definitions-and-pattern": {
        "definitions": {"Code": {"type": "string", "pattern": "^[A-C]{2}-[0-9]$"}},
        "type": "array",
        "prefixItems": [{"$ref": "#/definitions/Code"}, {"type": "boolean"}],
    },
}


@pytest.mark.parametrize("name", list(FEATURES))
def test_supported_features_decode_to_valid_instances(engine: Engine, name: str) -> None:
    schema = FEATURES[name]
    gen = engine.generate("abc", GREEDY, grammar=grammar_for(schema))
    text = gen.result()
    assert gen.stats is not None and gen.stats.done_reason == "stop", text
    value = json.loads(text)
    jsonschema.validate(value, schema)
    if name == "formats":
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", value["day"])
        assert re.fullmatch(r"\d\d:\d\d:\d\d(\.\d{3})?(Z|[+-]\d\d:\d\d)", value["at"])
        assert re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value["id"])


def test_json_format_decodes_to_json(engine: Engine) -> None:
    # The counter never closes an unbounded string by itself: bound the answer, check the grammar
    gen = engine.generate("{", GREEDY, grammar=grammar_for("json"))
    assert gen.result().startswith("{")


def test_additional_properties_with_a_schema_convert() -> None:
    # (not decoded: extra keys are unbounded strings, which the counter never closes)
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "additionalProperties": {"type": "integer"},
    }
    gbnf = grammar_for(schema)
    assert gbnf is not None and re.search(r"^additional-kv ::= string .*integer", gbnf, re.M)


def test_recursive_definitions_convert() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["v", "next"],
            }
        },
    }
    gbnf = grammar_for(schema)
    assert gbnf is not None and re.search(r"^ref--Node ::= .*ref--Node-next-kv", gbnf, re.M)


def test_descriptive_keywords_are_ignored() -> None:
    plain = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    annotated = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "$comment": "c",
        "title": "T",
        "description": "d",
        "type": "object",
        "properties": {
            "a": {
                "type": "integer",
                "default": 1,
                "examples": [1],
                "deprecated": False,
                "readOnly": True,
                "writeOnly": False,
            }
        },
        "required": ["a"],
    }
    assert grammar_for(annotated) == grammar_for(plain)


@pytest.mark.parametrize("anything", [{}, True, {"description": "any value"}])
def test_an_empty_schema_is_any_value_not_any_object(anything: Any) -> None:
    schema = {"type": "object", "properties": {"a": anything}, "required": ["a"]}
    assert check_schema(schema)["properties"]["a"] == structured._ANY
    gbnf = grammar_for(schema)
    assert gbnf is not None and "boolean" in gbnf and "null" in gbnf


def test_strings_exclude_control_characters() -> None:
    gbnf = grammar_for({"type": "string"})
    assert gbnf is not None
    (char,) = [line for line in gbnf.splitlines() if line.startswith("char ::=")]
    assert "\\x00-\\x1F" in char


def test_conversions_are_cached() -> None:
    schema = {"type": "object", "properties": {"cached": {"type": "boolean"}}}
    before = structured._grammar_for_text.cache_info()
    first = grammar_for(schema)
    second = grammar_for(json.loads(json.dumps(schema)))
    after = structured._grammar_for_text.cache_info()
    assert first == second
    assert after.hits >= before.hits + 1
    assert after.maxsize == structured.CACHE_SIZE


def test_property_order_is_kept() -> None:
    schema = {
        "type": "object",
        "properties": {"z": {"type": "null"}, "a": {"type": "null"}},
        "required": ["z", "a"],
    }
    gbnf = grammar_for(schema)
    assert gbnf is not None and 'root ::= "{" space z-kv "," space a-kv' in gbnf


# -- generated schemas from the supported subset ----------------------------------------------

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-50, 50),
    st.text(alphabet="abcxyz ", max_size=4),
)
LEAVES = st.one_of(
    st.sampled_from(
        [
            {"type": "integer"},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "string", "format": "date"},
            {"type": "string", "format": "time"},
            {"type": "string", "format": "date-time"},
            {"type": "string", "format": "uuid"},
            {"type": "string", "pattern": "^[a-c]+x?$"},
        ]
    ),
    st.integers(0, 6).map(lambda n: {"type": "string", "maxLength": n}),
    st.lists(SCALARS, min_size=1, max_size=4).map(lambda v: {"enum": v}),
    SCALARS.map(lambda v: {"const": v}),
)


def _object(props: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    names = list(props)
    required = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if data.draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


def _array(items: dict[str, Any], low: int, extra: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": low + extra}


def _compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            _object,
            st.dictionaries(NAMES, children, min_size=1, max_size=3),
            st.data(),
        ),
        st.builds(_array, children, st.integers(0, 2), st.integers(0, 2)),
        st.lists(children, min_size=1, max_size=3).map(lambda alts: {"anyOf": alts}),
    )


SCHEMAS = st.recursive(LEAVES, _compound, max_leaves=6)


def _with_defs(root: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    return {
        "$defs": {"Shared": shared},
        "type": "object",
        "properties": {"s": {"$ref": "#/$defs/Shared"}, "r": root},
        "required": ["s", "r"],
    }


TOP = st.one_of(SCHEMAS, st.builds(_with_defs, SCHEMAS, SCHEMAS))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=TOP, prompt=st.sampled_from(["abc", "{", "0", "x"]))
def test_generated_schemas_convert_and_constrain(
    engine: Engine, schema: dict[str, Any], prompt: str
) -> None:
    gbnf = grammar_for(schema)
    assert gbnf
    sampling = dataclasses.replace(GREEDY, num_predict=300)
    gen = engine.generate(prompt, sampling, grammar=gbnf)
    text = gen.result()
    assert gen.stats is not None
    event(f"done_reason={gen.stats.done_reason}")
    if gen.stats.done_reason == "stop":  # ended by itself: a whole instance
        jsonschema.validate(json.loads(text), schema)
