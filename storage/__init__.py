"""Where uploaded bytes live: one small interface (`BlobStore`), content-addressed by SHA-256.

`LocalBlobStore` (the default) keeps blobs under the state directory; `S3BlobStore` keeps them in an
S3-compatible bucket, chosen by `HI_BLOB_BACKEND=s3`. Both spool incoming bytes to a local temporary
file while hashing them, so an upload is never whole in memory and its name is known only once it
has all arrived. `storage.media` tells the kind of a file by its bytes and refuses polyglots.

Shared by the API services (property images, the file service) and the stream workers (the image
optimiser), so it sits beside `schemas`, imported by both `api` and `streams`, importing neither.
"""

from storage.blobs import Blob, BlobStore, BlobWriter, LocalBlobStore, blob_store

__all__ = ["Blob", "BlobStore", "BlobWriter", "LocalBlobStore", "blob_store"]
