"""YAML as data only: safe types, and a key given twice is an error instead of a silent
overwrite (PyYAML keeps the last value). Used for device profiles and pipeline run files."""

from __future__ import annotations

from typing import Any

import yaml

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same semantics, 10x faster
_MERGE = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(_Base):  # type: ignore[misc, valid-type]
    """A SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:  # '<<' merges are overridden by design
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key '{key}'", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(data: bytes | str) -> Any:
    """Parse YAML data (safe types only); a duplicate key or an alias raises a
    yaml.YAMLError."""
    _refuse_aliases(data)
    return yaml.load(data, Loader=UniqueKeyLoader)


def _refuse_aliases(data: bytes | str) -> None:
    """Aliases are refused: a few nested ones expand a 1 MB file into billions of nodes (an
    alias bomb), and profiles and run files have no use for them. The event scan (the C
    parser) sees an alias before anything is expanded."""
    for event in yaml.parse(data, Loader=_Base):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.constructor.ConstructorError(
                None, None, f"alias '*{event.anchor}' is not supported (write the value out)",
                event.start_mark)


def yaml_error_line(exc: yaml.YAMLError, where: str) -> str:
    """``where:line:column: YAML syntax error: problem`` in one line, for any YAMLError."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{where}:{mark.line + 1}:{mark.column + 1}"
    kind = "error" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax error"
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{where}: YAML {kind}: {problem}"
