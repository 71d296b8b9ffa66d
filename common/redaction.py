"""One redaction for every exit: what is stored, rendered, logged or exported passes through here.

:func:`redact_text` removes credentials from free text: any value registered with
:func:`register_secret` (and its URL- and JSON-escaped forms), PEM blocks, JWTs, Slack, GitHub,
AWS and OpenAI-style tokens, ``Bearer``/``Basic`` credentials of any length, the password of a
URL's user info, and the value of ``key=value`` / ``key: value`` / ``"key": "value"`` pairs whose
key is credential-shaped (``password``, ``token``, ``api_key``, ``authorization``, ``cookie``, ...).

:func:`redact` is the structural version, and what stores, spans, outbox payloads and log lines
use: a JSON-safe copy in which every value under a credential-shaped key is replaced whole
(numbers, booleans and ``None`` are kept, so token counts stay readable) and every string is
passed through :func:`redact_text`. Credentials named by data rather than by a key are found
too: a table ``{"columns": [...], "rows": [[...]]}`` (a SQL answer) loses the cells of its
credential-shaped columns, and a ``{"name": "DB_PASSWORD", "value": ...}`` pair (a Kubernetes
env var, a header list, a tag) its value. Long strings can be cut at the same time
(``max_text``).

Secret references (``${secret:NAME}``, resolved only inside an adapter at call time) are not
secrets and survive redaction, so a card or trace can show which secret a step uses.
:func:`literal_credentials` finds credentials written literally where a reference belongs (the
runbook loader refuses them).

The registry of secret values is process-wide: whatever resolves a secret or reads one from the
environment registers it, and from then on no exit lets it through. This module does no I/O.
"""

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
TRUNCATED = "…[truncated]"
TOO_DEEP = "[too deep]"
MAX_DEPTH = 8
MIN_SECRET_LEN = 4  # shorter values would blank out ordinary words; they are not registered

# A reference to a configured secret: ``${secret:SLACK_WEBHOOK}`` (environment or secrets
# folder), ``${secret:vault:checkout/db#password}`` (a field of a Vault KV v2 secret) or
# ``${secret:vault-lease:database/creds/readonly#username}`` (a field of a dynamic secret).
SECRET_REF = re.compile(
    r"\$\{secret:([A-Za-z0-9_.-]{1,128}"
    r"|vault(?:-lease)?:[A-Za-z0-9_.-]{1,128}(?:/[A-Za-z0-9_.-]{1,128}){0,15}#[A-Za-z0-9_.-]{1,128})\}"
)

_KEY_WORDS = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key"
    r"|authorization|auth[_-]?header|cookie|credential|signature|session[_-]?id|jwt|bearer"
)
# A mapping key that names a credential (matched anywhere in the key, any case).
_CREDENTIAL_KEY = re.compile(rf"(?i)(?:{_KEY_WORDS})")
# "tokens": 120 and "max_tokens=4000" are counts; "token=123456" may be a one-time code.
_COUNT_KEY = re.compile(r"(?i)tokens|token_?count")

