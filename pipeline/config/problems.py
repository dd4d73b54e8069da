"""What is wrong with a params file, in words: ConfigError, one line per problem naming the dotted key.

Pydantic reports each problem with a location and a kind; `config_error` turns them into lines such as
`train.lr: must be > 0, got -1`, at most MAX_ERROR_LINES of them, each quoting at most QUOTE_LIMIT characters of a
value (a value may be a megabyte of text). A check of our own raises `invalid(...)`, which says its words as given.
"""
from __future__ import annotations

import difflib
import reprlib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from pipeline.errors import UserError


class ConfigError(UserError, ValueError):
    """A parameter in params.yaml is missing, misspelt, of the wrong type or not an allowed value."""


QUOTE_LIMIT = 200  # characters of a value a message quotes: a value may be a megabyte of text or a huge list
MAX_ERROR_LINES = 10  # one per problem: a list of a million bad items would give a million
_SHORT_REPR = reprlib.Repr()  # a few items of each container, without writing out the whole value first
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 2, QUOTE_LIMIT, QUOTE_LIMIT


def quote(value: Any) -> str:
    """repr(value) for a message, at most QUOTE_LIMIT characters."""
    return _cut(_SHORT_REPR.repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT - 3] + "..."


def invalid(field: str, detail: str, *related: str) -> PydanticCustomError:
    """An error for key `field` (relative to the model raising it; "" for the field being validated).
    `detail` may name sibling keys as {0}, {1}...: they are written out as dotted keys from `related`."""
    return PydanticCustomError("config", "{detail}", {"field": field, "detail": detail, "related": related})


def config_error(cls: type[BaseModel], error: ValidationError, key: str) -> ConfigError:
    """One ConfigError for all that pydantic found building `cls`; `key` ("" for the whole file) prefixes the
    dotted keys."""
    errors = error.errors(include_url=False)
    lines = list(dict.fromkeys(_describe(cls, _without_union_tags(e), key) for e in errors[:MAX_ERROR_LINES]))
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"... and {len(errors) - MAX_ERROR_LINES} more")
    return ConfigError("\n".join(lines))


_EXPECTED = {"int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "float",
             "float_parsing": "float", "bool_type": "bool", "bool_parsing": "bool", "string_type": "str",
             "list_type": "a list", "tuple_type": "a list", "finite_number": "a finite number"}
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def _describe(cls: type[BaseModel], error: dict[str, Any], key: str) -> str:
    """One line for one pydantic error: `<dotted key>: <what is wrong and what is expected>`."""
    loc, kind, value, ctx = error["loc"], error["type"], error.get("input"), error.get("ctx", {})
    where = _dotted(key, loc) or "params.yaml"
    if kind in ("extra_forbidden", "invalid_key"):
        return _unknown_key(_annotation_at(cls, loc[:-1]), join_key(_dotted(key, loc[:-1]), str(loc[-1])))
    if kind == "config":
        prefix = _dotted(key, loc)
        detail = ctx["detail"]  # not str.format: a quoted value may hold braces
        for index, name in enumerate(ctx["related"]):
            detail = detail.replace(f"{{{index}}}", join_key(prefix, name))
        return f"{join_key(prefix, ctx['field']) or 'params.yaml'}: {detail}"
    if kind == "literal_error" and (allowed := _literal_values(_annotation_at(cls, loc))):
        return f"{where}: {quote(value)} is not allowed; choose one of {', '.join(map(str, allowed))}"
    if kind in _MAPPING_ERRORS:
        names = ", ".join(getattr(_annotation_at(cls, loc), "model_fields", ()))
        return f"{where}: expected a mapping with keys {names}, got {quote(value)}"
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}, got {quote(value)}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return f"{where}: must be {sign} {ctx[name]}, got {quote(value)}"
    if kind == "too_long":
        return f"{where}: must have at most {ctx['max_length']} items, got {ctx['actual_length']}"
    if kind == "too_short":
        need = "must not be empty" if ctx["min_length"] == 1 else f"needs at least {ctx['min_length']} items"
        return f"{where}: {need}, got {quote(value)}"
    return f"{where}: {error['msg']}, got {quote(value)}"


def _without_union_tags(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic names the union member in the location (`list[...]`, `literal['balanced']`): not a key."""
    return {**error, "loc": tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in part)}


def _unknown_key(model: Any, key: str) -> str:
    names = list(getattr(model, "model_fields", ()))
    close = difflib.get_close_matches(key.rpartition(".")[2], names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{_cut(key)}: unknown key{hint}; allowed keys: {', '.join(names)}"


def _annotation_at(cls: type[BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The type at `loc` inside model `cls` (cls itself for ()), or None once the path leaves the models."""
    annotation: Any = cls
    for part in loc:
        fields = annotation.model_fields if isinstance(annotation, type) and issubclass(annotation, BaseModel) else {}
        if part not in fields:
            return None
        annotation = fields[part].annotation
    return annotation


def _literal_values(annotation: Any) -> tuple:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return next((found for arg in typing.get_args(annotation) if (found := _literal_values(arg))), ())


def _dotted(key: str, loc: tuple[str | int, ...]) -> str:
    out = key
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else join_key(out, part)
    return out


def join_key(key: str, name: str) -> str:
    """`key.name`, or either alone where the other is empty."""
    return f"{key}.{name}" if key and name != "" else str(name or key)
