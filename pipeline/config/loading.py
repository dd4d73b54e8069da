"""Reading a params file: YAML with aliases bounded, then every check of the schema, any problem a ConfigError.

Nothing in the file can exhaust the machine: YAML aliases that would repeat thousands of values are refused before
anything walks them. DVC reads all of params.yaml itself before any stage runs, with no such limit:
`python -m pipeline.config FILE` checks a file first.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.params import Params
from pipeline.config.problems import ConfigError, config_error

Parsed = TypeVar("Parsed", bound=BaseModel)


MAX_ALIAS_COPIES = 10_000  # values YAML aliases may add to a params file, which holds a few hundred in all


class AliasBomb(yaml.YAMLError):
    """A YAML document whose aliases repeat more than MAX_ALIAS_COPIES values."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a "billion laughs": PyYAML builds an aliased value once and shares it, but
    validating or quoting the data walks every copy (nine levels of ten aliases: 10**9 values, minutes, GBs).
    A long list written out is no threat: the file's own size bounds it."""

    def compose_document(self) -> yaml.Node:
        document = super().compose_document()
        sizes: dict[int, float] = {}
        if expanded_size(document, sizes) - len(sizes) > MAX_ALIAS_COPIES:
            raise AliasBomb(f"its YAML aliases (*name) repeat more than {MAX_ALIAS_COPIES:,} values; a params file "
                            "holds a few hundred: write the values out")
        return document


def expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """The values under `node` with every alias written out (an alias counts its target's values again); a value
    that contains itself has infinitely many. `sizes` holds the count of each distinct node once known, so this
    takes the document's own size in steps, however far it expands."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = math.inf  # until counted: an alias back to a node being counted is a cycle
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=BoundedLoader) or {}
    except AliasBomb as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to read") from None
    except ValueError:  # PyYAML's int() of a number longer than Python converts (4300 digits)
        raise ConfigError(f"{path}: holds a number of thousands of digits; no param takes one") from None
    return parse(Params, raw, "")


def parse(cls: type[Parsed], raw: Any, key: str) -> Parsed:
    """Build model `cls` from a dict; `key` ("" for the whole file) prefixes the dotted keys in error messages."""
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise config_error(cls, error, key) from None
