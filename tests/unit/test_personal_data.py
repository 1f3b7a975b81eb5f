"""Sealing personal data with a user's own key (schemas/personal.py): what crypto-shredding relies on."""

import pytest

from schemas.personal import NAME, PHONE, UnreadablePersonalData, is_sealed, new_personal_key, seal, unseal

USER = "user-priya"


def test_a_sealed_value_opens_with_its_key_and_shows_nothing_of_the_clear_value():
    key = new_personal_key()
    value = seal(key, USER, NAME, "Priya Reddy")
    assert is_sealed(value) and "Priya" not in value and "Reddy" not in value
    assert unseal(key, USER, NAME, value) == "Priya Reddy"


def test_without_the_key_it_does_not_open():
    value = seal(new_personal_key(), USER, NAME, "Priya Reddy")
    with pytest.raises(UnreadablePersonalData):
        unseal(new_personal_key(), USER, NAME, value)


def test_a_value_moved_to_another_user_or_field_or_tampered_with_does_not_open():
    key = new_personal_key()
    value = seal(key, USER, PHONE, "+919876543210")
    with pytest.raises(UnreadablePersonalData):
        unseal(key, "user-mallory", PHONE, value)
    with pytest.raises(UnreadablePersonalData):
        unseal(key, USER, NAME, value)
    tampered = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    with pytest.raises(UnreadablePersonalData):
        unseal(key, USER, PHONE, tampered)
    with pytest.raises(UnreadablePersonalData):
        unseal(key, USER, PHONE, "+919876543210")


def test_sealing_is_deterministic_per_user_and_field_so_a_decider_can_compare_without_the_key():
    key = new_personal_key()
    assert seal(key, USER, NAME, "Priya") == seal(key, USER, NAME, "Priya")
    assert seal(key, USER, NAME, "Priya") != seal(key, USER, NAME, "Priya R.")
    assert seal(key, USER, NAME, "Priya") != seal(new_personal_key(), USER, NAME, "Priya")
