"""An S3-compatible blob store (AWS S3, MinIO, Ceph RGW...), chosen by `HI_BLOB_BACKEND=s3`.

Keys are `<prefix>sha256/<first two hex>/<sha256>`, as on local disk. Uploads spool to a local
temporary file first (the content address is only known once every byte has arrived), then go up
with boto3's managed transfer (multipart above 8 MB, so memory stays flat). A blob already there is
not uploaded again; it is copied onto itself to refresh its LastModified, which the garbage
collector's grace period reads. Reads use ranged GETs, so a download's `Range` costs only its bytes.

This machine has no S3 service: the module is tested against moto's in-process S3
(tests/unit/test_s3_blob_store.py), not against a real bucket.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.blobs import READ_CHUNK_BYTES, Blob, BlobWriter, discard_stale, valid_sha256

if TYPE_CHECKING:
    from config import Settings

_MISSING = {"404", "NoSuchKey", "NotFound"}


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3BlobStore:
    def __init__(self, client: Any, bucket: str, prefix: str, spool: Path) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.incoming = spool

    @classmethod
    def from_settings(cls, settings: "Settings") -> "S3BlobStore":
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )
        return cls(client, settings.s3_bucket, settings.s3_prefix, settings.blobs_dir / "incoming")

    def key(self, sha256: str) -> str:
        if not valid_sha256(sha256):
            raise ValueError("a blob name is 64 lower-case hex digits")
        return f"{self.prefix}sha256/{sha256[:2]}/{sha256}"

    def writer(self) -> BlobWriter:
        return BlobWriter(self.incoming)

    def commit(self, writer: BlobWriter) -> Blob:
        writer.close()
        key = self.key(writer.sha256)
        try:
            if self.size(writer.sha256) is None:
                self._client.upload_file(str(writer.path), self.bucket, key)
            else:
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                )
        finally:
            writer.discard()
        return Blob(writer.sha256, writer.size)

    def size(self, sha256: str) -> int | None:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))["ContentLength"])
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        wanted = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.key(sha256), Range=wanted)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"blob {sha256} is not stored") from None
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(READ_CHUNK_BYTES)
            finally:
                body.close()

        return chunks()

    @contextmanager
    def local_path(self, sha256: str) -> Iterator[Path]:
        self.incoming.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.incoming, prefix="download-") as handle:
            try:
                self._client.download_fileobj(self.bucket, self.key(sha256), handle)
            except ClientError as exc:
                if _missing(exc):
                    raise FileNotFoundError(f"blob {sha256} is not stored") from None
                raise
            handle.flush()
            yield Path(handle.name)

    def delete(self, sha256: str) -> None:
        with suppress(ClientError):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def inventory(self) -> Iterator[tuple[str, float]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}sha256/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if valid_sha256(name):
                    yield name, item["LastModified"].timestamp()

    def touched(self, sha256: str) -> float | None:
        try:
            return float(self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))["LastModified"].timestamp())
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def discard_stale_incoming(self, older_than_seconds: float) -> int:
        return discard_stale(self.incoming, older_than_seconds)
