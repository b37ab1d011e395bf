"""Reading Backstage ``catalog-info.yaml``: bounded YAML, one draft per document, Location targets.

Nothing here touches the database. Every problem is collected (never raised) with the file, the
0-based document index and the field it concerns, so one import reports all of them at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.catalog.models import LINK_TYPES, Lifecycle, RelationType
from lamplighter.catalog.refs import Ref, check_name, check_policy, check_tag, parse_ref
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.identity import RESERVED_SLUGS

if TYPE_CHECKING:
    from lamplighter.catalog.yaml_cache import DocumentCache

ACCOUNTABLE = "lamplighter.io/accountable"
TIER = "lamplighter.io/tier"
COST_CENTRE = "lamplighter.io/cost-centre"
LEAD = "lamplighter.io/lead"
FIELD_ANNOTATIONS = (ACCOUNTABLE, TIER, COST_CENTRE)  # kept as entity fields, not annotations

ENTITY_KINDS = {
    "component": "service",
    "api": "api",
    "resource": "resource",
    "system": "system",
    "domain": "domain",
    "platform": "platform",
}
LIFECYCLES = frozenset(item.value for item in Lifecycle)
PEOPLE_KINDS = frozenset({"group", "user"})
GROUP = frozenset({"group"})
KIND_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
# spec field → (relation type, default kind, kinds it may point at (None: any kind of entity),
# audit/snapshot name)
RefField = tuple[str, str | None, frozenset[str] | None, str]
REF_FIELDS: dict[str, RefField] = {
    "dependsOn": (RelationType.DEPENDS_ON.value, None, None, "depends_on"),
    "providesApis": (RelationType.PROVIDES_API.value, "api", frozenset({"api"}), "provides_apis"),
    "consumesApis": (RelationType.CONSUMES_API.value, "api", frozenset({"api"}), "consumes_apis"),
    "system": (RelationType.PART_OF.value, "system", frozenset({"system"}), "system"),
    "domain": (RelationType.PART_OF.value, "domain", frozenset({"domain"}), "domain"),
    "subcomponentOf": (
        RelationType.PART_OF.value,
        "service",
        frozenset({"service"}),
        "subcomponent_of",
    ),
}
SINGLE_REF_FIELDS = frozenset({"system", "domain", "subcomponentOf"})
OTHER_REF_FIELDS = {k: REF_FIELDS[k] for k in ("dependsOn", "system", "domain")}
KNOWN_SPEC = frozenset({"owner", "type", "lifecycle", "version", *REF_FIELDS})
INT64 = (-(2**63), 2**64 - 1)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class Problem:
    """Why a document (or a whole file, ``document`` None) is not imported, or, in the
    ``warnings`` of a file, what was imported differently from how it was written."""

    file: str
    document: int | None
    field: str
    reason: str


@dataclass(frozen=True)
class RefUse:
    field: str  # where in the document, e.g. spec.dependsOn.2
    relation: str
    name: str  # how the snapshot and the audit log call it (depends_on, system, …)
    ref: Ref
    key: tuple[str, str, str]  # ref.key, computed once


@dataclass
class EntityDraft:
    file: str
    index: int
    kind: str
    namespace: str
    name: str
    owner: Ref | None  # a group or a user; None only for kinds Lamplighter does not model
    accountable: str | None  # email
    title: str = ""
    description: str = ""
    type: str | None = None
    lifecycle: str = Lifecycle.PRODUCTION.value
    tier: int = 3
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    cost_centre: str | None = None
    version: str | None = None
    spec_extra: dict[str, Any] = field(default_factory=dict)
    refs: list[RefUse] = field(default_factory=list)
    document: dict[str, Any] | None = None  # the whole document, for kinds kept as they are

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name.lower())

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def doc(self) -> tuple[str, int]:
        return (self.file, self.index)


def group_slug(namespace: str, name: str) -> str:
    """The team slug of a Group: its name, prefixed by its namespace outside ``default``
    (``--`` never occurs in a Backstage name, so the two cannot meet)."""
    name = name.lower()
    return name if namespace == "default" else f"{namespace}--{name}"


def personal_slug(namespace: str, name: str) -> str:
    """The slug of the personal team that stands for a User owner who belongs to no team."""
    return f"{group_slug(namespace, name)}--personal"


@dataclass
class GroupDraft:
    file: str
    index: int
    namespace: str
    name: str  # lowercase
    slug: str
    display_name: str
    description: str
    type: str
    parent: tuple[str, Ref] | None  # (field, group)
    children: list[tuple[str, Ref]]
    members: list[tuple[str, Ref]]  # (field, user)
    lead: tuple[str, str] | None  # (field, email or user reference)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"group:{self.namespace}/{self.name}"

    @property
    def doc(self) -> tuple[str, int]:
        return (self.file, self.index)


@dataclass
class UserDraft:
    file: str
    index: int
    namespace: str
    name: str  # lowercase
    email: str | None
    display_name: str
    member_of: list[tuple[str, Ref]]  # (field, group)
    leads: list[tuple[str, Ref]] | bool  # groups it leads (lamplighter.io/lead), True = all

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"user:{self.namespace}/{self.name}"

    @property
    def doc(self) -> tuple[str, int]:
        return (self.file, self.index)


@dataclass
class ParsedFile:
    name: str
    entities: list[EntityDraft] = field(default_factory=list)
    groups: list[GroupDraft] = field(default_factory=list)
    users: list[UserDraft] = field(default_factory=list)
    targets: list[tuple[int, str, str]] = field(default_factory=list)  # (doc, field, target)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    documents: int = 0


# -- files → documents ---------------------------------------------------------------------------
def load_documents(name: str, data: bytes) -> tuple[list[Any], list[Problem]]:
    """Decode and parse a file: its documents up to the first refused, and the problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        return [], [Problem(name, None, "file", reason)]
    documents, refused = load_all(text.removeprefix("\ufeff"))
    if refused is None:
        return documents, []
    return documents, [Problem(name, refused.document, "yaml", refused.reason)]


