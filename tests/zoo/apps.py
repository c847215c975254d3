"""The application's own types that the zoo stores, in an importable module as an
application's would be: a structured output, settings, models using pydantic add-on types."""

from __future__ import annotations

import warnings

from pydantic import BaseModel, EmailStr, HttpUrl, NameEmail
from pydantic_extra_types.color import Color
from pydantic_extra_types.coordinate import Coordinate, Latitude
from pydantic_extra_types.country import CountryAlpha2, CountryAlpha3, CountryShortName
from pydantic_extra_types.currency_code import Currency
from pydantic_extra_types.isbn import ISBN
from pydantic_extra_types.language_code import LanguageName
from pydantic_extra_types.mac_address import MacAddress
from pydantic_extra_types.mime_types import MimeType
from pydantic_extra_types.mongo_object_id import MongoObjectId
from pydantic_extra_types.payment import PaymentCardNumber
from pydantic_extra_types.pendulum_dt import DateTime
from pydantic_extra_types.phone_numbers import PhoneNumber
from pydantic_extra_types.routing_number import ABARoutingNumber
from pydantic_extra_types.semantic_version import SemanticVersion
from pydantic_extra_types.timezone_name import TimeZoneName
from pydantic_extra_types.ulid import ULID
from pydantic_settings import BaseSettings, SettingsConfigDict


class Answer(BaseModel):
    """A structured output: openai's ``parse(response_format=Answer)`` fills one in."""

    city: str
    population: int


class ZooSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLUJO_ZOO_")
    api_base: str = "http://localhost"
    retries: int = 3


class Contact(BaseModel):
    email: EmailStr
    lat: Latitude
    place: Coordinate


class Link(BaseModel):
    url: HttpUrl
    owner: NameEmail


class Paint(BaseModel):
    color: Color


class Customer(BaseModel):
    """pydantic-extra-types' field types: their values are str subclasses (country, card,
    language, ...), plain strings (phone, currency, MAC, ISBN) or classes of their own
    (Color, ULID, SemanticVersion, bson's ObjectId)."""

    country: CountryAlpha2
    country3: CountryAlpha3
    country_name: CountryShortName
    language: LanguageName
    card: PaymentCardNumber
    phone: PhoneNumber
    currency: Currency
    mac: MacAddress
    isbn: ISBN
    routing: ABARoutingNumber
    mime: MimeType
    zone: TimeZoneName
    favourite: Color
    id: ULID
    client: SemanticVersion
    mongo_id: MongoObjectId


class When(BaseModel):
    at: DateTime


with warnings.catch_warnings():  # pydantic.v1 warns on Python 3.14+
    warnings.simplefilter("ignore")
    from pydantic import v1


class LegacyItem(v1.BaseModel):
    """A pydantic.v1 model, as older SDKs and applications still carry."""

    sku: str
    quantity: int = 1


class LegacyOrder(v1.BaseModel):
    items: list[LegacyItem]
    api_key: v1.SecretStr
    _cursor: str = v1.PrivateAttr("start")

    class Config:
        extra = "allow"
