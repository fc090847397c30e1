"""The Microsoft Graph subset that az drives: applications, service principals, their
password credentials, users (read only), and directory-object lookups, served under
``/graph/v1.0``.

Owns the Graph wire format of the directory (`store/directory.py`): routes, Graph's
JSON shapes (``application``, ``servicePrincipal``, ``passwordCredential``, ``user``), the
``$filter`` forms az sends, ``$select``/``$top``/``$count`` paging, and Graph's error
shape ``{"error": {"code", "message", "innerError": {"date", "request-id",
"client-request-id"}}}``. Directory errors become Graph errors in one place
(`_from_directory`).

Rules (see docs/identity.md):

- Every request needs a bearer token for the Graph audience; `verify` (from the token
  issuer) turns it into a `Principal` or raises `InvalidToken` -> ``401
  InvalidAuthenticationToken``. It comes first on every path under ``/graph``, served
  or not, so an anonymous caller learns nothing about which paths exist.
- A caller sees only its own tenant: every directory call is scoped to the token's
  ``tid``; another tenant's objects are simply not found (404), never 403.
- Reads are allowed to every principal of the tenant. Azure does not grant apps
  ``Application.Read.All`` by default, but here the directory holds only service
  principals that the tenant's admin made, and az's own flows (``az role assignment
  create --assignee <appId>`` run by an Owner who is not the admin) need to resolve an
  app id to an object id. Writes (create/patch/delete of applications and service
  principals, adding and removing passwords) are the tenant admin's alone: others get
  ``403 Authorization_RequestDenied``.
- A service principal's ``passwordCredentials`` are its application's: the directory
  keeps one set of secrets per application, so ``az ad sp credential reset`` (which
  goes through ``/servicePrincipals/{id}/addPassword`` and ``removePassword``) really
  replaces the secret that ``create-for-rbac`` made. (In Azure the two lists are apart
  and an old application secret survives a service-principal credential reset.)
- What is not served is refused with 400 and a message that says so (unknown property
  in a body, ``$orderby``, ``or`` in ``$filter``, certificates, ...), never ignored.
- Users are read here and made elsewhere (``privatelink user create``, the admin API):
  ``/users`` (az's ``--assignee x@y`` is ``$filter=userPrincipalName eq 'x@y'``),
  ``/users/{id or userPrincipalName}``, and getByIds (``#microsoft.graph.user``, which az
  turns into ``principalType: User``). ``/me`` is the caller for a user's token and Graph's
  app-only refusal for a service principal's. The directory has no groups.
- Pages hold ``$top`` (default 100) objects, oldest first; ``@odata.nextLink`` carries
  an opaque ``$skiptoken`` (an offset), which az follows.

This layer does not import the store: the directory is reached through the
`GraphDirectory` protocol (``store.directory.SqlDirectory`` satisfies it) and its errors
are recognised by their ``code``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match, Route

from privatelink.core.principal import Principal
from privatelink.identity.tokens import InvalidToken, UserRecord

#: Where Graph is served; the cloud metadata advertises ``https://<server>/graph/``.
GRAPH_ROOT = "/graph"
VERSION = "v1.0"
BASE = f"{GRAPH_ROOT}/{VERSION}"

#: Graph's page size for directory collections when ``$top`` is not given.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999
#: getByIds takes at most 1000 ids (Graph's limit).
MAX_IDS = 1000
#: Bodies are small JSON documents; a getByIds of 1000 ids is about 40 KB.
MAX_BODY_BYTES = 1024 * 1024
MAX_FILTER_CHARS = 4096
MAX_FILTER_DEPTH = 16
#: Longest display name of an application or a password credential (the store's columns).
MAX_NAME_CHARS = 256
#: A password credential may not start later than this (it starts when it is added).
START_TOLERANCE = timedelta(minutes=5)

_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DIGITS = re.compile(r"[0-9]{1,6}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
_SIGN_IN_AUDIENCE = "AzureADMyOrg"
_DENIED = "Insufficient privileges to complete the operation."
_ME = "/me request is only valid with delegated authentication flow."


# --- the directory, as this module needs it ------------------------------------------


class PasswordRecord(Protocol):
    """A password credential (``store.directory.PasswordCredential``)."""

    @property
    def key_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def hint(self) -> str: ...
    @property
    def start(self) -> str: ...
    @property
    def end(self) -> str: ...


class ApplicationRecord(Protocol):
    """An application (``store.directory.Application``)."""

    @property
    def object_id(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def created(self) -> str: ...
    @property
    def password_credentials(self) -> Sequence[PasswordRecord]: ...


class ServicePrincipalRecord(Protocol):
    """A service principal (``store.directory.ServicePrincipal``)."""

    @property
    def object_id(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def app_object_id(self) -> str: ...
    @property
    def created(self) -> str: ...


class TenantRecord(Protocol):
    """A tenant (``store.directory.Tenant``)."""

    @property
    def default_domain(self) -> str: ...


class GraphDirectory(Protocol):
    """The directory operations Graph serves (``store.directory.SqlDirectory``)."""

    def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...
    def is_admin(self, tenant_id: str, object_id: str) -> bool: ...
    def create_application(self, tenant_id: str, display_name: str) -> ApplicationRecord: ...
    def get_application(self, tenant_id: str, object_id: str) -> ApplicationRecord | None: ...
    def list_applications(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        display_name_prefix: str | None = None,
        app_id: str | None = None,
        object_id: str | None = None,
    ) -> Sequence[ApplicationRecord]: ...
    def update_application(self, tenant_id: str, object_id: str, display_name: str) -> None: ...
    def delete_application(self, tenant_id: str, object_id: str) -> bool: ...
    def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str = "", end: str | None = None
    ) -> tuple[PasswordRecord, str]: ...
    def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> bool: ...
    def create_service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipalRecord: ...
    def list_service_principals(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        display_name_prefix: str | None = None,
        app_id: str | None = None,
        object_id: str | None = None,
    ) -> Sequence[ServicePrincipalRecord]: ...
    def get_service_principal(
        self, tenant_id: str, object_id: str
    ) -> ServicePrincipalRecord | None: ...
    def delete_service_principal(self, tenant_id: str, object_id: str) -> bool: ...
    def count_service_principals(self, tenant_id: str) -> int: ...
    def get_user(self, tenant_id: str, object_id: str) -> UserRecord | None: ...
    def find_user(self, user_principal_name: str) -> UserRecord | None: ...
    def list_users(self, tenant_id: str) -> Sequence[UserRecord]: ...


class _AnyPath(Convertor[str]):
    """Starlette's ``path`` convertor, but matching newlines too (``%0A`` in a URL)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("graph_any", _AnyPath())


