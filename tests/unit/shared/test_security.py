"""API keys, bearer tokens, scopes, row-level filters and rate limits, without a server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from crm_shared.events import utc_now
from crm_shared.security import keys
from crm_shared.security.guard import RateLimits
from crm_shared.security.keys import AuthFailure, KeyTable
from crm_shared.security.principal import GROUPED, OWNED, Principal
from crm_shared.security.settings import AuthSettings
from crm_shared.security.tokens import TokenVerifier

ISSUER, AUDIENCE = "https://idp.example", "crm-api"


@pytest.fixture(autouse=True)
def no_suite_wide_auth_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py configures every service for the suite's tokens; these tests configure their own."""
    for name in ("CRM_AUTH_JWT_SECRET", "CRM_AUTH_JWT_ISSUER", "CRM_AUTH_JWT_AUDIENCE", "CRM_AUTH_ADMIN_KEY_SHA256"):
        monkeypatch.delenv(name, raising=False)


def issued(**changes: Any) -> tuple[str, keys.ApiKeyRecord]:
    options: dict[str, Any] = {
        "name": "webshop",
        "scopes": ["events:write", "orders:read"],
        "event_types": ["crm.order.placed.v1"],
        "read_only": False,
        "rate_limit": None,
        "expires_at": utc_now() + timedelta(days=1),
        **changes,
    }
    return keys.issue(**options)


def test_a_key_is_kept_only_as_its_hash_and_verifies_to_its_scopes() -> None:
    key, record = issued()
    assert key.startswith(f"crm_{record.key_id}_") and key not in record.model_dump_json()
    assert record.secret_sha256 == keys.key_sha256(key)
    table = KeyTable()
    table.apply(record)
    principal = table.verify(key)
    assert principal.kind == "api_key" and principal.id == record.key_id
    assert principal.allows("orders:read") and not principal.allows("customers:read")
    assert principal.may_submit("crm.order.placed.v1") and not principal.may_submit("crm.order.refunded.v1")


@pytest.mark.parametrize(
    ("presented", "why"),
    [
        ("not-a-key", "malformed"),
        ("crm_", "malformed"),
        ("crm_abc_short", "malformed"),
        ("crm_0123456789abcdef_" + "x" * 43, "not valid"),
    ],
)
def test_malformed_and_unknown_keys_are_refused(presented: str, why: str) -> None:
    with pytest.raises(AuthFailure, match=why):
        KeyTable().verify(presented)


def test_a_key_with_the_right_id_and_a_wrong_secret_is_refused() -> None:
    key, record = issued()
    table = KeyTable()
    table.apply(record)
    with pytest.raises(AuthFailure, match="not valid"):
        table.verify(key[:-4] + "AAAA")


def test_expired_and_revoked_keys_are_refused() -> None:
    key, record = issued(expires_at=utc_now() - timedelta(seconds=1))
    table = KeyTable()
    table.apply(record)
    with pytest.raises(AuthFailure, match="expired"):
        table.verify(key)
    key, record = issued()
    table.apply(record)
    table.apply(keys.revoked(record))
    with pytest.raises(AuthFailure, match="revoked"):
        table.verify(key)


def test_an_older_version_never_replaces_a_newer_one() -> None:
    key, record = issued()
    table = KeyTable()
    table.apply(keys.revoked(record))
    assert not table.apply(record)
    with pytest.raises(AuthFailure, match="revoked"):
        table.verify(key)


def test_rotation_gives_the_same_rights_and_the_old_key_a_grace_period() -> None:
    old_key, record = issued()
    new_key, fresh, old = keys.rotated(record, timedelta(hours=1))
    table = KeyTable()
    for r in (fresh, old):
        table.apply(r)
    assert table.verify(new_key).scopes == table.verify(old_key).scopes
    assert old.replaced_by == fresh.key_id and old.expires_at is not None
    assert old.expires_at <= utc_now() + timedelta(hours=1)
    _, _, ended = keys.rotated(record, timedelta(0))
    without_grace = KeyTable()
    without_grace.apply(ended)
    with pytest.raises(AuthFailure, match="expired"):
        without_grace.verify(old_key)