_PEM = re.compile(r"-----BEGIN (?P<pem>[A-Z0-9 ]{1,40})-----[\s\S]*?(?:-----END (?P=pem)-----|\Z)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]*+")
_SLACK = re.compile(r"\b(?:xox[abposre]|xoxe\.xox[bp]|xapp)-[A-Za-z0-9-]++")
_GITHUB = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}+|github_pat_[A-Za-z0-9_]{20,}+)")
_AWS_PREFIXES: tuple[str, ...] = (
    "A3T", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
    "ASCA",
)  # fmt: skip
_AWS = re.compile(rf"\b(?:A3T[A-Z0-9]|{'|'.join(_AWS_PREFIXES[1:])})[A-Z0-9]{{16}}\b")
_SK = re.compile(r"\bsk-[A-Za-z0-9_-]{20,}+")
_BEARER = re.compile(r"(?i)\bbearer\s++[A-Za-z0-9._~+/=-]++")
_BASIC = re.compile(r"(?i)\bbasic\s++(?P<value>[A-Za-z0-9+/]++={0,2})")
_USERINFO = re.compile(r"://[^\s:/@]*+:(?P<value>[^\s@/]++)@")
# A header whose whole value is the secret: "Cookie: a=1; b=2", "Authorization: Digest ...".
_HEADER = re.compile(
    r"(?i)\b(?:proxy-)?(?:authorization|(?:set-)?cookie)[ \t]*+:[ \t]*+"
    r"(?!\[redacted\])(?P<value>[^\s\"'][^\r\n\"']*+)"
)
# key, separator, value; the value is quoted, or runs to a delimiter. Keys start at a word start
# (and not inside a ``${secret:...}`` reference); the lookahead keeps other keys' values open.
_PAIR = re.compile(
    rf"(?<![\w.-])(?<!\$\{{)(?P<key>(?=[\w.-]*?(?i:{_KEY_WORDS}))[\w.-]++)"
    r"(?P<sep>[\"']?[ \t]*+[:=][ \t]*+)"
    r"(?:\"(?P<dq>[^\"\n]*+)\"|'(?P<sq>[^'\n]*+)'"
    r"|(?P<bare>\[redacted\]|(?:(?i:bearer|basic|token|digest)[ \t]++)?[^\s&;,\"'<>]++))"
    r"(?=(?P<prose> [a-z]+ [a-z])?)"
)
# "the credential: check the secret" is a sentence, not a pair: after ": ", a short lower-case
# word that the sentence goes on from is prose. Values after "=" are always redacted.
_PROSE_WORD = re.compile(r"[a-z]{1,10}")
_PAIR_MARKERS: tuple[str, ...] = (
    "pass", "secret", "token", "key", "auth", "cookie", "credential", "signature", "session",
    "jwt", "bearer",
)  # fmt: skip
_NUMBER = re.compile(r"[$€£]?\d[\d.,]*[kKmM]?")


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """The registry at one moment: its pattern, keyed (cheaply) by a generation number."""

    generation: int
    pattern: re.Pattern[str] | None

    def __hash__(self) -> int:
        return self.generation

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Snapshot) and other.generation == self.generation