# -- documents → drafts ---------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """The JSON-safe form of a YAML value (dates become ISO strings, keys strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return str(value)  # JSON encoders and databases stop at 64 bits
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    return value


def _text(value: Any) -> str | None:
    """A scalar as the string it reads as; None for mappings, lists and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return None


@functools.lru_cache(maxsize=65_536)
def _parse_ref(text: str, default_kind: str | None, namespace: str) -> Ref | None:
    """References repeat a lot in a catalog (owners, systems, popular targets): parse once."""
    try:
        return parse_ref(text, default_kind=default_kind, default_namespace=namespace, field="")
    except ValidationFailed:
        return None


class _Reader:
    """Collects the problems (errors) and warnings of one document."""

    def __init__(self, file: str, index: int) -> None:
        self.file = file
        self.index = index
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, where: str, reason: str) -> None:
        self.problems.append(Problem(self.file, self.index, where, reason))

    def warn(self, where: str, reason: str) -> None:
        self.warnings.append(Problem(self.file, self.index, where, reason))

    def errors_from(self, exc: ValidationFailed) -> None:
        for item in exc.errors:
            self.error(item.field, item.reason)

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(where, "must be a mapping")
            return {}
        return value

    def string(
        self, value: Any, where: str, *, required: bool = False, max_length: int | None = None
    ) -> str | None:
        if value is None or value == "":
            if required:
                self.error(where, "is required")
            return None
        if not isinstance(value, str):
            self.error(where, "must be a string")
            return None
        if max_length is not None and len(value) > max_length:
            self.error(where, f"must be at most {max_length} characters")
            return None
        return value

    def strings(self, value: Any, where: str) -> list[tuple[str, str]]:
        """A list of strings as (field, value) pairs."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(where, "must be a list")
            return []
        found = []
        for position, item in enumerate(value):
            if isinstance(item, str) and item.strip():
                found.append((f"{where}.{position}", item))
            else:
                self.error(f"{where}.{position}", "must be a non-empty string")
        return found

    def text_map(self, value: Any, where: str) -> dict[str, str]:
        """String values; a null value is dropped with a warning (it says nothing)."""
        result: dict[str, str] = {}
        for key, item in self.mapping(value, where).items():
            if item is None:
                self.warn(f"{where}.{key}", "has no value and was left out")
                continue
            text = _text(item)
            if text is None:
                self.error(f"{where}.{key}", "must be a string")
            else:
                result[str(key)] = text
        return result

    def ref(
        self,
        text: str,
        where: str,
        default_kind: str | None,
        namespace: str,
        kinds: frozenset[str] | None,
    ) -> Ref | None:
        """A reference; ``kinds`` None takes any kind but Group and User."""
        parsed = _parse_ref(text, default_kind, namespace)
        if parsed is None:  # parse again, uncached, for the errors with their field
            try:
                parse_ref(text, default_kind=default_kind, default_namespace=namespace, field=where)
            except ValidationFailed as exc:
                self.errors_from(exc)
            return None
        allowed = parsed.kind not in PEOPLE_KINDS if kinds is None else parsed.kind in kinds
        if not allowed:
            what = " or ".join(sorted(kinds)) if kinds else "catalog entity (not a group or user)"
            self.error(where, f"{text!r} must refer to a {what}")
            return None
        return parsed


