"""The blob store interface, on local disk and on S3. There is no S3 service on this machine: the S3
back end runs against moto's in-process S3 emulation (`mock_aws`), which checks the boto3 calls and
their semantics (keys, ranges, copies, listings), not a real bucket's behaviour under load."""

import hashlib
import os
import time

import boto3
import pytest
from moto import mock_aws

from storage.blobs import LocalBlobStore
from storage.s3 import S3BlobStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    with mock_aws():
        client = boto3.client("s3", region_name="ap-south-1")
        client.create_bucket(Bucket="files", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
        yield S3BlobStore(client, "files", "test/", tmp_path / "spool")


def put(store, data: bytes, pieces: int = 3):
    writer = store.writer()
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    return store.commit(writer)


def test_bytes_are_named_by_their_sha256_and_read_back_in_ranges(store):
    data = os.urandom(600_000)
    blob = put(store, data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert store.size(blob.sha256) == len(data)
    assert b"".join(store.read(blob.sha256)) == data
    assert b"".join(store.read(blob.sha256, 10, 19)) == data[10:20]
    assert b"".join(store.read(blob.sha256, 599_990)) == data[599_990:]
    with store.local_path(blob.sha256) as path:
        assert path.read_bytes() == data
    assert not list(store.incoming.iterdir()), "the temporary file is gone once committed"


def test_the_same_bytes_twice_are_one_blob_and_refresh_its_time(store):
    data = b"%PDF-1.7 same bytes"
    first = put(store, data)
    before = dict(store.inventory())[first.sha256]
    time.sleep(1.1)
    second = put(store, data)
    assert first == second
    assert [sha for sha, _ in store.inventory()] == [first.sha256]
    assert store.touched(first.sha256) > before


def test_missing_blobs_and_deletion(store):
    missing = "0" * 64
    assert store.size(missing) is None and store.touched(missing) is None
    with pytest.raises(FileNotFoundError):
        list(store.read(missing))
    with pytest.raises(FileNotFoundError), store.local_path(missing):
        pass
    blob = put(store, b"to be removed")
    store.delete(blob.sha256)
    store.delete(blob.sha256)  # twice is fine
    assert store.size(blob.sha256) is None and list(store.inventory()) == []


def test_an_abandoned_upload_leaves_nothing_behind(store):
    writer = store.writer()
    writer.write(b"half a file")
    writer.discard()
    assert list(store.inventory()) == [] and not list(store.incoming.iterdir())
    stale = store.writer()
    stale.write(b"left by a killed process")
    stale.close()
    old = time.time() - 3600
    os.utime(stale.path, (old, old))
    assert store.discard_stale_incoming(600) == 1 and not stale.path.exists()


def test_names_that_are_not_sha256_are_refused(store):
    with pytest.raises(ValueError):
        store.size("../../etc/passwd")


def test_settings_choose_the_back_end(tmp_path):
    from config import Settings
    from storage import blob_store

    assert isinstance(blob_store(Settings(blob_dir=tmp_path)), LocalBlobStore)
    with mock_aws():
        chosen = blob_store(
            Settings(blob_dir=tmp_path, blob_backend="s3", s3_bucket="deeds", s3_prefix="hyd/", s3_region="ap-south-1")
        )
        assert isinstance(chosen, S3BlobStore) and (chosen.bucket, chosen.prefix) == ("deeds", "hyd/")
        assert chosen.key("ab" * 32) == f"hyd/sha256/ab/{'ab' * 32}"
