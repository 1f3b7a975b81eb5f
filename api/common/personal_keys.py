"""`user_keys`, from the command side: the user service creates a person's key before their registration
is sent and fetches it to seal a profile change; the file and property services fetch it to seal the
names of the files a person uploads, the search service the words they search for and the names of
their saved searches. The user projection deletes it when the account is closed.

Written here, by the command side, because a key must exist before any event sealed with it does; it is
not a read model (nothing in it is derived from events).
"""

from psycopg_pool import AsyncConnectionPool

from schemas.personal import FILENAME, new_personal_key, seal


async def create_personal_key(pool: AsyncConnectionPool, user_id: str) -> bytes:
    key = new_personal_key()
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO user_keys (user_id, key) VALUES (%s, %s)", (user_id, key))
    return key


async def personal_key(pool: AsyncConnectionPool, user_id: str) -> bytes | None:
    """None once the account is closed (the key is gone, and with it the person's data)."""
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT key FROM user_keys WHERE user_id = %s", (user_id,))
        row = await cursor.fetchone()
    return bytes(row[0]) if row else None


def sealed_text(key: bytes | None, user_id: str, field: str, text: str) -> str:
    """A person's own words sealed with their key (`personal_key`) for an event kept forever. A user
    without a key (no personal data of theirs exists anywhere) keeps the text in the clear."""
    return seal(key, user_id, field, text) if key is not None else text


def sealed_filename(key: bytes | None, owner_id: str, filename: str) -> str:
    """People name files after themselves ("Priya Reddy sale deed.pdf"), and the name travels in
    `file.uploaded` events."""
    return sealed_text(key, owner_id, FILENAME, filename)