Substitute = Callable[[str], bytes]  # relative target → the file's bytes (SourceError if not)


class NotFetched(Exception):
    """A URL the import does not fetch (not asked to, or not allowed); the message says why."""


def parse_file(
    name: str,
    data: bytes,
    *,
    name_rules: Mapping[str, str] | None,
    cache: DocumentCache | None = None,
    substitute: Substitute | None = None,
) -> ParsedFile:
    result = ParsedFile(name=name)
    if cache is None:
        documents, result.problems = load_documents(name, data)
    else:
        documents, result.problems = cache.load(data, lambda: load_documents(name, data))
    result.documents = len(documents)
    for index, document in enumerate(documents):
        if document is None:
            continue  # empty (e.g. after a trailing ---), or refused above
        reader = _Reader(name, index)
        placeholder, nul = _scan(document)
        if nul is not None:
            reader.error(nul, "must not contain NUL characters")
        else:
            if substitute is not None and placeholder:
                document = _substitute(reader, document, "", substitute)
            _parse_document(reader, document, result, name_rules)
        result.problems.extend(reader.problems)
        result.warnings.extend(reader.warnings)
    return result


SUBSTITUTIONS = ("$text", "$json", "$yaml")
URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def _scan(document: Any) -> tuple[bool, str | None]:
    """Whether any mapping in the document is a substitution, and where the first text with a
    NUL character is (no field means one; PostgreSQL refuses it). One walk for both: rebuilding
    every document to look for substitutions cost a fifth of a re-import (0.54 of 2.4 s)."""
    if isinstance(document, str):
        return False, ("document" if "\x00" in document else None)
    if not isinstance(document, (dict, list)):
        return False, None
    placeholder = False
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, where = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        if isinstance(value, dict) and len(value) == 1:
            placeholder = placeholder or any(k in value for k in SUBSTITUTIONS)
        for key, item in items:
            if isinstance(item, str):
                if "\x00" in item:
                    return placeholder, f"{where}.{key}".lstrip(".")
            elif isinstance(item, (dict, list)):
                stack.append((item, f"{where}.{key}".lstrip(".")))
            if isinstance(key, str) and "\x00" in key:
                return placeholder, f"{where}.{key}".lstrip(".")
    return placeholder, None


