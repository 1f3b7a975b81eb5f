"""Request bodies of the user service (camelCase on the wire)."""

from pydantic import ConfigDict, Field, field_validator

from api.common.responses import ApiModel
from schemas.users import E164, EMAIL_MAX, NAME_MAX, is_valid_email, normalise_email


class RegisterIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=EMAIL_MAX, description="Normalised (trimmed, lower-cased); unique")
    password: str = Field(description="At least 10 characters, not a common password")
    name: str = Field(min_length=1, max_length=NAME_MAX)
    phone: str = Field(pattern=E164, description="E.164, e.g. +919876543210")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        normalised = normalise_email(value)
        if not is_valid_email(normalised):
            raise ValueError("not a valid email address")
        return normalised

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class LoginIn(ApiModel):
    email: str = Field(min_length=1, max_length=EMAIL_MAX)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(ApiModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutIn(ApiModel):
    refresh_token: str | None = Field(default=None, max_length=200)


class ProfileUpdateIn(ApiModel):
    """Only the fields sent change. Email is immutable after registration."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    phone: str | None = Field(default=None, pattern=E164)
