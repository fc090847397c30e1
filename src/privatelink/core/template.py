"""ARM template evaluation: parameters, variables, expressions, dependsOn order.

Pure: the caller supplies the deployment scope and a `reference` callback for resources
already deployed. Supported expression functions are listed in FUNCTIONS; anything
else is refused with `InvalidTemplate` naming the function, rather than ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from privatelink.core import errors, registry


class InvalidTemplate(errors.BadRequest):
    code = "InvalidTemplate"


class UnsupportedResourceType(errors.BadRequest):
    code = "InvalidTemplate"
    template = (
        "Resource type '{type}' of '{name}' is not supported by privatelink; templates may "
        "deploy: {supported}."
    )


# What templates may deploy, canonical casing, in the registry's order.
SUPPORTED_TYPES = tuple(t.arm_type for t in registry.deployable())


@dataclass(frozen=True)
class Scope:
    """Where a deployment runs."""

    subscription: str
    resource_group: str
    location: str
    deployment: str
    tenant: str = ""


@dataclass
class Planned:
    """One template resource after evaluation of its name and type."""

    symbol: str  # the template's name (used by dependsOn and reference)
    type: str
    name: str
    resource_id: str
    raw: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)


# --- expression parsing ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),.\[\]]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise InvalidTemplate(
                f"Cannot parse the expression '[{text}]' near '{text[pos : pos + 20]}'."
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise InvalidTemplate(f"The expression '[{self.text}]' is malformed.")
        self.i += 1
        return tok

    def expr(self) -> Any:
        tok = self.take()
        kind, value = tok
        node: Any
        if kind == "str":
            node = ("lit", value[1:-1].replace("''", "'"))
        elif kind == "num":
            node = ("lit", int(value))
        elif kind == "ident":
            if value in ("true", "false") and (self.peek() or ("", ""))[1] != "(":
                node = ("lit", value == "true")
            else:
                self.take("(")
                args = []
                if (self.peek() or ("", ""))[1] != ")":
                    args.append(self.expr())
                    while (self.peek() or ("", ""))[1] == ",":
                        self.take(",")
                        args.append(self.expr())
                self.take(")")
                node = ("call", value, args)
        else:
            raise InvalidTemplate(f"The expression '[{self.text}]' is malformed.")
        while (self.peek() or ("", ""))[1] in (".", "["):
            if self.take()[1] == ".":
                node = ("prop", node, ("lit", self.take()[1]))
            else:
                node = ("prop", node, self.expr())
                self.take("]")
        return node


def parse(text: str) -> Any:
    """Parse the inside of a `[...]` expression into a small tree."""
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise InvalidTemplate(f"Unexpected text after the expression '[{text}]'.")
    return node


def is_expression(value: Any) -> bool:
    """`[...]` but not the escaped `[[...`."""
    return (
        isinstance(value, str)
        and value.startswith("[")
        and value.endswith("]")
        and not value.startswith("[[")
    )


# --- evaluation --------------------------------------------------------------------------------


class Evaluator:
    """Evaluates template values in a deployment scope."""

    def __init__(
        self,
        scope: Scope,
        parameters: dict[str, Any],
        variables: dict[str, Any],
        reference: Callable[[str, bool], dict[str, Any]] | None = None,
    ) -> None:
        self.scope = scope
        self.parameters = parameters
        self.raw_variables = variables
        self.variables: dict[str, Any] = {}
        self.reference = reference
        self.referenced: set[str] = set()

    def value(self, value: Any) -> Any:
        """Evaluate expressions anywhere inside a JSON value."""
        if is_expression(value):
            return self.run(parse(value[1:-1]))
        if isinstance(value, str) and value.startswith("[["):
            return value[1:]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def run(self, node: Any) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "prop":
            target, key = self.run(node[1]), self.run(node[2])
            try:
                return target[key]
            except (KeyError, IndexError, TypeError) as exc:
                raise InvalidTemplate(f"The template property '{key}' does not exist.") from exc
        name = node[1].lower()
        if name == "if":  # lazy: only the chosen branch is evaluated
            if len(node[2]) != 3:
                raise InvalidTemplate("if() takes 3 arguments.")
            return self.run(node[2][1] if self.run(node[2][0]) else node[2][2])
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise InvalidTemplate(
                f"The template function '{node[1]}' is not supported by privatelink. "
                f"Supported: {', '.join(sorted(FUNCTIONS))}."
            )
        args = [self.run(a) for a in node[2]]
        return fn(self, *args)

    def variable(self, name: str) -> Any:
        if name not in self.variables:
            if name not in self.raw_variables:
                raise InvalidTemplate(f"The template variable '{name}' is not found.")
            self.variables[name] = self.value(self.raw_variables[name])
        return self.variables[name]


def _resource_id(ev: Evaluator, *args: Any) -> str:
    parts = [str(a) for a in args]
    sub, group = ev.scope.subscription, ev.scope.resource_group
    if parts and "/" not in parts[0] and len(parts) >= 3 and _looks_like_guid(parts[0]):
        sub, parts = parts[0], parts[1:]
    if parts and "/" not in parts[0] and len(parts) >= 3:
        group, parts = parts[0], parts[1:]
    if not parts or "/" not in parts[0]:
        raise InvalidTemplate(
            "resourceId() needs a resource type like 'Microsoft.Network/virtualNetworks'."
        )
    namespace, *types = parts[0].split("/")
    names = parts[1:]
    if len(types) != len(names):
        raise InvalidTemplate(f"resourceId('{parts[0]}', ...) needs {len(types)} name(s).")
    tail = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{namespace}/{tail}"


def _looks_like_guid(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F-]{36}", value))


def _reference(ev: Evaluator, target: Any, api_version: Any = None, full: Any = None) -> Any:
    if ev.reference is None:
        raise InvalidTemplate("reference() can only be used in resources and outputs.")
    ev.referenced.add(str(target))
    return ev.reference(str(target), str(full or "").lower() == "full")


def _format(_ev: Evaluator, fmt: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), fmt)


def _unique_string(_ev: Evaluator, *args: Any) -> str:
    digest = hashlib.sha256("-".join(str(a) for a in args).encode()).hexdigest()
    return "".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:13])


def _guid(_ev: Evaluator, *args: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "-".join(str(a) for a in args)))


def _concat(_ev: Evaluator, *args: Any) -> Any:
    if args and all(isinstance(a, list) for a in args):
        return [x for a in args for x in a]
    return "".join(str(a) for a in args)


def _union(_ev: Evaluator, *args: Any) -> Any:
    if all(isinstance(a, dict) for a in args):
        out: dict[str, Any] = {}
        for a in args:
            out.update(a)
        return out
    return list(dict.fromkeys(x for a in args for x in a))


def _empty(_ev: Evaluator, value: Any) -> bool:
    return value is None or len(value) == 0


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "parameters": lambda ev, name: _parameter(ev, name),
    "variables": lambda ev, name: ev.variable(name),
    "concat": _concat,
    "format": _format,
    "resourceid": _resource_id,
    "reference": _reference,
    "resourcegroup": lambda ev: {
        "id": f"/subscriptions/{ev.scope.subscription}/resourceGroups/{ev.scope.resource_group}",
        "name": ev.scope.resource_group,
        "location": ev.scope.location,
        "type": "Microsoft.Resources/resourceGroups",
        "properties": {"provisioningState": "Succeeded"},
    },
    "subscription": lambda ev: {
        "id": f"/subscriptions/{ev.scope.subscription}",
        "subscriptionId": ev.scope.subscription,
        "tenantId": ev.scope.tenant,
        "displayName": ev.scope.subscription,
    },
    "deployment": lambda ev: {"name": ev.scope.deployment, "properties": {}},
    "tolower": lambda _ev, s: str(s).lower(),
    "toupper": lambda _ev, s: str(s).upper(),
    "string": lambda _ev, v: v if isinstance(v, str) else json.dumps(v),
    "int": lambda _ev, v: int(v),
    "bool": lambda _ev, v: v if isinstance(v, bool) else str(v).lower() == "true",
    "equals": lambda _ev, a, b: a == b,
    "not": lambda _ev, a: not a,
    "and": lambda _ev, *a: all(a),
    "or": lambda _ev, *a: any(a),
    "empty": _empty,
    "length": lambda _ev, v: len(v),
    "createarray": lambda _ev, *a: list(a),
    "createobject": lambda _ev, *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
    "json": lambda _ev, s: json.loads(s),
    "union": _union,
    "first": lambda _ev, v: v[0],
    "last": lambda _ev, v: v[-1],
    "split": lambda _ev, s, d: str(s).split(d),
    "replace": lambda _ev, s, a, b: str(s).replace(a, b),
    "contains": lambda _ev, c, v: v in c,
    "uniquestring": _unique_string,
    "guid": _guid,
    "add": lambda _ev, a, b: a + b,
    "sub": lambda _ev, a, b: a - b,
    "mul": lambda _ev, a, b: a * b,
}


def _parameter(ev: Evaluator, name: str) -> Any:
    if name not in ev.parameters:
        raise InvalidTemplate(f"The template parameter '{name}' is not found.")
    return ev.parameters[name]


# --- the template as a whole -------------------------------------------------------------------


def resolve_parameters(
    template: dict[str, Any], supplied: dict[str, Any], scope: Scope
) -> dict[str, Any]:
    """Parameter values: supplied `{"name": {"value": v}}`, else defaultValue; types checked."""
    declared = template.get("parameters") or {}
    if not isinstance(declared, dict):
        raise InvalidTemplate("The template's 'parameters' must be an object.")
    unknown = set(supplied) - set(declared)
    if unknown:
        raise InvalidTemplate(f"The parameters {sorted(unknown)} are not declared in the template.")
    values: dict[str, Any] = {}
    ev = Evaluator(scope, values, {})
    for name, spec in declared.items():
        given = supplied.get(name)
        if isinstance(given, dict) and "value" in given:
            value = given["value"]
        elif isinstance(given, dict) and "reference" in given:
            raise InvalidTemplate(f"Key Vault references (parameter '{name}') are not supported.")
        elif "defaultValue" in (spec or {}):
            value = ev.value(spec["defaultValue"])
        else:
            raise InvalidTemplate(f"The template parameter '{name}' has no value.")
        kind = str((spec or {}).get("type", "")).lower()
        expect = {
            "string": str,
            "securestring": str,
            "int": int,
            "bool": bool,
            "array": list,
            "object": dict,
        }
        if kind in expect and not isinstance(value, expect[kind]):
            raise InvalidTemplate(f"The template parameter '{name}' must be of type {kind}.")
        allowed = (spec or {}).get("allowedValues")
        if allowed is not None and value not in allowed:
            raise InvalidTemplate(f"The value of parameter '{name}' is not one of {allowed}.")
        values[name] = value
    return values


def plan_resources(template: dict[str, Any], ev: Evaluator) -> list[Planned]:
    """Evaluate names and types, check support, and order by dependsOn (cycles refused)."""
    raw = template.get("resources") or []
    if isinstance(raw, dict):  # languageVersion 2.0 symbolic names
        raw = [dict(v, _symbol=k) for k, v in raw.items()]
    planned: list[Planned] = []
    for item in raw:
        if not isinstance(item, dict) or "type" not in item or "name" not in item:
            raise InvalidTemplate("Every template resource needs 'type' and 'name'.")
        if "copy" in item:
            raise InvalidTemplate("Resource copy loops are not supported by privatelink.")
        if "condition" in item and not ev.value(item["condition"]):
            continue
        rtype, name = str(ev.value(item["type"])), str(ev.value(item["name"]))
        canonical = next((t for t in SUPPORTED_TYPES if t.lower() == rtype.lower()), None)
        if canonical is None:
            raise UnsupportedResourceType(
                type=rtype, name=name, supported=", ".join(SUPPORTED_TYPES)
            )
        segments = canonical.split("/")[1:]
        names = name.split("/")
        if len(names) != len(segments):
            raise InvalidTemplate(
                f"The name '{name}' does not fit the resource type '{canonical}'."
            )
        rid = _resource_id(ev, canonical, *names)
        planned.append(Planned(item.get("_symbol", name), canonical, name, rid, item))
    by_key: dict[str, Planned] = {}
    for p in planned:
        by_key[p.symbol.lower()] = p
        by_key[p.name.lower()] = p
        by_key[p.resource_id.lower()] = p
        by_key[f"{p.type}/{p.name}".lower()] = p
    for p in planned:
        for dep in p.raw.get("dependsOn") or []:
            target = str(ev.value(dep)).lower()
            found = by_key.get(target) or next(
                (q for q in planned if q.resource_id.lower().endswith("/" + target)), None
            )
            if found is None:
                raise InvalidTemplate(
                    f"Resource '{p.name}' depends on '{dep}', which is not in the template."
                )
            p.depends_on.append(found.resource_id)
    order: list[Planned] = []
    state: dict[str, int] = {}

    def visit(p: Planned) -> None:
        mark = state.get(p.resource_id, 0)
        if mark == 1:
            raise InvalidTemplate(f"Circular dependency involving '{p.name}'.")
        if mark == 2:
            return
        state[p.resource_id] = 1
        for dep in p.depends_on:
            visit(next(q for q in planned if q.resource_id == dep))
        state[p.resource_id] = 2
        order.append(p)

    for p in planned:
        visit(p)
    return order
