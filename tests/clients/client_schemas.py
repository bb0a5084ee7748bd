# tests/clients/client_schemas.py: the pydantic models and tools the client tests ask for. Every field is
# bounded (short strings, small integer ranges, enums) so that a random-weights model under the
# grammar finishes well within max_tokens; what the tests assert (parses, validates, names a
# declared tool) would hold for any model.
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=8)
    population: int = Field(ge=0, le=999)
    kind: Literal["town", "city"]


class Weather(BaseModel):
    """Current weather for a city."""
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=8, description="city name")
    unit: Literal["C", "F"] = Field(description="temperature unit")


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8, "description": "city name"},
        "unit": {"type": "string", "enum": ["C", "F"], "description": "temperature unit"}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a time zone",
    "parameters": {"type": "object", "properties": {
        "tz": {"type": "string", "enum": ["UTC", "Europe/Paris"], "description": "time zone"}},
        "required": ["tz"], "additionalProperties": False}}}
TOOLS = [WEATHER_TOOL, TIME_TOOL]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
