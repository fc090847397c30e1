"""Deployment bodies as az sends them (`template:` unquoted, comments kept) become strict
JSON; JSON and what is not JSON at all pass untouched (api/template_body.py)."""

from __future__ import annotations

import json

from privatelink.api.template_body import strict


def test_what_az_sends_becomes_strict_json() -> None:
    sent = (
        b'{"properties": {"parameters": {}, "mode": "Incremental", template:'
        b'// a comment\n{"resources": [ /* none */ ], "contentVersion": "1.0.0.0"}\n}}'
    )
    fixed = strict(sent)
    assert fixed is not None
    assert json.loads(fixed) == {
        "properties": {
            "parameters": {},
            "mode": "Incremental",
            "template": {"resources": [], "contentVersion": "1.0.0.0"},
        }
    }


def test_json_and_garbage_pass_untouched() -> None:
    assert strict(b'{"properties": {}}') is None
    assert strict(b"{not json at all") is None
    assert strict(b"\xff\xfe") is None
    assert strict(b"[" * 100000) is None  # too deep for json5: the route answers 400
