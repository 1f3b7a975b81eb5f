"""The blob store of a web app, built on first use from the app's settings (never at import)."""

from typing import Any

from storage.blobs import BlobStore, blob_store


def app_blob_store(request: Any) -> BlobStore:
    state = request.app.state
    store: BlobStore | None = getattr(state, "blob_store", None)
    if store is None:
        store = blob_store(state.settings)
        state.blob_store = store
    return store
