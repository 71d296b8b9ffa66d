"""The one redaction: every credential shape is removed from text and structures, nothing else.

Property tests plant a secret of each shape at a random place of random text or of a random
JSON structure and assert it does not survive; others pin what must survive (references,
token counts, ordinary operational text).
"""

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot import strings
from common.redaction import (
    REDACTED,
    forget_secrets,
    is_credential_key,
    is_reference_only,
    literal_credentials,
    redact,
    redact_text,
    register_secret,
    registered_secrets,
    secret_names,
)

# Secret parts are drawn from letters that the surrounding prose and structures never use, so
# finding one afterwards can only mean it survived.
ALNUM = "QRSTUVWXYZ"
UPPER = "QRSTUVWXYZ"
DIGITS = "0123456789"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def chars(size: int, alphabet: str = ALNUM, *, max_size: int | None = None) -> Any:
    return st.text(alphabet=alphabet, min_size=size, max_size=max_size or size)


# (kind, strategy of (text to plant, secret part that must vanish))
SHAPES: dict[str, Any] = {
    "slack": st.builds(
        lambda p, a, b: (f"xox{p}-{a}-{b}", f"{a}-{b}"),
        st.sampled_from("abposr"),
        chars(8, DIGITS, max_size=13),
        chars(4, max_size=30),
    ),
    "slack app": st.builds(lambda a: (f"xapp-1-{a}", a), chars(6, max_size=30)),
    "github": st.builds(
        lambda p, a: (f"gh{p}_{a}", a), st.sampled_from("pousr"), chars(36, max_size=40)
    ),
    "aws": st.builds(
        lambda p, a: (p + a, p + a),
        st.sampled_from(["AKIA", "ASIA", "AROA"]),
        chars(16, UPPER + DIGITS),
    ),
    "jwt": st.builds(
        lambda a, b, c: (f"eyJ{a}.eyJ{b}.{c}", f"{b}.{c}"),
        chars(4, max_size=30),
        chars(4, max_size=40),
        chars(0, max_size=40),
    ),
    "pem": st.builds(
        lambda body: (f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----", body),
        chars(8, max_size=80),
    ),
    "bearer": st.builds(lambda v: (f"Bearer {v}", v), chars(1, ALNUM + "._~+/=-", max_size=40)),
    "basic": st.builds(
        lambda u, p: (f"Basic {base64.b64encode(f'{u}:{p}'.encode()).decode()}", p),
        chars(1, max_size=10),
        chars(6, max_size=20),
    ).map(lambda pair: (pair[0], pair[0].split()[1])),
    "password pair": st.builds(
        lambda k, sep, v: (f"{k}{sep}{v}", v),
        st.sampled_from(["password", "db_passwd", "client_secret", "api_key", "X-Api-Key"]),
        st.sampled_from(["=", ": ", " = "]),
        chars(4, max_size=24),
    ),
    "query token": st.builds(
        lambda v: (f"https://api.example.com/v1?user=bob&access_token={v}&x=1", v),
        chars(4, max_size=24),
    ),
    "url password": st.builds(
        lambda v: (f"postgresql://opsgate:{v}@db.internal:5432/ops", v), chars(4, max_size=24)
    ),
    "json pair": st.builds(
        lambda v: (json.dumps({"refresh_token": v, "n": 1}), v), chars(4, max_size=24)
    ),
    "cookie header": st.builds(
        lambda a, b: (f"Cookie: sid={a}; theme={b}", a), chars(6, max_size=20), chars(6)
    ),
}
PROSE = st.text(alphabet="abcdefghij klmnop,.()", max_size=60)


@settings(max_examples=400)
@given(kind=st.sampled_from(sorted(SHAPES)), data=st.data(), before=PROSE, after=PROSE)
def test_no_planted_secret_survives_in_text(
    kind: str, data: st.DataObject, before: str, after: str
) -> None:
    planted, secret = data.draw(SHAPES[kind])
    assume(secret not in before and secret not in after)  # (e.g. a bearer token ".")
    out = redact_text(f"{before} {planted} {after}")
    assert secret not in out
    assert REDACTED in out


@settings(max_examples=200)
@given(kind=st.sampled_from(sorted(SHAPES)), data=st.data(), before=PROSE)
def test_redaction_is_idempotent(kind: str, data: st.DataObject, before: str) -> None:
    planted, _secret = data.draw(SHAPES[kind])
    once = redact_text(f"{before} {planted}")
    assert redact_text(once) == once


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), PROSE)


def _nested(inner: Any) -> Any:
    """Lists and mappings of ``inner`` (a named function: hypothesis inspects its source)."""
    keys = st.sampled_from(["a", "b", "status", "note", "items"])
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3)


JSON = st.recursive(JSON_LEAVES, _nested, max_leaves=10)


def plant_at(value: Any, path: list[int], planted: Any) -> Any:
    """``value`` with ``planted`` put at a place chosen by ``path``."""
    if not path:
        return {"wrapped": value, "extra": planted}
    step, rest = path[0], path[1:]
    if isinstance(value, dict) and value:
        key = sorted(value)[step % len(value)]
        return {**value, key: plant_at(value[key], rest, planted)}
    if isinstance(value, list) and value:
        index = step % len(value)
        return [*value[:index], plant_at(value[index], rest, planted), *value[index + 1 :]]
    return [value, planted]