class GraphError(Exception):
    """A request is refused; rendered once as Graph's error shape with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def _unsupported(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def _not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


#: Directory error code -> (HTTP status, Graph code).
_DIRECTORY_ERRORS: dict[str, tuple[int, str]] = {
    "Request_ResourceNotFound": (404, "Request_ResourceNotFound"),
    "Request_MultipleObjectsWithSameKeyValue": (409, "Request_MultipleObjectsWithSameKeyValue"),
    "Authorization_RequestDenied": (403, "Authorization_RequestDenied"),
    "Conflict": (409, "Directory_ConcurrencyViolation"),
}


def _from_directory(exc: Exception) -> GraphError | None:
    """The one place where directory errors become Graph errors (None: not one of them)."""
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    if code not in _DIRECTORY_ERRORS:
        return None
    status, graph_code = _DIRECTORY_ERRORS[code]
    return GraphError(status, graph_code, message)


def is_guid(value: str) -> bool:
    """True for a GUID in its 8-4-4-4-12 text form (nothing before or after)."""
    return _GUID.fullmatch(value) is not None


def _guid(value: str) -> str:
    return str(uuid.UUID(value))


def _check_object_id(object_id: str) -> str:
    if not is_guid(object_id):
        raise _bad(f"Invalid object identifier '{object_id}'.")
    return _guid(object_id)


# --- $filter ---------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    """One comparison of a ``$filter``: ``op`` is ``eq``, ``startswith`` or ``any``.

    ``any`` is the lambda form ``prop/any(c:c eq 'value')`` over a string collection.
    """

    op: str
    prop: str
    value: str


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<punct>[(),:])|(?P<word>[\w$./@+\-]+)|(?P<other>\S))"
)
_COMPARISONS = frozenset({"ne", "gt", "ge", "lt", "le", "in", "has"})
_FUNCTIONS = frozenset(
    {"endswith", "contains", "substringof", "tolower", "toupper", "length", "indexof", "trim"}
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string | punct | word | other
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        kind = match.lastgroup or "other"
        found.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return found


class _FilterParser:
    """Recursive descent over Graph's ``$filter`` subset: clauses joined by ``and``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def syntax(self, detail: str) -> GraphError:
        return _bad(f"Invalid filter clause: {detail} in '{self.text}'.")

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.syntax(
                f"Syntax error: unexpected end of expression at position {len(self.text)}"
            )
        self.index += 1
        return token

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.take()
        if token.kind != kind or (text is not None and token.text.lower() != text):
            wanted = f"'{text}'" if text else kind
            raise self.syntax(
                f"Syntax error: expected {wanted} but found '{token.text}' at position {token.pos}"
            )
        return token

    def string(self) -> str:
        token = self.take()
        if token.kind != "string":
            if token.kind == "word" and token.text.lower() in ("null", "true", "false"):
                raise _unsupported(
                    f"Comparison with '{token.text}' is not supported by this server; "
                    "compare with a quoted string."
                )
            raise self.syntax(
                f"Syntax error: expected a quoted string but found '{token.text}' "
                f"at position {token.pos}"
            )
        return token.text[1:-1].replace("''", "'")

    def parse(self) -> tuple[Clause, ...]:
        if not self.tokens:
            raise self.syntax("the expression is empty")
        clauses = self.conjunction(0)
        token = self.peek()
        if token is not None:
            if token.kind == "word" and token.text.lower() == "or":
                raise _unsupported("The 'or' operator is not supported by this server.")
            raise self.syntax(f"Syntax error at position {token.pos}")
        return tuple(clauses)

    def conjunction(self, depth: int) -> list[Clause]:
        if depth > MAX_FILTER_DEPTH:
            raise self.syntax("the expression is nested too deeply")
        clauses = self.primary(depth)
        while True:
            token = self.peek()
            if token is None or token.kind != "word" or token.text.lower() != "and":
                return clauses
            self.index += 1
            clauses += self.primary(depth)

    def primary(self, depth: int) -> list[Clause]:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            clauses = self.conjunction(depth + 1)
            self.expect("punct", ")")
            return clauses
        if token.kind != "word":
            raise self.syntax(f"Syntax error at position {token.pos}")
        word = token.text
        low = word.lower()
        if low == "not":
            raise _unsupported("The 'not' operator is not supported by this server.")
        after = self.peek()
        if after is not None and after.kind == "punct" and after.text == "(":
            return [self.function(word)]
        op = self.take()
        if op.kind != "word" or op.text.lower() != "eq":
            if op.kind == "word" and op.text.lower() in _COMPARISONS:
                raise _unsupported(
                    f"Operator '{op.text}' is not supported by this server; use 'eq'."
                )
            raise self.syntax(f"Syntax error: expected an operator at position {op.pos}")
        return [Clause("eq", word, self.string())]

    def function(self, word: str) -> Clause:
        low = word.lower()
        self.expect("punct", "(")
        if low == "startswith":
            prop = self.expect("word").text
            self.expect("punct", ",")
            value = self.string()
            self.expect("punct", ")")
            return Clause("startswith", prop, value)
        if low.endswith("/any") and len(word) > 4:
            variable = self.expect("word").text
            self.expect("punct", ":")
            subject = self.expect("word").text
            if subject.lower() != variable.lower():
                raise _unsupported(
                    f"Only '{variable}:{variable} eq <value>' is supported inside any()."
                )
            op = self.expect("word")
            if op.text.lower() != "eq":
                raise _unsupported(f"Operator '{op.text}' is not supported inside any().")
            value = self.string()
            self.expect("punct", ")")
            return Clause("any", word[:-4], value)
        if low in _FUNCTIONS or low.endswith("/all"):
            raise _unsupported(f"'{word}' is not supported by this server.")
        raise self.syntax(f"unknown function '{word}'")


