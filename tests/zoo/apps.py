"""The application's own types that the zoo stores, in an importable module as an
application's would be: a structured output, settings, models using pydantic add-on types."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, HttpUrl, NameEmail
from pydantic_extra_types.color import Color
from pydantic_extra_types.coordinate import Coordinate, Latitude
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