@settings(max_examples=300)
@given(
    base=JSON,
    path=st.lists(st.integers(0, 5), max_size=4),
    kind=st.sampled_from(sorted(SHAPES)),
    data=st.data(),
    as_key=st.sampled_from(["", "password", "Authorization", "x-api-key", "session_id"]),
)
def test_no_planted_secret_survives_in_structures(
    base: Any, path: list[int], kind: str, data: st.DataObject, as_key: str
) -> None:
    planted, secret = data.draw(SHAPES[kind])
    # A secret that is part of the structure around it (a one-character bearer value "_" in
    # the key "session_id") cannot be told apart by searching for it: such examples say nothing.
    around = json.dumps(redact(plant_at(base, path, {as_key: "~"} if as_key else "~")))
    assume(secret not in around)
    leaf: Any = {as_key: planted} if as_key else planted
    out = json.dumps(redact(plant_at(base, path, leaf)))
    assert secret not in out


CREDENTIAL_NAMES = st.sampled_from(
    ["password", "PASSWORD", "db_passwd", "api_token", "API_KEY", "client_secret", "authorization"]
)
PLAIN_NAMES = st.sampled_from(["id", "name", "email", "created_at", "role", "HOME"])


@settings(max_examples=200)
@given(
    base=JSON,
    path=st.lists(st.integers(0, 5), max_size=4),
    plain=st.lists(PLAIN_NAMES, min_size=0, max_size=3, unique=True),
    credential=CREDENTIAL_NAMES,
    at=st.integers(0, 3),
    # any value: a password column holds no recognisable shape ("Zq" occurs in nothing else)
    secret=chars(0, max_size=24).map(lambda v: "Zq" + v),
    rows=st.integers(1, 3),
)
def test_a_credential_column_of_a_table_is_redacted_anywhere(
    base: Any,
    path: list[int],
    plain: list[str],
    credential: str,
    at: int,
    secret: str,
    rows: int,
) -> None:
    """A SQL answer (``{"columns", "rows"}``) names its credentials by column, not by key."""
    columns = [*plain]
    columns.insert(at % (len(columns) + 1), credential)
    table = {
        "columns": columns,
        "rows": [[secret if c == credential else f"v{i}" for c in columns] for i in range(rows)],
        "row_count": rows,
    }
    out = redact(plant_at(base, path, table))
    assert secret not in json.dumps(out)
    assert all(f"v{i}" in json.dumps(out) for i in range(rows) if plain)  # the rest is kept


@settings(max_examples=200)
@given(
    base=JSON,
    path=st.lists(st.integers(0, 5), max_size=4),
    credential=CREDENTIAL_NAMES,
    fields=st.sampled_from(
        [("name", "value"), ("Name", "Value"), ("key", "value"), ("Key", "Value")]
    ),
    secret=chars(0, max_size=24).map(lambda v: "Zq" + v),
)
def test_the_value_of_a_credential_named_pair_is_redacted_anywhere(
    base: Any, path: list[int], credential: str, fields: tuple[str, str], secret: str
) -> None:
    """A Kubernetes env var, a header list or a tag: ``{"name": "DB_PASSWORD", "value": ...}``."""
    name, value = fields
    pairs = [{name: "HOME", value: "/srv"}, {name: credential, value: secret}]
    out = json.dumps(redact(plant_at(base, path, {"env": pairs})))
    assert secret not in out
    assert "/srv" in out


def test_tables_and_pairs_keep_what_is_not_a_credential() -> None:
    table = {
        "columns": ["user", "password", "tokens"],
        "rows": [["alice", "hunter2", 3], ["bob", None, 4]],
        "truncated": False,
    }
    assert redact(table) == {
        "columns": ["user", "password", "tokens"],
        "rows": [["alice", REDACTED, 3], ["bob", None, 4]],
        "truncated": False,
    }
    assert redact({"columns": ["a"], "rows": [["x"]]}) == {"columns": ["a"], "rows": [["x"]]}
    assert redact({"name": "api_token", "value": "${secret:API}"}) == {
        "name": "api_token",
        "value": "${secret:API}",
    }
    assert redact({"name": "replicas", "value": "3"}) == {"name": "replicas", "value": "3"}
    assert redact(redact(table)) == redact(table)


@given(value=st.text(alphabet=ALNUM + DIGITS + "-_.:/+=", min_size=4, max_size=40), text=PROSE)
def test_a_registered_value_is_redacted_in_every_form(value: str, text: str) -> None:
    forget_secrets()  # each example starts empty
    assert register_secret(value)
    for form in (value, quote(value, safe=""), quote_plus(value, safe="")):
        assert form not in redact_text(f"{text}{form}{text}")
    assert json.dumps(value)[1:-1] not in json.dumps(redact({"body": f"x {value} y"}))