def test_the_bootstrap_key_is_admin_only_when_its_hash_is_configured() -> None:
    key, _ = keys.new_key(keys.BOOTSTRAP_KEY_ID)
    assert KeyTable(keys.key_sha256(key)).verify(key).allows("customers:erase")
    with pytest.raises(AuthFailure):
        KeyTable().verify(key)
    with pytest.raises(AuthFailure):
        KeyTable(keys.key_sha256(key + "x")).verify(key)


def test_a_read_only_key_refuses_every_scope_but_reads() -> None:
    principal = Principal(kind="api_key", id="k", scopes=frozenset({"admin"}), read_only=True)
    assert principal.allows("orders:read")
    assert not principal.allows("orders:write") and not principal.allows("admin")


def rep(subject: str, **claims: Any) -> Principal:
    return Principal(kind="token", id=subject, scopes=frozenset({"leads:read"}), **claims)


def test_a_rep_sees_their_own_their_teams_and_their_territorys_records() -> None:
    mine, teams, north, other = (
        {"owner_id": "rep-a"},
        {"owner_id": "rep-b"},
        {"owner_id": "rep-c", "territory": "north"},
        {"owner_id": "rep-c", "territory": "south"},
    )
    alone = rep("rep-a")
    manager = rep("boss", team=frozenset({"rep-a", "rep-b"}), territories=frozenset({"north"}))
    assert [OWNED.allows(alone, d) for d in (mine, teams, north, other)] == [True, False, False, False]
    assert [OWNED.allows(manager, d) for d in (mine, teams, north, other)] == [True, True, True, False]
    assert OWNED.query(alone) == {"$or": [{"owner_id": {"$in": ["rep-a"]}}]}
    assert OWNED.query(manager) == {
        "$or": [{"owner_id": {"$in": ["boss", "rep-a", "rep-b"]}}, {"territory": {"$in": ["north"]}}]
    }
    # One flat filter where the clauses allow it (the embedded database plans no index for $and or $or).
    assert OWNED.restrict(alone, {"customer_id": "C-1"}) == {"customer_id": "C-1", "owner_id": {"$in": ["rep-a"]}}
    assert OWNED.restrict(manager, {"customer_id": "C-1"}) == {"customer_id": "C-1", **OWNED.query(manager)}
    assert OWNED.restrict(alone, {"owner_id": "x"}) == {"$and": [{"owner_id": "x"}, {"owner_id": {"$in": ["rep-a"]}}]}


def test_an_unassigned_record_is_seen_by_keys_admins_and_all_record_scopes_only() -> None:
    unassigned = {"owner_id": None, "territory": None}
    assert not OWNED.allows(rep("rep-a"), unassigned)
    assert OWNED.allows(Principal(kind="api_key", id="k", scopes=frozenset()), unassigned)
    assert OWNED.allows(Principal(kind="token", id="m", scopes=frozenset({"records:all"})), unassigned)
    assert OWNED.query(Principal(kind="token", id="m", scopes=frozenset({"admin"}))) is None


def test_an_agent_sees_the_tickets_of_their_groups_and_those_assigned_to_them() -> None:
    agent = rep("agent-1", groups=frozenset({"billing"}))
    assert GROUPED.allows(agent, {"group": "billing", "assignee_id": None})
    assert GROUPED.allows(agent, {"group": "returns", "assignee_id": "agent-1"})
    assert not GROUPED.allows(agent, {"group": "returns", "assignee_id": "agent-2"})


def test_a_token_subject_that_is_an_address_is_hashed_in_the_audit_log() -> None:
    assert rep("u-123").audit_name == "token:u-123"
    assert "@" not in rep("ada@example.com").audit_name
    assert Principal(kind="api_key", id="k1", scopes=frozenset()).audit_name == "key:k1"


# ------------------------------------------------------------------ tokens


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def public_pem(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    path = tmp_path / "idp.pem"
    path.write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "rep-7",
        "exp": now + 300,
        "scope": "leads:read customers:read",
        "crm_territories": ["north"],
        **changes,
    }


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(AuthSettings(CRM_AUTH_JWT_ISSUER=ISSUER, CRM_AUTH_JWT_AUDIENCE=AUDIENCE, **settings))