def _substitute(reader: _Reader, value: Any, where: str, read: Substitute) -> Any:
    """Replace ``{$text|$json|$yaml: ./file}`` with the file's content, as Backstage does; a URL
    is kept as the reference it is (with a warning), never fetched."""
    if isinstance(value, list):
        return [_substitute(reader, v, f"{where}.{i}", read) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in SUBSTITUTIONS:
        how, target = next(iter(value.items()))
        place = f"{where}.{how}".lstrip(".")
        if not isinstance(target, str) or not target.strip():
            reader.error(place, "must name a file")
            return value
        try:
            data = read(target)
            text = data.decode("utf-8")
        except NotFetched as exc:
            reader.warn(place, f"{target!r} is kept as a reference, not fetched: {exc}")
            return value
        except UnicodeDecodeError:
            reader.error(place, f"{target!r} is not valid UTF-8")
            return value
        except Exception as exc:  # a SourceError: missing, too big, outside the import
            reader.error(place, f"cannot read {target!r}: {exc}")
            return value
        if "\x00" in text:
            reader.error(place, f"{target!r} must not contain NUL characters")
            return value
        if how == "$text":
            return text
        if how == "$json":
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                reader.error(place, f"{target!r} is not JSON: {exc}")
                return value
        documents, refused = load_all(text)
        if refused is not None or len(documents) != 1:
            reason = refused.reason if refused is not None else "must hold one YAML document"
            reader.error(place, f"{target!r}: {reason}")
            return value
        return documents[0]
    return {k: _substitute(reader, v, f"{where}.{k}", read) for k, v in value.items()}


def _parse_document(
    reader: _Reader, document: Any, result: ParsedFile, name_rules: Mapping[str, str] | None
) -> None:
    if not isinstance(document, dict):
        what = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
        reader.error("document", f"must be a mapping, not a {what.get(type(document), 'value')}")
        return
    reader.string(document.get("apiVersion"), "apiVersion", required=True)
    kind_text = reader.string(document.get("kind"), "kind", required=True)
    metadata = reader.mapping(document.get("metadata"), "metadata")
    raw_spec = document.get("spec")
    if raw_spec is None and kind_text is not None and kind_text.lower() == "location":
        reader.warn("spec", "a Location without spec points nowhere; nothing to follow")
        return
    spec = reader.mapping(raw_spec, "spec")
    name = reader.string(metadata.get("name"), "metadata.name", required=True)
    namespace = reader.string(metadata.get("namespace"), "metadata.namespace") or "default"
    if kind_text is None:
        return
    kind = kind_text.lower()
    if kind == "location":
        _location(reader, spec, result)
        return
    if name is None or not _check_names(reader, name, namespace):
        return
    namespace = namespace.lower()
    if kind == "group":
        _group(reader, namespace, name, metadata, spec, result)
    elif kind == "user":
        _user(reader, namespace, name, metadata, spec, result)
    elif kind in ENTITY_KINDS:
        _entity(reader, ENTITY_KINDS[kind], namespace, name, metadata, spec, result, name_rules)
    elif not KIND_RE.match(kind_text):
        reader.error("kind", f"kind {kind_text!r} must be a letter followed by letters or digits")
    else:
        _other(reader, kind, namespace, name, metadata, spec, document, result)


def _check_names(reader: _Reader, name: str, namespace: str) -> bool:
    """Backstage's own naming rule, for every kind: a name that breaks it is refused."""
    ok = True
    for value, where, what in (
        (name, "metadata.name", "name"),
        (namespace, "metadata.namespace", "namespace"),
    ):
        try:
            check_name(value, where, what)
        except ValidationFailed as exc:
            reader.errors_from(exc)
            ok = False
    return ok


def _location(reader: _Reader, spec: dict[str, Any], result: ParsedFile) -> None:
    targets: list[tuple[str, str]] = []
    if (single := reader.string(spec.get("target"), "spec.target")) is not None:
        targets.append(("spec.target", single))
    targets.extend(reader.strings(spec.get("targets"), "spec.targets"))
    if not targets:
        reader.warn("spec.target", "a Location without a target points nowhere")
    for where, target in targets:
        result.targets.append((reader.index, where, target))


def _group(
    reader: _Reader,
    namespace: str,
    name: str,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    result: ParsedFile,
) -> None:
    slug = group_slug(namespace, name)
    if len(slug) > 63:
        reader.error("metadata.namespace", f"team slug {slug!r} would be over 63 characters")
        return
    if slug in RESERVED_SLUGS:
        reader.error("metadata.name", f"{slug!r} is reserved and cannot name a team")
        return
    profile = reader.mapping(spec.get("profile"), "spec.profile")
    display = (
        reader.string(profile.get("displayName"), "spec.profile.displayName", max_length=200)
        or reader.string(metadata.get("title"), "metadata.title", max_length=200)
        or name
    )
    members = []
    for where, text in reader.strings(spec.get("members"), "spec.members"):
        ref = reader.ref(text, where, "user", namespace, frozenset({"user"}))
        if ref is not None:
            members.append((where, ref))
    parent = None
    parent_text = reader.string(spec.get("parent"), "spec.parent")
    ref = reader.ref(parent_text, "spec.parent", "group", namespace, GROUP) if parent_text else None
    if ref is not None:
        parent = ("spec.parent", ref)
    children = []
    for where, text in reader.strings(spec.get("children"), "spec.children"):
        if (ref := reader.ref(text, where, "group", namespace, GROUP)) is not None:
            children.append((where, ref))
    annotations = reader.text_map(metadata.get("annotations"), "metadata.annotations")
    lead_text = annotations.get(LEAD, "").strip()
    lead = (f"metadata.annotations.{LEAD}", lead_text) if lead_text else None
    description = reader.string(metadata.get("description"), "metadata.description") or ""
    team_type = reader.string(spec.get("type"), "spec.type", max_length=63) or "team"
    result.groups.append(
        GroupDraft(
            reader.file,
            reader.index,
            namespace,
            name.lower(),
            slug,
            display,
            description,
            team_type,
            parent,
            children,
            members,
            lead,
        )
    )


def _user(
    reader: _Reader,
    namespace: str,
    name: str,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    result: ParsedFile,
) -> None:
    profile = reader.mapping(spec.get("profile"), "spec.profile")
    email = reader.string(profile.get("email"), "spec.profile.email")
    if email is not None:
        email = email.strip().lower()
        if not EMAIL_RE.match(email) or len(email) > 320:
            reader.error("spec.profile.email", f"{email!r} is not an email address")
            return
    display = (
        reader.string(profile.get("displayName"), "spec.profile.displayName", max_length=200)
        or name
    )
    member_of = []
    for where, text in reader.strings(spec.get("memberOf"), "spec.memberOf"):
        if (ref := reader.ref(text, where, "group", namespace, GROUP)) is not None:
            member_of.append((where, ref))
    annotations = reader.text_map(metadata.get("annotations"), "metadata.annotations")
    leads: list[tuple[str, Ref]] | bool = False
    lead_text = annotations.get(LEAD, "").strip()
    if lead_text.lower() == "true":
        leads = True
    elif lead_text:
        leads = []
        where = f"metadata.annotations.{LEAD}"
        for part in (p.strip() for p in lead_text.split(",")):
            if part and (ref := reader.ref(part, where, "group", namespace, GROUP)) is not None:
                leads.append((where, ref))
    result.users.append(
        UserDraft(
            reader.file, reader.index, namespace, name.lower(), email, display, member_of, leads
        )
    )


def _links(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        reader.error("metadata.links", "must be a list")
        return []
    links = []
    for position, item in enumerate(value):
        where = f"metadata.links.{position}"
        link = reader.mapping(item, where)
        url = reader.string(link.get("url"), f"{where}.url", required=True, max_length=2000)
        title = reader.string(link.get("title"), f"{where}.title", max_length=200) or ""
        icon = reader.string(link.get("icon"), f"{where}.icon", max_length=50)
        link_type = str(link.get("type") or "").lower()
        if url is not None:
            links.append(
                {
                    "url": url,
                    "title": title,
                    "type": link_type if link_type in LINK_TYPES else "other",
                    "icon": icon,
                }
            )
    return links


def _owner(reader: _Reader, spec: dict[str, Any], namespace: str, *, required: bool) -> Ref | None:
    text = reader.string(spec.get("owner"), "spec.owner", required=required)
    if text is None:
        return None
    return reader.ref(text, "spec.owner", "group", namespace, PEOPLE_KINDS)


def _refs(
    reader: _Reader, spec: dict[str, Any], namespace: str, fields: Mapping[str, RefField]
) -> list[RefUse]:
    refs = []
    for spec_field, (relation, default_kind, kinds, snapshot_name) in fields.items():
        raw = spec.get(spec_field)
        if spec_field in SINGLE_REF_FIELDS:
            single = reader.string(raw, f"spec.{spec_field}")
            pairs = [(f"spec.{spec_field}", single)] if single is not None else []
        else:
            pairs = reader.strings(raw, f"spec.{spec_field}")
        for where, text in pairs:
            ref = reader.ref(text, where, default_kind, namespace, kinds)
            if ref is not None:
                refs.append(RefUse(where, relation, snapshot_name, ref, ref.key))
    return refs


def _entity(
    reader: _Reader,
    kind: str,
    namespace: str,
    name: str,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    result: ParsedFile,
    name_rules: Mapping[str, str] | None,
) -> None:
    before = len(reader.problems)
    owner = _owner(reader, spec, namespace, required=True)
    annotations = reader.text_map(metadata.get("annotations"), "metadata.annotations")
    accountable = annotations.pop(ACCOUNTABLE, "").strip().lower() or None
    if accountable is not None and not EMAIL_RE.match(accountable):
        reader.error(f"metadata.annotations.{ACCOUNTABLE}", f"{accountable!r} is not an email")
    tier_text = annotations.pop(TIER, "3").strip()
    if tier_text not in {"1", "2", "3", "4"}:
        reader.error(
            f"metadata.annotations.{TIER}", f"tier must be 1, 2, 3 or 4, not {tier_text!r}"
        )
    cost_centre = annotations.pop(COST_CENTRE, "").strip() or None
    if cost_centre is not None and len(cost_centre) > 100:
        reader.error(f"metadata.annotations.{COST_CENTRE}", "must be at most 100 characters")
    tags = []
    for where, tag in reader.strings(metadata.get("tags"), "metadata.tags"):
        try:
            tags.append(check_tag(tag, where))
        except ValidationFailed as exc:
            reader.errors_from(exc)
    lifecycle = reader.string(spec.get("lifecycle"), "spec.lifecycle") or Lifecycle.PRODUCTION.value
    if lifecycle not in LIFECYCLES:
        reader.error("spec.lifecycle", f"must be one of {', '.join(sorted(LIFECYCLES))}")
    default_type = "service" if kind == "service" else None
    version = _text(spec.get("version")) if spec.get("version") is not None else None
    if version is not None and len(version) > 63:
        reader.error("spec.version", "must be at most 63 characters")
    refs = _refs(reader, spec, namespace, REF_FIELDS)
    if owner is not None and len(reader.problems) == before:
        try:
            check_policy(
                kind, name, group_slug(owner.namespace, owner.name), name_rules, "metadata.name"
            )
        except ValidationFailed as exc:
            reader.errors_from(exc)
    result.entities.append(
        EntityDraft(
            file=reader.file,
            index=reader.index,
            kind=kind,
            namespace=namespace,
            name=name,
            owner=owner,
            accountable=accountable,
            title=reader.string(metadata.get("title"), "metadata.title", max_length=200) or "",
            description=reader.string(metadata.get("description"), "metadata.description") or "",
            type=reader.string(spec.get("type"), "spec.type", max_length=63) or default_type,
            lifecycle=lifecycle,
            tier=int(tier_text) if tier_text in {"1", "2", "3", "4"} else 3,
            tags=sorted(set(tags)),
            labels=reader.text_map(metadata.get("labels"), "metadata.labels"),
            annotations=annotations,
            links=_links(reader, metadata.get("links")),
            cost_centre=cost_centre,
            version=version,
            spec_extra={k: _plain(v) for k, v in spec.items() if k not in KNOWN_SPEC},
            refs=refs,
        )
    )


def _other(
    reader: _Reader,
    kind: str,
    namespace: str,
    name: str,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    document: dict[str, Any],
    result: ParsedFile,
) -> None:
    """A kind Lamplighter does not model: kept whole, with its owner and relations."""
    owner = _owner(reader, spec, namespace, required=False)
    tags = [tag for _, tag in reader.strings(metadata.get("tags"), "metadata.tags")]
    lifecycle = _text(spec.get("lifecycle")) or ""
    result.entities.append(
        EntityDraft(
            file=reader.file,
            index=reader.index,
            kind=kind,
            namespace=namespace,
            name=name,
            owner=owner,
            accountable=None,
            title=(_text(metadata.get("title")) or "")[:200],
            description=_text(metadata.get("description")) or "",
            type=(_text(spec.get("type")) or "")[:63] or None,
            lifecycle=lifecycle[:16] or Lifecycle.PRODUCTION.value,
            tags=sorted({t.lower()[:63] for t in tags}),
            refs=_refs(reader, spec, namespace, OTHER_REF_FIELDS),
            document=_plain(document),
        )
    )


def iter_drafts(files: list[ParsedFile]) -> Iterator[EntityDraft]:
    for parsed in files:
        yield from parsed.entities