def test_short_or_empty_values_are_not_registered() -> None:
    assert not register_secret("")
    assert not register_secret("abc")
    assert not register_secret("    ")
    assert not register_secret("${secret:API}")
    assert registered_secrets() == 0
    assert redact_text("abc is a word") == "abc is a word"


def test_the_longest_registered_value_wins() -> None:
    register_secret("alpha-beta")
    register_secret("alpha-beta-gamma")
    assert redact_text("x alpha-beta-gamma y") == f"x {REDACTED} y"


@pytest.mark.parametrize(
    "text",
    [
        "GET http://127.0.0.1:9000/svc/checkout/health -> 200 (3 ms)",
        "Restart checkout-api",
        "spent 120 tokens, $0.0042",
        "tokens: 120",
        "tokens=120",
        "grant 3f2a has an invalid signature; it was not issued by opsgate",
        "SLACK_BOT_TOKEN must be set to the bot token (xoxb-...) from OAuth & Permissions",
        "Basic checks passed",
        "the secret: ${secret:API_TOKEN}",
        "Authorization: Bearer ${secret:API_TOKEN}",
        "https://api.example.com/?token=${secret:API}&x=1",
        "set OPSGATE_SECRET_API or put a file 'API' in OPSGATE_SECRETS_DIR",
        "opsgate-0123456789abcdef0123456789abcdef",
        "fakefix it, token [redacted]",
        "the target refused opsgate's credential: check the secret and the account",
    ],
)
def test_ordinary_text_and_references_pass_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_structures_keep_counts_references_and_shape() -> None:
    value = {
        "tokens": 120,
        "spent_tokens": 7,
        "token": None,
        "secret": True,
        "headers": {"Authorization": "Bearer ${secret:API}", "X-Api-Key": "abc123"},
        "password": 1234,
        "items": ("a", {"cookie": "sid=1"}),
    }
    assert redact(value) == {
        "tokens": 120,
        "spent_tokens": 7,
        "token": None,
        "secret": True,
        "headers": {"Authorization": "Bearer ${secret:API}", "X-Api-Key": REDACTED},
        "password": 1234,  # numbers are kept in stored data (counts); runbooks refuse them
        "items": ["a", {"cookie": REDACTED}],
    }


def test_deep_structures_are_cut_unless_asked_deeper() -> None:
    value: Any = "leaf"
    for _ in range(12):
        value = {"d": value}
    assert "[too deep]" in json.dumps(redact(value))
    assert "leaf" in json.dumps(redact(value, max_depth=64))


@pytest.mark.parametrize(
    ("key", "credential"),
    [
        ("Authorization", True),
        ("set-cookie", True),
        ("DB_PASSWORD", True),
        ("client_secret", True),
        ("apikey", True),
        ("private_key", True),
        ("x-session-id", True),
        ("idempotency_key", False),
        ("tokens_used", True),  # a key check only: the value decides (counts are kept)
        ("status", False),
        ("nonce", False),
        ("private_metadata", False),
    ],
)
def test_credential_keys(key: str, credential: bool) -> None:
    assert is_credential_key(key) is credential


def test_references_only() -> None:
    assert is_reference_only("${secret:A}")
    assert is_reference_only("Bearer ${secret:A}")
    assert is_reference_only("${secret:USER}:${secret:PASS}")
    assert not is_reference_only("Bearer abc ${secret:A}")
    assert not is_reference_only("Bearer abc")
    assert secret_names({"a": ["x ${secret:ONE}", {"b": "${secret:TWO}"}], "n": 3}) == {
        "ONE",
        "TWO",
    }


def test_literal_credentials_name_where_they_are() -> None:
    args = {
        "url": "https://x.example/?api_key=abc123",
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "${secret:KEY}"},
        "json": {"password": "hunter22", "items": ["ok", "xoxb-1234-abcdef"]},
        "creds": {"credentials": {"user": "u"}},
        "max_tokens": 100,
        "note": "Bearer {token}",  # a template outside a credential key: nothing literal
    }
    assert sorted(literal_credentials(args)) == [
        "creds.credentials",
        "headers.Authorization",
        "json.items[1]",
        "json.password",
        "url",
    ]
    assert literal_credentials({"headers": {"Authorization": "Bearer ${secret:API}"}}) == []


def test_shipped_documents_and_user_strings_are_not_redacted() -> None:
    """No false positive in what opsgate itself ships: runbooks, playbooks, policies, strings."""
    root = Path(__file__).resolve().parents[2]
    files = [
        *root.glob("runbooks/**/*.yaml"),
        *root.glob("bot/demo/runbooks/**/*.yaml"),
        *root.glob("policies/*.yaml"),
        root / "opsgate.example.yaml",
    ]
    assert files
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert redact(data, max_depth=64) == json.loads(json.dumps(data, default=str)), path
    texts = [v for v in vars(strings).values() if isinstance(v, str)]
    texts += [x for v in vars(strings).values() if isinstance(v, dict) for x in v.values()]
    changed = [t for t in texts if isinstance(t, str) and redact_text(t) != t]
    assert changed == []