async def test_a_token_signed_by_the_identity_provider_gives_its_scopes_and_claims(
    rsa_key: rsa.RSAPrivateKey, public_pem: Path
) -> None:
    token = jwt.encode(claims(scp=["orders:read"]), rsa_key, algorithm="RS256")
    principal = await verifier(CRM_AUTH_JWT_PUBLIC_KEY_FILE=str(public_pem)).verify(token)
    assert principal.kind == "token" and principal.id == "rep-7"
    assert principal.scopes == {"leads:read", "customers:read", "orders:read"}
    assert principal.territories == {"north"} and not principal.sees_all_records


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"iss": "https://evil.example"}, "(?i)issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"sub": None}, "not valid|subject"),
        ({"crm_team": "not-a-list-of-strings", "crm_groups": [1]}, "list of strings"),
    ],
)
async def test_tokens_with_wrong_claims_are_refused(
    rsa_key: rsa.RSAPrivateKey, public_pem: Path, changes: dict[str, Any], why: str
) -> None:
    body = {k: v for k, v in claims(**changes).items() if v is not None}
    token = jwt.encode(body, rsa_key, algorithm="RS256")
    with pytest.raises(AuthFailure, match=why):
        await verifier(CRM_AUTH_JWT_PUBLIC_KEY_FILE=str(public_pem)).verify(token)


async def test_a_token_signed_by_anyone_else_or_unsigned_is_refused(public_pem: Path) -> None:
    check = verifier(CRM_AUTH_JWT_PUBLIC_KEY_FILE=str(public_pem))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256")
    unsigned = jwt.encode(claims(), None, algorithm="none")
    # The classic confusion: the public key used as an HMAC secret.
    confused = hs256_by_hand(claims(), public_pem.read_bytes())  # noqa: ASYNC240 - a small local file
    for token in (forged, unsigned, confused):
        with pytest.raises(AuthFailure, match="not valid"):
            await check.verify(token)


def hs256_by_hand(body: dict[str, Any], secret: bytes) -> str:
    """PyJWT will not sign with a PEM as an HMAC secret; an attacker's own code would."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(body).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


@pytest.fixture
def jwks_url(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


async def test_a_token_is_checked_against_the_identity_providers_jwks(
    rsa_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    check = verifier(CRM_AUTH_JWKS_URL=jwks_url)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert (await check.verify(token)).id == "rep-7"
    with pytest.raises(AuthFailure):
        await check.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "unknown"}))


async def test_without_a_configured_issuer_tokens_are_refused() -> None:
    token = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    with pytest.raises(AuthFailure, match="not configured"):
        await TokenVerifier(AuthSettings()).verify(token)


@pytest.mark.parametrize(
    "settings",
    [
        {"CRM_AUTH_JWT_SECRET": "x" * 40},
        {"CRM_AUTH_JWT_SECRET": "short", "CRM_AUTH_JWT_ISSUER": ISSUER, "CRM_AUTH_JWT_AUDIENCE": AUDIENCE},
        {"CRM_AUTH_JWKS_URL": "http://idp/jwks", "CRM_AUTH_JWT_SECRET": "x" * 40},
        {"CRM_AUTH_ADMIN_KEY_SHA256": "not-a-digest"},
        {"CRM_AUTH_RATE_LIMIT": "lots"},
        {"CRM_AUTH_JWT_PUBLIC_KEY_FILE": "/no/such/key.pem"},
    ],
)
def test_half_configured_authentication_is_refused_at_start_up(settings: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        AuthSettings(**settings)


async def test_a_caller_over_its_rate_limit_is_told_when_to_retry() -> None:
    limits = RateLimits("3/minute")
    caller = Principal(kind="api_key", id="k", scopes=frozenset())
    assert [await limits.retry_after(caller) for _ in range(3)] == [None, None, None]
    wait = await limits.retry_after(caller)
    assert wait is not None and 1 <= wait <= 60
    assert await limits.retry_after(Principal(kind="api_key", id="other", scopes=frozenset())) is None
    own = Principal(kind="api_key", id="k2", scopes=frozenset(), rate_limit="1/minute")
    assert await limits.retry_after(own) is None and await limits.retry_after(own) is not None