class _Registry:
    """The secret values no exit may let through, as one compiled alternation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.snapshot = _Snapshot(0, None)

    def add(self, values: Iterable[str]) -> int:
        added = 0
        with self._lock:
            for value in values:
                if value not in self._values:
                    self._values.add(value)
                    added += 1
            if added:
                # Longest first: a value that contains another is replaced whole.
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = re.compile("|".join(map(re.escape, ordered)))
                self.snapshot = _Snapshot(self.snapshot.generation + 1, pattern)
        return added

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.snapshot = _Snapshot(self.snapshot.generation + 1, None)

    def __len__(self) -> int:
        return len(self._values)


_REGISTRY = _Registry()


def _forms(value: str) -> Iterator[str]:
    """The value and the escaped forms it takes in URLs and JSON text."""
    yield value
    yield quote(value, safe="")
    yield quote_plus(value, safe="")
    yield json.dumps(value)[1:-1]


def register_secret(value: str | None) -> bool:
    """Add ``value`` to the values redacted everywhere; returns True if it was new.

    Values shorter than ``MIN_SECRET_LEN`` characters, or only whitespace, are ignored (they
    would blank out ordinary text and protect nothing); references are never registered.
    """
    if not value or len(value.strip()) < MIN_SECRET_LEN or SECRET_REF.fullmatch(value):
        return False
    forms = {form for form in _forms(value) if len(form) >= MIN_SECRET_LEN}
    return _REGISTRY.add(forms) > 0


def registered_secrets() -> int:
    """How many values (escaped forms included) are registered."""
    return len(_REGISTRY)


def forget_secrets() -> None:
    """Empty the registry (for tests)."""
    _REGISTRY.clear()


@lru_cache(maxsize=4096)
def is_credential_key(name: str) -> bool:
    """True when a mapping key names a credential (``Authorization``, ``db_password``, ...).

    Cached: the keys of stored details, spans and payloads are a small vocabulary asked
    about on every write.
    """
    return _CREDENTIAL_KEY.search(name) is not None


def is_reference_only(text: str) -> bool:
    """True when ``text`` holds secret references and nothing secret beside them.

    ``${secret:API}``, ``Bearer ${secret:API}`` and ``${secret:USER}:${secret:PASS}`` qualify:
    what remains once references are removed is a scheme word and punctuation.
    """
    if not SECRET_REF.search(text):
        return False
    rest = SECRET_REF.sub("", text)
    rest = re.sub(r"(?i)\b(?:bearer|basic|token|digest)\b", "", rest)
    return re.fullmatch(r"[\s:=;,/@-]*", rest) is not None


def _basic_value(encoded: str) -> bool:
    """True when ``encoded`` decodes as Basic credentials (``user:password`` in base64)."""
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _whole(_match: re.Match[str]) -> str:
    return REDACTED


def _value_only(match: re.Match[str]) -> str:
    """Replace the ``value`` group, keeping what names it (scheme, header, user name)."""
    value = match.group("value")
    if is_reference_only(value):
        return match.group(0)
    offset = match.start()
    start, end = match.start("value") - offset, match.end("value") - offset
    text = match.group(0)
    return text[:start] + REDACTED + text[end:]


def _basic(match: re.Match[str]) -> str:
    return REDACTED if _basic_value(match.group("value")) else match.group(0)


def _pair(match: re.Match[str]) -> str:
    key, sep = match.group("key"), match.group("sep")
    dq, sq, bare = match.group("dq"), match.group("sq"), match.group("bare")
    value = dq if dq is not None else sq if sq is not None else bare
    keep = (
        not value
        or value == REDACTED
        or is_reference_only(value)
        or (_COUNT_KEY.search(key) is not None and _NUMBER.fullmatch(value) is not None)
        or (
            bare is not None
            and match.group("prose") is not None
            and "=" not in sep
            and sep.endswith((" ", "\t"))
            and _PROSE_WORD.fullmatch(value) is not None
        )
    )
    if keep:
        return match.group(0)
    if dq is not None:
        return f'{key}{sep}"{REDACTED}"'
    if sq is not None:
        return f"{key}{sep}'{REDACTED}'"
    return f"{key}{sep}{REDACTED}"


Rule = tuple[tuple[str, ...], bool, re.Pattern[str], Callable[[re.Match[str]], str]]
# (markers, whether they are matched case-blind, pattern, replacement), applied in this order;
# a rule runs only when one of its markers occurs in the text (most text has none).
_RULES: tuple[Rule, ...] = (
    (("-----BEGIN ",), False, _PEM, _whole),
    (("authorization", "cookie"), True, _HEADER, _value_only),
    (("bearer",), True, _BEARER, _whole),
    (("basic",), True, _BASIC, _basic),
    (("eyJ",), False, _JWT, _whole),
    (("xox", "xapp-"), False, _SLACK, _whole),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), False, _GITHUB, _whole),
    (_AWS_PREFIXES, False, _AWS, _whole),
    (("sk-",), False, _SK, _whole),
    (("://",), False, _USERINFO, _value_only),
    (_PAIR_MARKERS, True, _PAIR, _pair),
)
# One search over the lower-cased text tells whether any rule can apply (a plain alternation
# of literals is far cheaper than the rules, and most text matches none of them).
_GATE = re.compile(
    "|".join(sorted({re.escape(m.lower()) for markers, _b, _p, _r in _RULES for m in markers}))
)


def _apply_rules(text: str) -> str:
    lowered = text.lower()
    if _GATE.search(lowered) is None:
        return text
    for markers, blind, pattern, replace in _RULES:
        haystack = lowered if blind else text
        if not any(marker in haystack for marker in markers):
            continue
        changed = pattern.sub(replace, text)
        if changed != text:
            text = changed
            lowered = text.lower()
    return text


@lru_cache(maxsize=4096)
def _redact_cached(text: str, registry: _Snapshot) -> str:
    # The registry's generation is part of the key: a value registered meanwhile (on another
    # thread) can never be answered from an entry made before it was known.
    pattern = registry.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _apply_rules(text)


def redact_text(text: str) -> str:
    """``text`` with every credential in it replaced by ``[redacted]``."""
    registry = _REGISTRY.snapshot
    if len(text) > 512:
        return _redact_cached.__wrapped__(text, registry)  # long texts rarely repeat: no cache
    return _redact_cached(text, registry)


def _cut(text: str, max_text: int | None) -> str:
    return text if max_text is None or len(text) <= max_text else text[:max_text] + TRUNCATED


def redact(
    value: Any, *, max_text: int | None = None, max_depth: int = MAX_DEPTH, _depth: int = 0
) -> Any:
    """A JSON-safe copy of ``value`` with credentials redacted (and strings cut at ``max_text``).

    Mappings keep their keys (as strings); a credential-shaped key's value is replaced whole
    unless it is a number, a boolean, ``None`` or a string of secret references. Sequences and
    sets become lists; other objects become their redacted ``str()``; nesting past
    ``max_depth`` becomes ``[too deep]``.
    """
    if isinstance(value, str):
        return _cut(redact_text(value), max_text)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth >= max_depth:
        return TOO_DEEP
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        named = _named_value_key(value)
        columns = _credential_columns(value)
        for key, item in value.items():
            name = str(key)
            if (is_credential_key(name) or name == named) and _hidden(item):
                out[name] = REDACTED
            elif columns and name == "rows" and isinstance(item, list | tuple):
                out[name] = [
                    _masked_row(row, columns, max_text=max_text, max_depth=max_depth, depth=_depth)
                    for row in item
                ]
            else:
                out[name] = redact(item, max_text=max_text, max_depth=max_depth, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [
            redact(item, max_text=max_text, max_depth=max_depth, _depth=_depth + 1)
            for item in value
        ]
    return _cut(redact_text(str(value)), max_text)


def _hidden(item: Any) -> bool:
    """True when a value named as a credential is replaced whole (counts and references stay)."""
    return not isinstance(item, bool | int | float | None) and not (
        isinstance(item, str) and is_reference_only(item)
    )


_NAME_FIELDS = ("name", "Name", "NAME", "key", "Key", "KEY")
_VALUE_FIELDS = ("value", "Value", "VALUE")


def _named_value_key(mapping: Mapping[Any, Any]) -> str | None:
    """The value field of a ``{"name": "API_TOKEN", "value": ...}`` pair (``Key``/``Value``
    and upper case too), when the name is credential-shaped. Dictionary lookups only: this
    runs for every mapping that is redacted."""
    value_key = next((f for f in _VALUE_FIELDS if f in mapping), None)
    if value_key is None:
        return None
    for field in _NAME_FIELDS:
        label = mapping.get(field)
        if isinstance(label, str) and is_credential_key(label):
            return value_key
    return None


def _credential_columns(mapping: Mapping[Any, Any]) -> frozenset[int]:
    """Positions of the credential-shaped columns of a ``{"columns", "rows"}`` table."""
    columns = mapping.get("columns")
    if not isinstance(columns, list | tuple) or "rows" not in mapping:
        return frozenset()
    return frozenset(
        i for i, c in enumerate(columns) if isinstance(c, str) and is_credential_key(c)
    )


def _masked_row(
    row: Any, columns: frozenset[int], *, max_text: int | None, max_depth: int, depth: int
) -> Any:
    """One row of a table: the cells of credential columns replaced, the rest redacted."""
    if not isinstance(row, list | tuple) or depth + 1 >= max_depth:
        return redact(row, max_text=max_text, max_depth=max_depth, _depth=depth + 1)
    return [
        REDACTED
        if i in columns and _hidden(cell)
        else redact(cell, max_text=max_text, max_depth=max_depth, _depth=depth + 2)
        for i, cell in enumerate(row)
    ]


def literal_credentials(value: Any, *, path: str = "") -> list[str]:
    """Where ``value`` holds a credential written out rather than as a ``${secret:NAME}``.

    Returns dotted paths (``headers.Authorization``, ``url``): a non-empty string or a number
    under a credential-shaped key that is not only references, or any string that redaction
    would change. Token counts (numbers under ``*token*`` keys) are not credentials.
    """
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            name = str(key)
            if is_credential_key(name) and not isinstance(item, Mapping | list | tuple):
                if _literal_under_key(name, item):
                    found.append(where)
                continue
            if is_credential_key(name):
                found.append(where)  # a structure under a credential key: user, password, ...
                continue
            found.extend(literal_credentials(item, path=where))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(literal_credentials(item, path=f"{path}[{index}]"))
    elif isinstance(value, str) and redact_text(value) != value:
        found.append(path or "(value)")
    return found


def _literal_under_key(name: str, item: Any) -> bool:
    if item is None or isinstance(item, bool):
        return False
    if isinstance(item, int | float):
        return _COUNT_KEY.search(name) is None
    text = str(item)
    return bool(text.strip()) and not is_reference_only(text)


def secret_names(value: Any) -> set[str]:
    """The names of every ``${secret:NAME}`` reference inside ``value``."""
    names: set[str] = set()
    if isinstance(value, str):
        names.update(SECRET_REF.findall(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            names |= secret_names(item)
    elif isinstance(value, list | tuple):
        for item in value:
            names |= secret_names(item)
    return names
