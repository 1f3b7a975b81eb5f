"""Outside development, the published defaults of secrets are refused, naming the setting, never the value."""

import pytest
from pydantic import SecretStr

from config.settings import InsecureSettings, Settings, default_secrets, refuse_default_secrets

SET = {
    "postgres_password": SecretStr("a-real-db-password"),
    "email_key_secret": SecretStr("a-real-email-secret"),
    "sms_api_key": SecretStr("a-real-sms-key"),
}


def test_development_is_the_default_and_accepts_the_defaults():
    settings = Settings()
    assert settings.env == "development"
    refuse_default_secrets(settings)


def test_production_refuses_every_default_secret_by_name_and_never_shows_a_value():
    settings = Settings(env="production")
    with pytest.raises(InsecureSettings) as refused:
        refuse_default_secrets(settings)
    message = str(refused.value)
    for name in ("HI_POSTGRES_PASSWORD", "HI_EMAIL_KEY_SECRET", "HI_SMS_API_KEY"):
        assert name in message
    for value in ("hyderabad-local", "local-sms-key"):
        assert value not in message


def test_one_secret_left_at_its_default_is_named_alone():
    settings = Settings(env="staging", **{**SET, "email_key_secret": Settings().email_key_secret})
    assert default_secrets(settings) == ["HI_EMAIL_KEY_SECRET"]
    with pytest.raises(InsecureSettings, match="HI_EMAIL_KEY_SECRET"):
        refuse_default_secrets(settings)


def test_production_with_its_own_secrets_starts():
    refuse_default_secrets(Settings(env="production", **SET))
