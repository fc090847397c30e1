"""ARM template evaluation: expressions, functions, parameters, dependsOn order."""

from __future__ import annotations

from typing import Any

import pytest

from privatelink.core.template import (
    Evaluator,
    InvalidTemplate,
    Scope,
    UnsupportedResourceType,
    parse,
    plan_resources,
    resolve_parameters,
)

SCOPE = Scope("11111111-1111-4111-8111-111111111111", "rg", "eastus", "dep", "tenant")


def ev(
    params: dict[str, Any] | None = None, variables: dict[str, Any] | None = None, **kw: Any
) -> Evaluator:
    return Evaluator(SCOPE, params or {}, variables or {}, **kw)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("[concat('a', 'b', 'c')]", "abc"),
        ("[concat(createArray(1), createArray(2))]", [1, 2]),
        ("[format('{0}-{1}', 'x', 2)]", "x-2"),
        ("[toLower('AbC')]", "abc"),
        ("[parameters('p')]", "val"),
        ("[variables('v')]", "val-v"),
        ("[resourceGroup().location]", "eastus"),
        ("[subscription().subscriptionId]", SCOPE.subscription),
        ("[if(equals(parameters('p'), 'val'), 'yes', 'no')]", "yes"),
        ("[length(createArray(1, 2, 3))]", 3),
        ("[json('{\"a\": [1, 2]}').a[1]]", 2),
        ("[createObject('k', 'v').k]", "v"),
        ("[union(createObject('a', 1), createObject('b', 2))]", {"a": 1, "b": 2}),
        ("[split('a/b', '/')[1]]", "b"),
        ("['it''s']", "it's"),
        ("[[not an expression]", "[not an expression]"),
        (
            "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'v', 's')]",
            f"/subscriptions/{SCOPE.subscription}/resourceGroups/rg/providers/"
            "Microsoft.Network/virtualNetworks/v/subnets/s",
        ),
        (
            "[resourceId('other', 'Microsoft.Network/loadBalancers', 'lb')]",
            f"/subscriptions/{SCOPE.subscription}/resourceGroups/other/providers/"
            "Microsoft.Network/loadBalancers/lb",
        ),
    ],
)
def test_expressions(expression: str, expected: Any) -> None:
    e = ev({"p": "val"}, {"v": "[concat(parameters('p'), '-v')]"})
    assert e.value(expression) == expected


def test_values_nest_and_plain_values_pass_through() -> None:
    e = ev({"n": 3})
    assert e.value({"a": ["[parameters('n')]", 1, None, True]}) == {"a": [3, 1, None, True]}


@pytest.mark.parametrize(
    "expression",
    ["[listKeys('x', '2020')]", "[concat('a']", "[concat('a'))]", "[parameters('nope')]"],
)
def test_bad_expressions_are_invalid_templates(expression: str) -> None:
    with pytest.raises(InvalidTemplate) as caught:
        ev().value(expression)
    assert caught.value.code == "InvalidTemplate" and caught.value.status == 400


def test_reference_goes_through_the_callback() -> None:
    seen: list[tuple[str, bool]] = []

    def reference(target: str, full: bool) -> dict[str, Any]:
        seen.append((target, full))
        return {"alias": "a.b"} if not full else {"properties": {"alias": "a.b"}}

    e = ev(reference=reference)
    assert e.value("[reference('pls').alias]") == "a.b"
    assert e.value("[reference('pls', '2023-04-01', 'Full').properties.alias]") == "a.b"
    assert seen == [("pls", False), ("pls", True)]


def test_parameters_defaults_types_and_allowed_values() -> None:
    template = {
        "parameters": {
            "name": {"type": "string"},
            "count": {"type": "int", "defaultValue": 2},
            "sku": {"type": "string", "defaultValue": "Standard", "allowedValues": ["Standard"]},
            "where": {"type": "string", "defaultValue": "[resourceGroup().location]"},
        }
    }
    values = resolve_parameters(template, {"name": {"value": "x"}}, SCOPE)
    assert values == {"name": "x", "count": 2, "sku": "Standard", "where": "eastus"}
    for supplied in (
        {},
        {"name": {"value": 1}},
        {"name": {"value": "x"}, "sku": {"value": "Basic"}},
    ):
        with pytest.raises(InvalidTemplate):
            resolve_parameters(template, supplied, SCOPE)
    with pytest.raises(InvalidTemplate):
        resolve_parameters(template, {"name": {"value": "x"}, "extra": {"value": 1}}, SCOPE)


def res(rtype: str, name: str, *depends: str) -> dict[str, Any]:
    return {"type": f"Microsoft.Network/{rtype}", "name": name, "dependsOn": list(depends)}


def test_resources_are_ordered_by_depends_on() -> None:
    template = {
        "resources": [
            res(
                "privateLinkServices",
                "pls",
                "[resourceId('Microsoft.Network/loadBalancers', 'lb')]",
            ),
            res("loadBalancers", "lb", "v"),
            res("virtualNetworks/subnets", "v/s", "Microsoft.Network/virtualNetworks/v"),
            res("virtualNetworks", "v"),
        ]
    }
    order = [p.name for p in plan_resources(template, ev())]
    assert order.index("v") < order.index("lb") < order.index("pls")
    assert order.index("v") < order.index("v/s")


def test_cycles_unknown_dependencies_and_types_are_refused() -> None:
    with pytest.raises(InvalidTemplate, match="Circular"):
        plan_resources(
            {"resources": [res("loadBalancers", "a", "b"), res("loadBalancers", "b", "a")]}, ev()
        )
    with pytest.raises(InvalidTemplate, match="depends on"):
        plan_resources({"resources": [res("loadBalancers", "a", "ghost")]}, ev())
    with pytest.raises(UnsupportedResourceType):
        plan_resources(
            {"resources": [{"type": "Microsoft.Compute/virtualMachines", "name": "vm"}]}, ev()
        )
    with pytest.raises(InvalidTemplate, match="copy"):
        plan_resources({"resources": [dict(res("loadBalancers", "a"), copy={"count": 2})]}, ev())


def test_a_false_condition_skips_the_resource() -> None:
    template = {"resources": [dict(res("loadBalancers", "a"), condition="[equals(1, 2)]")]}
    assert plan_resources(template, ev()) == []


def test_the_parser_builds_property_access() -> None:
    assert parse("a().b[0]")[0] == "prop"
