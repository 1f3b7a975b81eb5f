"""The Ed25519 signing keys behind access tokens, kept as files so every service process verifies alike.

Layout of `settings.keys_dir`: one `<kid>.pem` (PKCS#8 private key) per key, and `current` naming the
kid that signs new tokens. Older keys stay to verify tokens issued before a rotation.

The first process to need a key when the directory is empty makes one. Several services start at
once, so creation is race-safe: every file appears whole through a link from a private temp file,
and `current` is claimed with a link that fails if it exists, so exactly one process's key wins and
the others adopt it.
"""

import logging
import os
import re
import secrets
import tempfile
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

logger = logging.getLogger("api.keys")

CURRENT = "current"
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _link_new_file(directory: Path, name: str, content: bytes) -> bool:
    """Create `directory/name` holding `content` (mode 0600) unless it exists; True if we created it."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # mkstemp creates the file 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, directory / name)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


class KeyRing:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._current: str | None = None
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        self._ensure_loaded()
        assert self._current is not None
        return self._current, self._private[self._current]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        self._ensure_loaded()
        return self._public.get(kid)

    def _ensure_loaded(self) -> None:
        if self._current is not None:
            return
        with self._lock:
            if self._current is None:
                self._load()

    def _load(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        current_file = self.directory / CURRENT
        if not current_file.exists():
            self._create_first_key()
        kid = current_file.read_text().strip()
        for pem in self.directory.glob("*.pem"):
            if not KID_PATTERN.match(pem.stem):
                continue
            try:
                raw = pem.read_bytes()
            except FileNotFoundError:
                continue  # a racing process's losing key, removed since we listed the directory
            key = serialization.load_pem_private_key(raw, password=None)
            if isinstance(key, Ed25519PrivateKey):
                self._private[pem.stem] = key
                self._public[pem.stem] = key.public_key()
        if kid not in self._private:
            raise RuntimeError(f"{current_file} names key {kid!r}, but no Ed25519 {kid}.pem is there")
        self._current = kid

    def _create_first_key(self) -> None:
        os.chmod(self.directory, 0o700)
        kid = f"k-{secrets.token_hex(8)}"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _link_new_file(self.directory, f"{kid}.pem", pem)
        if _link_new_file(self.directory, CURRENT, kid.encode() + b"\n"):
            logger.info("generated signing key %s in %s", kid, self.directory)
        else:
            # Another process claimed `current` first: use its key, drop ours so it is never trusted.
            (self.directory / f"{kid}.pem").unlink()