def parse_filter(text: str) -> tuple[Clause, ...]:
    """Parse a ``$filter`` of the forms az sends, joined by ``and``.

    ``displayName eq 'x'``, ``startswith(displayName,'x')``, ``appId eq '...'``,
    ``servicePrincipalNames/any(c:c eq '...')``; strings use OData's ``''`` escape.
    Raises `GraphError`: ``Request_UnsupportedQuery`` for valid OData this server does
    not serve (``or``, ``ne``, ``endswith``, ...), ``Request_BadRequest`` for the rest.
    """
    if len(text) > MAX_FILTER_CHARS:
        raise _bad(f"Invalid filter clause: longer than {MAX_FILTER_CHARS} characters.")
    if _CONTROL.search(text):
        raise _bad("Invalid filter clause: control characters are not allowed.")
    return _FilterParser(text).parse()


# --- resources -------------------------------------------------------------------


@dataclass(frozen=True)
class _Collection:
    """What a collection allows in ``$filter`` and ``$select``."""

    name: str  # URL segment
    type_name: str  # microsoft.graph.<type_name>
    resource: str  # as Graph names it in messages
    properties: tuple[str, ...]
    eq: frozenset[str]
    startswith: frozenset[str]
    any: frozenset[str]
    guids: frozenset[str]

    def canonical(self, prop: str) -> str | None:
        low = prop.lower()
        return next((p for p in self.properties if p.lower() == low), None)


_APPLICATION_PROPERTIES = (
    "id",
    "deletedDateTime",
    "appId",
    "applicationTemplateId",
    "createdDateTime",
    "description",
    "displayName",
    "groupMembershipClaims",
    "identifierUris",
    "isFallbackPublicClient",
    "notes",
    "publisherDomain",
    "serviceManagementReference",
    "signInAudience",
    "tags",
    "addIns",
    "api",
    "appRoles",
    "info",
    "keyCredentials",
    "optionalClaims",
    "passwordCredentials",
    "publicClient",
    "requiredResourceAccess",
    "spa",
    "web",
)

_SERVICE_PRINCIPAL_PROPERTIES = (
    "id",
    "deletedDateTime",
    "accountEnabled",
    "alternativeNames",
    "appDisplayName",
    "appDescription",
    "appId",
    "appOwnerOrganizationId",
    "appRoleAssignmentRequired",
    "createdDateTime",
    "description",
    "displayName",
    "homepage",
    "loginUrl",
    "logoutUrl",
    "notes",
    "preferredSingleSignOnMode",
    "replyUrls",
    "servicePrincipalNames",
    "servicePrincipalType",
    "signInAudience",
    "tags",
    "appRoles",
    "info",
    "keyCredentials",
    "oauth2PermissionScopes",
    "passwordCredentials",
)

#: Graph v1.0's default user properties, and the few others this server fills in.
_USER_PROPERTIES = (
    "id",
    "accountEnabled",
    "businessPhones",
    "createdDateTime",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "userType",
)

APPLICATIONS = _Collection(
    "applications",
    "application",
    "Application",
    _APPLICATION_PROPERTIES,
    eq=frozenset({"id", "appId", "displayName"}),
    startswith=frozenset({"displayName"}),
    any=frozenset({"identifierUris"}),
    guids=frozenset({"id", "appId"}),
)
SERVICE_PRINCIPALS = _Collection(
    "servicePrincipals",
    "servicePrincipal",
    "ServicePrincipal",
    _SERVICE_PRINCIPAL_PROPERTIES,
    eq=frozenset({"id", "appId", "displayName"}),
    startswith=frozenset({"displayName"}),
    any=frozenset({"servicePrincipalNames"}),
    guids=frozenset({"id", "appId"}),
)
USERS = _Collection(
    "users",
    "user",
    "User",
    _USER_PROPERTIES,
    eq=frozenset({"id", "displayName", "mail", "userPrincipalName"}),
    startswith=frozenset({"displayName", "mail", "userPrincipalName"}),
    any=frozenset(),
    guids=frozenset({"id"}),
)

#: The collections served at the root of the Graph subset (lower-case).
_SERVED_ROOTS = frozenset({"applications", "serviceprincipals", "directoryobjects", "users", "me"})

#: Types getByIds knows (lower-case); the directory holds only the first three.
_DIRECTORY_TYPES = frozenset(
    {
        "serviceprincipal",
        "application",
        "user",
        "group",
        "device",
        "orgcontact",
        "directoryrole",
        "administrativeunit",
        "directoryobjectpartnerreference",
    }
)


def _checked_clauses(collection: _Collection, text: str) -> tuple[Clause, ...]:
    """Parse a filter and check it against what `collection` supports (canonical props)."""
    checked = []
    for clause in parse_filter(text):
        prop = collection.canonical(clause.prop)
        allowed = {"eq": collection.eq, "startswith": collection.startswith, "any": collection.any}
        if prop is None or prop not in allowed[clause.op]:
            raise _unsupported(
                f"Unsupported or invalid query filter clause specified for property "
                f"'{clause.prop}' of resource '{collection.resource}'."
            )
        if prop in collection.guids and not is_guid(clause.value):
            raise _bad(f"Invalid filter clause: '{clause.value}' is not a valid GUID for {prop}.")
        checked.append(Clause(clause.op, prop, clause.value))
    return tuple(checked)


def _matches(obj: dict[str, Any], clauses: Iterable[Clause]) -> bool:
    """Whether a rendered object satisfies every clause (strings compare case-insensitively)."""
    for clause in clauses:
        value = clause.value.lower()
        field = obj.get(clause.prop)
        if clause.op == "eq":
            ok = isinstance(field, str) and field.lower() == value
        elif clause.op == "startswith":
            ok = isinstance(field, str) and field.lower().startswith(value)
        else:
            ok = isinstance(field, list) and any(
                isinstance(item, str) and item.lower() == value for item in field
            )
        if not ok:
            return False
    return True


