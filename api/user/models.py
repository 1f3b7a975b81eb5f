"""Request and answer bodies of the user service (camelCase on the wire)."""

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from api.common.responses import ApiModel
from schemas.users import E164, EMAIL_MAX, NAME_MAX, Role, is_valid_email, normalise_email


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


# ---- answers (`data` of the success envelope) ----


class RegisteredUserOut(ApiModel):
    id: str
    email: str
    name: str
    phone: str
    role: Role
    created_at: str = Field(description="ISO-8601 UTC")


class SessionOut(ApiModel):
    access_token: str = Field(description="EdDSA JWT, for `Authorization: Bearer`")
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds the access token lives")
    refresh_token: str = Field(description="Opaque; rotates on every use")
    user_id: str
    role: Role


class LoggedOutOut(ApiModel):
    user_id: str


class UserSummaryOut(ApiModel):
    """A user found by search; `role`, `email` and `phone` for admins only."""

    id: str
    name: str
    property_count: int
    member_since: str
    role: Role | None = None
    email: str | None = None
    phone: str | None = None


class UserProfileOut(ApiModel):
    """Anyone sees the public profile; the user and admins also email, phone, role, version and times."""

    id: str
    name: str
    property_count: int
    member_since: str
    email: str | None = None
    phone: str | None = None
    role: Role | None = None
    version: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


class UserVersionOut(ApiModel):
    id: str
    version: int | None = Field(description="The account's version after the change (null if unchanged)")


class AccountClosedOut(ApiModel):
    id: str
    deleted: Literal[True]
    delisted_properties: int = Field(description="Listings delisted within the wait; the others follow")


class UserListingOut(ApiModel):
    id: str
    owner_id: str
    title: str
    location: str
    price: int
    property_type: str
    bedrooms: int
    bathrooms: int
    featured: bool
    delisted: bool
    version: int
    created_at: str
    updated_at: str


class PropertyCountOut(ApiModel):
    user_id: str
    property_count: int
    version: int | None
