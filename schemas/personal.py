"""Personal data in events and commands, sealed with the person's own key (crypto-shredding).

Kafka topics keep events forever and cannot forget one person's part of them. So a user's email,
name, phone and password hash, the names of the files they upload, the words they search for, the
names of their saved searches and the messages they write to other users never travel in the clear:
each is sealed with a 256-bit key of that user's own (Postgres `user_keys`; a message with both
people's keys, `schemas.notifications.seal_message`), and closing the account deletes the key. From
then on every copy (the topic, its replicas, `event_store`, a decider's
changelog, a backup) is ciphertext nobody can open, while the non-personal facts around it (ids,
versions, counts, listings) stay readable.

AES-256-GCM with a synthetic nonce, HMAC-SHA256(key, field, plaintext): sealing is deterministic per
user and field, so the account decider can tell whether a profile field changed by comparing sealed
values without ever holding the key. It reveals only that one user's field kept its value. The
associated data binds a sealed value to its user and field: copied into another user's event or
another field, it fails to open.
"""

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pii:v1:"
KEY_BYTES = 32
_NONCE_BYTES = 12

EMAIL = "email"
NAME = "name"
PHONE = "phone"
PASSWORD_HASH = "passwordHash"  # noqa: S105 (a field name, not a password)
FILENAME = "filename"  # of a file the person uploaded
MESSAGE_SUBJECT = "messageSubject"  # of a message one user writes to another
MESSAGE_TEXT = "messageText"
SEARCH_QUERY = "searchQuery"  # the free text of a search they ran or saved
SEARCH_NAME = "searchName"  # what they named a saved search


class UnreadablePersonalData(ValueError):
    """Not a sealed value, sealed for another user or field, or tampered with."""


def new_personal_key() -> bytes:
    return os.urandom(KEY_BYTES)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _associated_data(user_id: str, field: str) -> bytes:
    return f"{user_id}\x00{field}".encode()


def seal(key: bytes, user_id: str, field: str, plaintext: str) -> str:
    message = plaintext.encode()
    nonce = hmac.new(key, field.encode() + b"\x00" + message, hashlib.sha256).digest()[:_NONCE_BYTES]
    sealed = AESGCM(key).encrypt(nonce, message, _associated_data(user_id, field))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(key: bytes, user_id: str, field: str, value: str) -> str:
    if not is_sealed(value):
        raise UnreadablePersonalData(f"{field} is not sealed")
    body = value.removeprefix(PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        opened = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(user_id, field))
    except (ValueError, InvalidTag):
        raise UnreadablePersonalData(f"{field} does not open with this user's key") from None
    return opened.decode()
