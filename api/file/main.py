"""File service (port 8086): `uvicorn api.file.main:app --port 8086`."""

from api.common.service import create_service

app = create_service(
    "file",
    title="Hyderabad Infra: file service",
    description=(
        "Photos and documents of listings. Will own uploading one file or many (`/api/files/upload`, "
        "`/api/files/bulk`, with size and media-type limits answering 413 and 415), downloading and "
        "deleting (`/api/files/{id}`), a property's files (`/api/files/property/{id}`) and image "
        "optimisation (`/api/files/optimize`). File facts go to the `files` topic; the metadata is read "
        "from Postgres and Redis."
    ),
    uses={"kafka", "postgres", "redis"},
)
