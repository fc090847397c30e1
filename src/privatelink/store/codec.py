"""Resource documents: domain dataclasses to JSON text and back, by ARM type."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from privatelink.core import registry
from privatelink.core.resource import Resource

# Lower-case ARM type -> model class: the registry's stored types.
TYPES: dict[str, type[Resource]] = {t.key: t.model for t in registry.stored() if t.model}
NAMES = {cls: name for name, cls in TYPES.items()}


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
_LIST_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(cls: type[Resource]) -> TypeAdapter[Any]:
    name = cls.__qualname__
    if name not in _ADAPTERS:
        _ADAPTERS[name] = TypeAdapter(cls)
    return _ADAPTERS[name]


def type_of(resource: Resource) -> str:
    """Lower-case ARM type of a resource object."""
    return NAMES[type(resource)]


def dumps(resource: Resource) -> str:
    """Serialize a resource to JSON text."""
    return json.dumps(_adapter(type(resource)).dump_python(resource, mode="json"))


def loads(resource_type: str, text: str) -> Resource:
    """Deserialize a resource of a (lower-case) ARM type (pydantic-core parses the JSON
    text itself: half the time of `json.loads` and a validation of the result)."""
    cls = TYPES[resource_type]
    result: Resource = _adapter(cls).validate_json(text)
    return result


def loads_many(resource_type: str, texts: list[str]) -> list[Resource]:
    """Deserialize documents of one type at once: one call into pydantic-core for the
    lot (a service's 1000 connections decode in a third of the time one by one takes)."""
    cls = TYPES[resource_type]
    if resource_type not in _LIST_ADAPTERS:
        _LIST_ADAPTERS[resource_type] = TypeAdapter(list[cls])  # type: ignore[valid-type]
    result: list[Resource] = _LIST_ADAPTERS[resource_type].validate_json(
        "[" + ",".join(texts) + "]"
    )
    return result