def _directory_query(clauses: Iterable[Clause]) -> dict[str, str]:
    """Keyword arguments that narrow the directory's list to a superset of the matches."""
    query: dict[str, str] = {}
    for clause in clauses:
        if clause.op == "eq" and clause.prop == "displayName":
            query.setdefault("display_name", clause.value)
        elif clause.op == "startswith" and clause.prop == "displayName":
            query.setdefault("display_name_prefix", clause.value)
        elif clause.op == "eq" and clause.prop == "appId":
            query.setdefault("app_id", clause.value)
        elif clause.op == "eq" and clause.prop == "id":
            query.setdefault("object_id", clause.value)
        elif (
            clause.op == "any" and clause.prop == "servicePrincipalNames" and is_guid(clause.value)
        ):
            query.setdefault("app_id", clause.value)
    return query


def _password_json(cred: PasswordRecord, secret: str | None = None) -> dict[str, Any]:
    return {
        "customKeyIdentifier": None,
        "displayName": cred.display_name or None,
        "endDateTime": cred.end,
        "hint": cred.hint,
        "keyId": cred.key_id,
        "secretText": secret,
        "startDateTime": cred.start,
    }


def application_json(app: ApplicationRecord, tenant: TenantRecord | None) -> dict[str, Any]:
    """An application as Graph v1.0 shows it (properties we do not keep are empty)."""
    return {
        "id": app.object_id,
        "deletedDateTime": None,
        "appId": app.app_id,
        "applicationTemplateId": None,
        "createdDateTime": app.created,
        "description": None,
        "displayName": app.display_name,
        "groupMembershipClaims": None,
        "identifierUris": [],
        "isFallbackPublicClient": None,
        "notes": None,
        "publisherDomain": tenant.default_domain if tenant else None,
        "serviceManagementReference": None,
        "signInAudience": _SIGN_IN_AUDIENCE,
        "tags": [],
        "addIns": [],
        "api": {
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "requestedAccessTokenVersion": None,
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
        },
        "appRoles": [],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "optionalClaims": None,
        "passwordCredentials": [_password_json(c) for c in app.password_credentials],
        "publicClient": {"redirectUris": []},
        "requiredResourceAccess": [],
        "spa": {"redirectUris": []},
        "web": {
            "homePageUrl": None,
            "logoutUrl": None,
            "redirectUris": [],
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": False,
                "enableIdTokenIssuance": False,
            },
        },
    }


def service_principal_json(
    sp: ServicePrincipalRecord, app: ApplicationRecord | None
) -> dict[str, Any]:
    """A service principal as Graph v1.0 shows it; its secrets are its application's."""
    return {
        "id": sp.object_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": app.display_name if app else sp.display_name,
        "appDescription": None,
        "appId": sp.app_id,
        "appOwnerOrganizationId": sp.tenant_id,
        "appRoleAssignmentRequired": False,
        "createdDateTime": sp.created,
        "description": None,
        "displayName": sp.display_name,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "preferredSingleSignOnMode": None,
        "replyUrls": [],
        "servicePrincipalNames": [sp.app_id],
        "servicePrincipalType": "Application",
        "signInAudience": _SIGN_IN_AUDIENCE,
        "tags": [],
        "appRoles": [],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "oauth2PermissionScopes": [],
        "passwordCredentials": [
            _password_json(c) for c in (app.password_credentials if app else ())
        ],
    }


def user_json(user: UserRecord) -> dict[str, Any]:
    """A user as Graph v1.0 shows it: a member, enabled, without mail or a phone."""
    return {
        "id": user.object_id,
        "accountEnabled": True,
        "businessPhones": [],
        "createdDateTime": user.created,
        "displayName": user.display_name,
        "givenName": None,
        "jobTitle": None,
        "mail": None,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": None,
        "userPrincipalName": user.user_principal_name,
        "userType": "Member",
    }


# --- request bodies ----------------------------------------------------------------


def _body_object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        raise _bad("Empty Payload. JSON content expected.")
    if not isinstance(body, dict):
        raise _bad(f"The request body of {what} must be a JSON object.")
    return body


def _refuse_unknown(body: dict[str, Any], allowed: Iterable[str], what: str) -> None:
    known = set(allowed)
    for key in body:
        if key not in known:
            raise _bad(
                f"Property '{key}' on {what} is not supported by this server (it serves the "
                "subset of Microsoft Graph that az uses)."
            )


