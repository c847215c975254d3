"""Deterministic workflow-state payloads: the shapes flujo stores in practice.

Each is a pipeline context (``run_id`` + a ``dict[str, Any]`` scratchpad). ``native`` is the
same data already reduced to JSON types: what the orjson "limit line" serializes.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from ..serialization import TypeRegistry

SIZES = {"small": 0, "medium": 1_000, "large": 20_000, "custom": 1_000}
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "xray")


class Tier(Enum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class Address(BaseModel):
    street: str
    city: str
    zip: str


class User(BaseModel):
    user_id: UUID
    name: str
    email: str
    tier: Tier
    balance: Decimal
    created_at: AwareDatetime
    last_login: AwareDatetime | None
    score: float
    active: bool
    bio: str
    tags: list[str]
    addresses: list[Address]


class BenchContext(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    run_id: str
    scratchpad: dict[str, Any]


class Money:
    """A plain class: the custom workload's registered type."""

    __slots__ = ("amount", "currency")

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return (type(other) is Money
                and (self.amount, self.currency) == (other.amount, other.currency))

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


MONEY_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"},
                   "currency": {"type": "string", "enum": ["EUR", "USD", "GBP", "JPY"]}},
    "required": ["amount", "currency"], "additionalProperties": False,
}


def register_bench_types(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(
        Money, lambda m: {"amount": str(m.amount), "currency": m.currency},
        deserializer=lambda d: Money(Decimal(d["amount"]), d["currency"]),
        schema=MONEY_SCHEMA, name="bench.money")


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _when(rng: random.Random) -> datetime:
    return EPOCH + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6))


def _user(rng: random.Random) -> User:
    first, last = rng.choice(WORDS), rng.choice(WORDS)
    return User(
        user_id=_uuid(rng), name=f"{first.title()} {last.title()}",
        email=f"{first}.{last}{rng.randrange(1000)}@example.com", tier=rng.choice(list(Tier)),
        balance=Decimal(rng.randrange(10**8)).scaleb(-2), created_at=_when(rng),
        last_login=_when(rng) if rng.random() < 0.8 else None,
        score=round(rng.random() * 100, 3), active=rng.random() < 0.9,
        bio=" ".join(rng.choices(WORDS, k=10)).capitalize() + ".", tags=rng.sample(WORDS, 3),
        addresses=[Address(street=f"{rng.randrange(1, 999)} {rng.choice(WORDS).title()} St",
                           city=rng.choice(WORDS).title(), zip=f"{rng.randrange(10**5):05d}")
                   for _ in range(2)])


def build(name: str, records: int | None = None) -> BenchContext:
    rng = random.Random(7)
    count = SIZES[name] if records is None else records
    if name == "small":
        pad: dict[str, Any] = {
            "user": _user(rng), "started_at": _when(rng).astimezone(timezone(timedelta(hours=5))),
            "due": date(2025, 3, 14), "request_id": _uuid(rng), "budget": Decimal("1234.5600"),
            "tier": Tier.PRO, "labels": {"urgent", "billing", "eu"},
            "window": (3, "steps", 2.5), "blob": bytes(range(0, 256, 8)), "step": 7,
            "ok": True, "note": None, "ratio": 0.125,
        }
    elif name == "custom":
        pad = {"cursor": count, "records": [
            {"id": i, "price": Money(Decimal(rng.randrange(10**7)).scaleb(-2),
                                     rng.choice(("EUR", "USD", "GBP", "JPY"))),
             "sku": f"SKU-{rng.randrange(10**6):06d}"} for i in range(count)]}
    else:
        pad = {"batch_id": _uuid(rng), "started_at": _when(rng), "cursor": count,
               "records": [_user(rng) for _ in range(count)]}
    return BenchContext(run_id=f"run_{rng.getrandbits(64):016x}", scratchpad=pad)


def to_native(value: Any) -> Any:
    """The same data as JSON types only (what a lossy serializer would produce)."""
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, BaseModel):
        return {k: to_native(v) for k, v in value}
    if isinstance(value, dict):
        return {str(k): to_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_native(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_native(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value