def _name(value: Any, prop: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise _bad(f"Property '{prop}' is required.")
        return None
    if not isinstance(value, str):
        raise _bad(f"Invalid value for property '{prop}': expected a string.")
    if required and not value.strip():
        raise _bad(f"Property '{prop}' must not be empty.")
    if len(value) > MAX_NAME_CHARS:
        raise _bad(f"Property '{prop}' is longer than {MAX_NAME_CHARS} characters.")
    if _CONTROL.search(value):
        raise _bad(f"Property '{prop}' must not contain control characters.")
    return value


def _only(body: dict[str, Any], prop: str, accepted: Sequence[Any], meaning: str) -> None:
    """Accept ``prop`` only with a value this server already has (e.g. an empty list)."""
    if prop in body and body[prop] not in accepted:
        raise _bad(f"Property '{prop}' is not supported by this server: {meaning}.")


def _application_changes(body: dict[str, Any], *, create: bool) -> str | None:
    """Check a create/patch body of an application; returns the display name, if any."""
    _refuse_unknown(
        body,
        ("displayName", "keyCredentials", "identifierUris", "signInAudience", "@odata.type"),
        "application",
    )
    _only(body, "@odata.type", ["#microsoft.graph.application"], "it names another type")
    _only(body, "keyCredentials", [[]], "certificate credentials are not kept")
    _only(body, "identifierUris", [[]], "applications have no identifier URIs here")
    _only(body, "signInAudience", [_SIGN_IN_AUDIENCE], "every application is single-tenant")
    return _name(body.get("displayName"), "displayName", required=create)


def _timestamp(value: Any, prop: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise _bad(f"Invalid value for property '{prop}': expected an ISO 8601 timestamp.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(f"Invalid value for property '{prop}': '{value}' is not a timestamp.") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _new_password(body: Any) -> tuple[str, str | None]:
    """Check an addPassword body; returns (display name, end as Graph's timestamp or None)."""
    body = {} if body is None else _body_object(body, "addPassword")
    _refuse_unknown(body, ("passwordCredential",), "addPassword")
    cred = body.get("passwordCredential")
    cred = {} if cred is None else _body_object(cred, "passwordCredential")
    _refuse_unknown(
        cred,
        (
            "displayName",
            "endDateTime",
            "startDateTime",
            "customKeyIdentifier",
            "keyId",
            "hint",
            "secretText",
            "@odata.type",
        ),
        "passwordCredential",
    )
    for generated in ("customKeyIdentifier", "keyId", "hint", "secretText"):
        _only(cred, generated, [None], "the server generates it")
    _only(cred, "@odata.type", ["#microsoft.graph.passwordCredential"], "it names another type")
    name = _name(cred.get("displayName"), "displayName", required=False) or ""
    now = datetime.now(UTC)
    start = _timestamp(cred.get("startDateTime"), "startDateTime")
    if start is not None and start > now + START_TOLERANCE:
        raise _bad(
            "A startDateTime in the future is not supported by this server; a password "
            "credential is valid from the moment it is added."
        )
    end = _timestamp(cred.get("endDateTime"), "endDateTime")
    if end is not None and end <= now:
        raise _bad("Invalid value for property 'endDateTime': it must be in the future.")
    return name, end.strftime(_TIMESTAMP) if end else None


def _key_id(body: Any) -> str:
    body = _body_object(body, "removePassword")
    _refuse_unknown(body, ("keyId",), "removePassword")
    key_id = body.get("keyId")
    if not isinstance(key_id, str) or not is_guid(key_id):
        raise _bad("Property 'keyId' is required and must be a GUID.")
    return _guid(key_id)


# --- the router --------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One authenticated request: who, in which tenant, and its query options."""

    request: Request
    principal: Principal
    request_id: str
    client_request_id: str

    @property
    def tenant(self) -> str:
        return self.principal.tenant_id

    @property
    def service_root(self) -> str:
        return f"{str(self.request.base_url).rstrip('/')}{BASE}"

    def path(self, name: str) -> str:
        return str(self.request.path_params.get(name, ""))

    def context(self, fragment: str) -> str:
        return f"{self.service_root}/$metadata#{fragment}"


def _query_options(request: Request) -> dict[str, str]:
    """The OData system query options, by lower-case name without ``$`` (each once)."""
    options: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        low = key.lower()
        name = low[1:] if low.startswith("$") else low
        if name not in _QUERY_OPTIONS:
            if low.startswith("$"):
                raise _bad(f"Query option '{key}' is not supported.")
            continue  # not an OData option: ignored, as Graph does
        if name in options:
            raise _bad(f"Query option '${name}' was specified more than once.")
        options[name] = value
    for name in ("orderby", "expand", "skip", "format", "levels", "apply", "compute"):
        if name in options:
            raise _unsupported(f"'${name}' is not supported by this server.")
    if "search" in options:
        if _consistency_eventual(request):
            raise _unsupported("'$search' is not supported by this server.")
        raise _unsupported(
            "Request with $search query parameter only works through MSGraph with a special "
            "request header: 'ConsistencyLevel: eventual'"
        )
    return options


_QUERY_OPTIONS = frozenset(
    {
        "filter",
        "select",
        "top",
        "skiptoken",
        "count",
        "search",
        "orderby",
        "expand",
        "skip",
        "format",
        "levels",
        "apply",
        "compute",
    }
)


def _consistency_eventual(request: Request) -> bool:
    return request.headers.get("consistencylevel", "").strip().lower() == "eventual"


def _selector(collection: _Collection, options: dict[str, str]) -> list[str] | None:
    text = options.get("select")
    if text is None or not text.strip():
        return None
    chosen: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        prop = collection.canonical(name)
        if prop is None:
            raise _bad(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type 'microsoft.graph.{collection.type_name}'."
            )
        if prop not in chosen:
            chosen.append(prop)
    return chosen or None


def _select(obj: dict[str, Any], chosen: list[str] | None) -> dict[str, Any]:
    if chosen is None:
        return obj
    kept = {k: v for k, v in obj.items() if k.startswith("@odata.")}
    kept.update({p: obj[p] for p in chosen if p in obj})
    return kept


def _skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise _bad("The $skiptoken is not valid; start again from the first page.") from exc
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not _DIGITS.fullmatch(number):
        raise _bad("The $skiptoken is not valid; start again from the first page.")
    return int(number)


def _page_size(options: dict[str, str]) -> int:
    top = options.get("top")
    if top is None:
        return DEFAULT_PAGE_SIZE
    if not _DIGITS.fullmatch(top) or not 1 <= int(top) <= MAX_PAGE_SIZE:
        raise _bad(
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE_SIZE} "
            "inclusive."
        )
    return int(top)


def _wants_count(call: _Call, options: dict[str, str]) -> bool:
    count = options.get("count")
    if count is None:
        return False
    if count.lower() not in ("true", "false"):
        raise _bad(f"Invalid value '{count}' for $count; use true or false.")
    # Graph ignores $count=true without the advanced-query header.
    return count.lower() == "true" and _consistency_eventual(call.request)


def _page(
    call: _Call, collection: _Collection, options: dict[str, str], objects: list[dict[str, Any]]
) -> dict[str, Any]:
    """One page of a collection, with ``@odata.count`` and ``@odata.nextLink`` as asked."""
    chosen = _selector(collection, options)
    size = _page_size(options)
    offset = _offset(options.get("skiptoken"))
    fragment = collection.name + (f"({','.join(chosen)})" if chosen else "")
    body: dict[str, Any] = {"@odata.context": call.context(fragment)}
    if _wants_count(call, options):
        body["@odata.count"] = len(objects)
    if offset + size < len(objects):
        pairs = [
            (k, v)
            for k, v in call.request.query_params.multi_items()
            if k.lower().lstrip("$") != "skiptoken"
        ]
        pairs.append(("$skiptoken", _skiptoken(offset + size)))
        query = urlencode(pairs, quote_via=quote, safe="$")
        body["@odata.nextLink"] = str(call.request.url.replace(query=query))
    body["value"] = [_select(o, chosen) for o in objects[offset : offset + size]]
    return body


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers, media_type=_JSON)


def _no_content() -> Response:
    return Response(status_code=204)


Operation = Callable[[_Call, Any], Response]


class _Graph:
    """The operations, each running in a worker thread against the directory."""

    def __init__(self, directory: GraphDirectory) -> None:
        self.directory = directory

    # --- reading ------------------------------------------------------------------

    def _tenant(self, call: _Call) -> TenantRecord | None:
        return self.directory.get_tenant(call.tenant)

    def _applications(self, call: _Call, **query: str) -> list[dict[str, Any]]:
        tenant = self._tenant(call)
        return [
            application_json(a, tenant)
            for a in self.directory.list_applications(call.tenant, **query)
        ]

    def _service_principals(self, call: _Call, **query: str) -> list[dict[str, Any]]:
        sps = self.directory.list_service_principals(call.tenant, **query)
        if not sps:
            return []
        if len(sps) == 1:
            app = self.directory.get_application(call.tenant, sps[0].app_object_id)
            return [service_principal_json(sps[0], app)]
        apps = {a.object_id: a for a in self.directory.list_applications(call.tenant)}
        return [service_principal_json(sp, apps.get(sp.app_object_id)) for sp in sps]

    def _application(self, call: _Call, object_id: str) -> ApplicationRecord:
        app = self.directory.get_application(call.tenant, _check_object_id(object_id))
        if app is None:
            raise _not_found(object_id)
        return app

    def _service_principal(self, call: _Call, object_id: str) -> ServicePrincipalRecord:
        sp = self.directory.get_service_principal(call.tenant, _check_object_id(object_id))
        if sp is None:
            raise _not_found(object_id)
        return sp

    def _user(self, call: _Call, id_or_upn: str) -> UserRecord | None:
        """A user of the caller's tenant by object id or sign-in name (None: not found)."""
        if is_guid(id_or_upn):
            return self.directory.get_user(call.tenant, _guid(id_or_upn))
        if "@" not in id_or_upn:
            return None  # Graph answers 404 for a key that is neither, not 400
        user = self.directory.find_user(id_or_upn)
        # find_user looks in every tenant; another tenant's user is simply not found.
        return user if user is not None and user.tenant_id == call.tenant else None

    def _users(self, call: _Call, clauses: Iterable[Clause]) -> list[dict[str, Any]]:
        """The tenant's users, narrowed by an ``eq`` on a key when the filter has one."""
        for clause in clauses:
            if clause.op == "eq" and clause.prop in ("id", "userPrincipalName"):
                if clause.prop == "userPrincipalName" and "@" not in clause.value:
                    return []
                user = self._user(call, clause.value)
                return [user_json(user)] if user is not None else []
        return [user_json(u) for u in self.directory.list_users(call.tenant)]

    def _list(self, call: _Call, collection: _Collection) -> Response:
        options = _query_options(call.request)
        clauses = _checked_clauses(collection, options["filter"]) if "filter" in options else ()
        _selector(collection, options)  # refuse a bad $select before touching the store
        _page_size(options)
        _offset(options.get("skiptoken"))
        query = _directory_query(clauses)
        if collection is APPLICATIONS:
            objects = self._applications(call, **query)
        elif collection is SERVICE_PRINCIPALS:
            objects = self._service_principals(call, **query)
        else:
            objects = self._users(call, clauses)
        matching = [o for o in objects if _matches(o, clauses)]
        return _json(_page(call, collection, options, matching))

    def _entity(self, call: _Call, collection: _Collection, obj: dict[str, Any]) -> Response:
        options = _query_options(call.request)
        chosen = _selector(collection, options)
        body = {"@odata.context": call.context(f"{collection.name}/$entity"), **obj}
        return _json(_select(body, chosen))

    def _count(self, call: _Call, collection: _Collection) -> Response:
        if not _consistency_eventual(call.request):
            raise _bad("$count is not currently supported.")
        if collection is APPLICATIONS:
            total = len(self.directory.list_applications(call.tenant))
        elif collection is USERS:
            total = len(self.directory.list_users(call.tenant))
        else:
            total = self.directory.count_service_principals(call.tenant)
        return Response(str(total), media_type="text/plain;charset=utf-8")

    def list_applications(self, call: _Call, _body: Any) -> Response:
        return self._list(call, APPLICATIONS)

    def count_applications(self, call: _Call, _body: Any) -> Response:
        return self._count(call, APPLICATIONS)

    def get_application(self, call: _Call, _body: Any) -> Response:
        app = self._application(call, call.path("id"))
        return self._entity(call, APPLICATIONS, application_json(app, self._tenant(call)))

    def list_service_principals(self, call: _Call, _body: Any) -> Response:
        return self._list(call, SERVICE_PRINCIPALS)

    def count_service_principals(self, call: _Call, _body: Any) -> Response:
        return self._count(call, SERVICE_PRINCIPALS)

    def get_service_principal(self, call: _Call, _body: Any) -> Response:
        sp = self._service_principal(call, call.path("id"))
        app = self.directory.get_application(call.tenant, sp.app_object_id)
        return self._entity(call, SERVICE_PRINCIPALS, service_principal_json(sp, app))

    def list_users(self, call: _Call, _body: Any) -> Response:
        return self._list(call, USERS)

    def count_users(self, call: _Call, _body: Any) -> Response:
        return self._count(call, USERS)

    def get_user(self, call: _Call, _body: Any) -> Response:
        user = self._user(call, call.path("id"))
        if user is None:
            raise _not_found(call.path("id"))
        return self._entity(call, USERS, user_json(user))

    def me(self, call: _Call, _body: Any) -> Response:
        """``/me``: the signed-in user for a user's token; app-only tokens are refused."""
        user = self.directory.get_user(call.tenant, call.principal.object_id)
        if user is None:
            # A service principal's token: Graph answers /me this way for those.
            raise GraphError(400, "BadRequest", _ME)
        rest = call.path("rest")
        if rest:
            raise _bad(
                f"Resource not found for the segment '{rest.split('/')[0]}'. This server "
                "serves /me itself only, not what hangs off it."
            )
        if call.request.method != "GET":
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        return self._entity(call, USERS, user_json(user))

    def _directory_objects(
        self, call: _Call, ids: Sequence[str], types: frozenset[str]
    ) -> list[dict[str, Any]]:
        wanted = set(ids)
        found: list[dict[str, Any]] = []
        if "serviceprincipal" in types:
            for obj in self._service_principals(call):
                if obj["id"] in wanted:
                    found.append({"@odata.type": "#microsoft.graph.servicePrincipal", **obj})
        if "application" in types:
            for obj in self._applications(call):
                if obj["id"] in wanted:
                    found.append({"@odata.type": "#microsoft.graph.application", **obj})
        if "user" in types:
            for user in self.directory.list_users(call.tenant):
                if user.object_id in wanted:
                    found.append({"@odata.type": "#microsoft.graph.user", **user_json(user)})
        order = {object_id: i for i, object_id in enumerate(ids)}
        return sorted(found, key=lambda o: order[o["id"]])

    def get_by_ids(self, call: _Call, body: Any) -> Response:
        body = _body_object(body, "getByIds")
        _refuse_unknown(body, ("ids", "types"), "getByIds")
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _bad("Property 'ids' is required and must be a list of strings.")
        if len(ids) > MAX_IDS:
            raise _bad(f"At most {MAX_IDS} ids may be requested at once.")
        canonical = list(dict.fromkeys(_check_object_id(i) for i in ids))
        types = body.get("types")
        if types is None:
            kinds = _DIRECTORY_TYPES
        else:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise _bad("Property 'types' must be a list of strings.")
            names = [t.lower().removeprefix("microsoft.graph.") for t in types]
            unknown = [t for t, n in zip(types, names, strict=True) if n not in _DIRECTORY_TYPES]
            if unknown:
                raise _bad(f"Invalid directory object type '{unknown[0]}'.")
            kinds = frozenset(names)
        found = self._directory_objects(call, canonical, kinds)
        return _json({"@odata.context": call.context("directoryObjects"), "value": found})

    def get_directory_object(self, call: _Call, _body: Any) -> Response:
        object_id = _check_object_id(call.path("id"))
        found = self._directory_objects(call, [object_id], _DIRECTORY_TYPES)
        if not found:
            raise _not_found(call.path("id"))
        return _json({"@odata.context": call.context("directoryObjects/$entity"), **found[0]})

    # --- writing (the tenant's admin only) -------------------------------------------

    def create_application(self, call: _Call, body: Any) -> Response:
        body = _body_object(body, "application")
        name = _application_changes(body, create=True)
        assert name is not None
        app = self.directory.create_application(call.tenant, name)
        obj = application_json(app, self._tenant(call))
        location = f"{call.service_root}/applications/{app.object_id}"
        return _json(
            {"@odata.context": call.context("applications/$entity"), **obj},
            201,
            {"Location": location},
        )

    def update_application(self, call: _Call, body: Any) -> Response:
        app = self._application(call, call.path("id"))
        # az sends no body at all when it has nothing to change (it drops an empty {}).
        changes = {} if body is None else _body_object(body, "application")
        name = _application_changes(changes, create=False)
        if name is not None and name != app.display_name:
            self.directory.update_application(call.tenant, app.object_id, name)
        return _no_content()

    def delete_application(self, call: _Call, _body: Any) -> Response:
        object_id = _check_object_id(call.path("id"))
        if not self.directory.delete_application(call.tenant, object_id):
            raise _not_found(call.path("id"))
        return _no_content()

    def _add_password(self, call: _Call, app_object_id: str, body: Any) -> Response:
        name, end = _new_password(body)
        cred, secret = self.directory.add_password(call.tenant, app_object_id, name, end)
        return _json(
            {
                "@odata.context": call.context("microsoft.graph.passwordCredential"),
                **_password_json(cred, secret),
            },
        )

    def _remove_password(self, call: _Call, app_object_id: str, body: Any) -> Response:
        key_id = _key_id(body)
        if not self.directory.remove_password(call.tenant, app_object_id, key_id):
            raise _bad(f"No password credential with keyId '{key_id}' exists on the object.")
        return _no_content()

    def application_add_password(self, call: _Call, body: Any) -> Response:
        app = self._application(call, call.path("id"))
        return self._add_password(call, app.object_id, body)

    def application_remove_password(self, call: _Call, body: Any) -> Response:
        app = self._application(call, call.path("id"))
        return self._remove_password(call, app.object_id, body)

    def create_service_principal(self, call: _Call, body: Any) -> Response:
        body = _body_object(body, "servicePrincipal")
        _refuse_unknown(body, ("appId", "accountEnabled", "@odata.type"), "servicePrincipal")
        _only(body, "@odata.type", ["#microsoft.graph.servicePrincipal"], "it names another type")
        _only(body, "accountEnabled", [True, None], "service principals are always enabled")
        app_id = body.get("appId")
        if not isinstance(app_id, str) or not is_guid(app_id):
            raise _bad("Property 'appId' is required and must be a GUID.")
        sp = self.directory.create_service_principal(call.tenant, _guid(app_id))
        app = self.directory.get_application(call.tenant, sp.app_object_id)
        obj = service_principal_json(sp, app)
        return _json(
            {"@odata.context": call.context("servicePrincipals/$entity"), **obj},
            201,
            {"Location": f"{call.service_root}/servicePrincipals/{sp.object_id}"},
        )

    def update_service_principal(self, call: _Call, body: Any) -> Response:
        self._service_principal(call, call.path("id"))
        body = {} if body is None else _body_object(body, "servicePrincipal")
        _refuse_unknown(body, ("accountEnabled",), "servicePrincipal")
        _only(body, "accountEnabled", [True], "service principals are always enabled")
        return _no_content()

    def delete_service_principal(self, call: _Call, _body: Any) -> Response:
        object_id = _check_object_id(call.path("id"))
        if not self.directory.delete_service_principal(call.tenant, object_id):
            raise _not_found(call.path("id"))
        return _no_content()

    def service_principal_add_password(self, call: _Call, body: Any) -> Response:
        sp = self._service_principal(call, call.path("id"))
        return self._add_password(call, sp.app_object_id, body)

    def service_principal_remove_password(self, call: _Call, body: Any) -> Response:
        sp = self._service_principal(call, call.path("id"))
        return self._remove_password(call, sp.app_object_id, body)


def _error(status: int, code: str, message: str, ids: tuple[str, str]) -> Response:
    """Graph's error shape, with the request ids Graph puts in it and in headers."""
    request_id, client_request_id = ids
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    headers = {"request-id": request_id, "client-request-id": client_request_id}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
    return JSONResponse(body, status_code=status, headers=headers, media_type=_JSON)


def _request_ids(request: Request) -> tuple[str, str]:
    request_id = str(uuid.uuid4())
    sent = request.headers.get("client-request-id") or request.headers.get(
        "x-ms-client-request-id", ""
    )
    # Echo the client's id only when it is a plain token (it goes into a header).
    client = sent if sent and len(sent) <= 64 and not _CONTROL.search(sent) else request_id
    return request_id, client


async def _read_json(request: Request) -> Any:
    """The request body as JSON (None when empty); bounded in size, errors as Graph's."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise GraphError(
                413,
                "Request_BadRequest",
                f"The request body is larger than {MAX_BODY_BYTES} bytes.",
            )
    if not data.strip():
        return None
    try:
        return json.loads(bytes(data))
    except (ValueError, RecursionError) as exc:
        raise _bad(
            "Unable to read JSON request payload. Please ensure Content-Type header is set "
            "and payload is of valid JSON format."
        ) from exc


def build_graph_router(directory: GraphDirectory, verify: Callable[[str], Principal]) -> APIRouter:
    """Return a router serving the Graph subset under ``/graph/v1.0``.

    ``verify`` checks a bearer token for the Graph audience and returns its caller
    (``lambda t: issuer.verify(t, resource="graph")``); it raises `InvalidToken`.
    """
    router = APIRouter(tags=["graph"], include_in_schema=False)
    graph = _Graph(directory)

    def authenticate(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            return verify(token.strip())
        except InvalidToken as exc:
            raise GraphError(401, "InvalidAuthenticationToken", exc.message) from exc

    def endpoint(
        operation: Operation, *, write: bool = False, body: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            ids = _request_ids(request)
            try:
                principal = authenticate(request)
                if write and not await run_in_threadpool(
                    directory.is_admin, principal.tenant_id, principal.object_id
                ):
                    raise GraphError(403, "Authorization_RequestDenied", _DENIED)
                payload = await _read_json(request) if body else None
                call = _Call(request, principal, *ids)
                response = await run_in_threadpool(operation, call, payload)
            except GraphError as exc:
                return _error(exc.status, exc.code, exc.message, ids)
            except Exception as exc:
                error = _from_directory(exc)
                if error is None:
                    raise
                return _error(error.status, error.code, error.message, ids)
            response.headers["request-id"] = ids[0]
            response.headers["client-request-id"] = ids[1]
            return response

        return handle

    def add(
        path: str, methods: list[str], handle: Callable[[Request], Awaitable[Response]]
    ) -> None:
        router.add_api_route(BASE + path, handle, methods=methods, include_in_schema=False)

    add("/applications/$count", ["GET"], endpoint(graph.count_applications))
    add("/applications", ["GET"], endpoint(graph.list_applications))
    add("/applications", ["POST"], endpoint(graph.create_application, write=True, body=True))
    add("/applications/{id}", ["GET"], endpoint(graph.get_application))
    add("/applications/{id}", ["PATCH"], endpoint(graph.update_application, write=True, body=True))
    add("/applications/{id}", ["DELETE"], endpoint(graph.delete_application, write=True))
    add(
        "/applications/{id}/addPassword",
        ["POST"],
        endpoint(graph.application_add_password, write=True, body=True),
    )
    add(
        "/applications/{id}/removePassword",
        ["POST"],
        endpoint(graph.application_remove_password, write=True, body=True),
    )
    add("/servicePrincipals/$count", ["GET"], endpoint(graph.count_service_principals))
    add("/servicePrincipals", ["GET"], endpoint(graph.list_service_principals))
    add(
        "/servicePrincipals",
        ["POST"],
        endpoint(graph.create_service_principal, write=True, body=True),
    )
    add("/servicePrincipals/{id}", ["GET"], endpoint(graph.get_service_principal))
    add(
        "/servicePrincipals/{id}",
        ["PATCH"],
        endpoint(graph.update_service_principal, write=True, body=True),
    )
    add("/servicePrincipals/{id}", ["DELETE"], endpoint(graph.delete_service_principal, write=True))
    add(
        "/servicePrincipals/{id}/addPassword",
        ["POST"],
        endpoint(graph.service_principal_add_password, write=True, body=True),
    )
    add(
        "/servicePrincipals/{id}/removePassword",
        ["POST"],
        endpoint(graph.service_principal_remove_password, write=True, body=True),
    )
    add("/directoryObjects/getByIds", ["POST"], endpoint(graph.get_by_ids, body=True))
    add("/directoryObjects/{id}", ["GET"], endpoint(graph.get_directory_object))
    add("/users/$count", ["GET"], endpoint(graph.count_users))
    add("/users", ["GET"], endpoint(graph.list_users))
    add("/users/{id}", ["GET"], endpoint(graph.get_user))

    anything = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    add("/me", anything, endpoint(graph.me))
    add("/me/{rest:graph_any}", anything, endpoint(graph.me))

    served = [r for r in router.routes if isinstance(r, Route)]

    def elsewhere(call: _Call, _body: Any) -> Response:
        scope = dict(call.request.scope)
        if any(route.matches(scope)[0] == Match.PARTIAL for route in served):
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        path = call.request.url.path
        if not path.startswith(BASE + "/"):
            raise _bad(f"This server serves Microsoft Graph {VERSION} only, under {BASE}/.")
        parts = path[len(BASE) + 1 :].split("/")
        # The first segment not served: a collection, or what follows an object's id
        # (`/servicePrincipals/{id}/owners` -> 'owners'), as Graph names it.
        at = 2 if len(parts) > 2 and parts[0].lower() in _SERVED_ROOTS else 0
        segment = parts[at]
        raise _bad(
            f"Resource not found for the segment '{segment}'. This server serves the subset "
            "of Microsoft Graph that az uses (applications, servicePrincipals, users, "
            "directoryObjects)."
        )

    for path in (GRAPH_ROOT, GRAPH_ROOT + "/{rest:graph_any}"):
        router.add_api_route(
            path,
            endpoint(elsewhere),
            methods=[*anything, "HEAD", "OPTIONS"],
            include_in_schema=False,
        )
    return router
