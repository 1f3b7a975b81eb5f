"""The property decider: pure functions, no I/O.

`decide(command, state)` says what happens when a command meets a property's current state: the new
events, or a rejection with the HTTP status the caller will see. `evolve(state, event)` folds an event
into the state. The decider app keeps one state per property id in a Faust table and is the only
writer of property events, so checks like ownership and `If-Match` versions hold under concurrency.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.outcomes import FieldProblem, NewEvent, Rejection
from schemas.properties import (
    ADD_PROPERTY_IMAGES,
    CREATE_PROPERTY,
    DELETE_PROPERTY,
    MAX_IMAGES_PER_PROPERTY,
    PROPERTY_CREATED,
    PROPERTY_DELETED,
    PROPERTY_IMAGES_ADDED,
    PROPERTY_UPDATED,
    UPDATE_PROPERTY,
    AddPropertyImages,
    CreateProperty,
    DeleteProperty,
    Image,
    ListingFields,
    PropertyCreated,
    PropertyDeleted,
    PropertyImagesAdded,
    PropertyUpdated,
    Role,
    UpdateProperty,
)
from schemas.registry import EventData
from streams.remembered_commands import Remembered, decided_before, remembered_from_json

# Commands remembered per property, each with the version its acceptance left: a redelivered command (a
# decider killed before its offset was committed restarts from the changelog, which already holds it) is
# answered as the first time, not applied twice, and not with a version later commands reached.


@dataclass(frozen=True)
class Command:
    id: str
    type: str
    property_id: str
    user_id: str
    time: datetime
    data: EventData


@dataclass(frozen=True)
class PropertyState:
    id: str
    owner_id: str
    version: int
    listing: ListingFields
    created_at: datetime
    featured: bool = False
    images: tuple[Image, ...] = ()
    deleted: bool = False
    recent_commands: Remembered = field(default_factory=tuple)  # (command id, version)
    # The offset, in its partition of property-commands, of the last command decided into this state. A
    # command redelivered after a crash at or below it was decided already, even once it is forgotten.
    decided_through: int | None = None


Decision = list[NewEvent] | Rejection


def decide(command: Command, state: PropertyState | None) -> Decision:
    if decided_before(state, command.id):
        return []  # already applied: nothing happens twice, the caller gets the version it left (`version_after`)
    if command.type == CREATE_PROPERTY:
        return _create(command, state)
    if state is None or state.deleted:
        return Rejection(404, f"Property {command.property_id} not found")
    is_admin = getattr(command.data, "actor_role", Role.USER) == Role.ADMIN
    if command.user_id != state.owner_id and not is_admin:
        return Rejection(403, "Only the owner or an admin may change this property")
    expected = getattr(command.data, "expected_version", None)
    if expected is not None and expected != state.version:
        return Rejection(409, f"Property is at version {state.version}, not {expected}; reload and retry")
    if command.type == UPDATE_PROPERTY:
        assert isinstance(command.data, UpdateProperty)
        return _update(command.data, state, is_admin)
    if command.type == DELETE_PROPERTY:
        assert isinstance(command.data, DeleteProperty)
        return [NewEvent(PROPERTY_DELETED, PropertyDeleted(owner_id=state.owner_id))]
    if command.type == ADD_PROPERTY_IMAGES:
        assert isinstance(command.data, AddPropertyImages)
        return _add_images(command.data, state)
    return Rejection(422, f"Unknown command {command.type}")


def _create(command: Command, state: PropertyState | None) -> Decision:
    if state is not None:
        return Rejection(409, f"Property {command.property_id} already exists")
    assert isinstance(command.data, CreateProperty)
    return [NewEvent(PROPERTY_CREATED, PropertyCreated(owner_id=command.user_id, listing=command.data.listing))]


def _update(update: UpdateProperty, state: PropertyState, is_admin: bool) -> Decision:
    changes = dict(update.changes)
    featured = changes.pop("featured", state.featured)
    if featured != state.featured and not is_admin:
        return Rejection(
            403, "Only an admin may feature a listing", (FieldProblem(field="featured", message="admin only"),)
        )
    try:
        listing = ListingFields.model_validate({**state.listing.to_wire(), **changes})
    except ValidationError as exc:
        problems = tuple(
            FieldProblem(field=".".join(str(p) for p in error["loc"]), message=error["msg"]) for error in exc.errors()
        )
        return Rejection(422, "Invalid property fields", problems)
    changed = tuple(
        sorted(name for name, value in listing.to_wire().items() if state.listing.to_wire().get(name) != value)
    )
    if featured != state.featured:
        changed = (*changed, "featured")
    if not changed:
        return []  # nothing to record; the caller gets the current version
    return [NewEvent(PROPERTY_UPDATED, PropertyUpdated(listing=listing, featured=featured, changed_fields=changed))]


def _add_images(command: AddPropertyImages, state: PropertyState) -> Decision:
    known = {image.sha256 for image in state.images}
    added = tuple(image for image in command.images if image.sha256 not in known)
    if len(state.images) + len(added) > MAX_IMAGES_PER_PROPERTY:
        return Rejection(
            422,
            f"A property has at most {MAX_IMAGES_PER_PROPERTY} images; it has {len(state.images)}",
            (FieldProblem(field="images", message=f"at most {MAX_IMAGES_PER_PROPERTY} per property"),),
        )
    if not added:
        return []
    return [NewEvent(PROPERTY_IMAGES_ADDED, PropertyImagesAdded(added=added, images=(*state.images, *added)))]


def evolve(state: PropertyState | None, event: NewEvent, *, property_id: str, time: datetime) -> PropertyState:
    data = event.data
    if isinstance(data, PropertyCreated):
        return PropertyState(
            id=property_id,
            owner_id=data.owner_id,
            version=1,
            listing=data.listing,
            created_at=time,
            featured=data.featured,
        )
    assert state is not None, f"{event.type} before property.created"
    if isinstance(data, PropertyUpdated):
        return replace(state, version=state.version + 1, listing=data.listing, featured=data.featured)
    if isinstance(data, PropertyDeleted):
        return replace(state, version=state.version + 1, deleted=True)
    if isinstance(data, PropertyImagesAdded):
        return replace(state, version=state.version + 1, images=data.images)
    raise ValueError(f"cannot evolve a property with {event.type}")


# ---- the state as the table stores it (JSON), and back ----


def state_to_json(state: PropertyState) -> dict[str, Any]:
    return {
        "id": state.id,
        "ownerId": state.owner_id,
        "version": state.version,
        "listing": state.listing.to_wire(),
        "createdAt": state.created_at.isoformat(),
        "featured": state.featured,
        "images": [image.to_wire() for image in state.images],
        "deleted": state.deleted,
        "recentCommands": [[id_, version] for id_, version in state.recent_commands],
        "decidedThrough": state.decided_through,
    }


def state_from_json(document: dict[str, Any]) -> PropertyState:
    return PropertyState(
        id=document["id"],
        owner_id=document["ownerId"],
        version=document["version"],
        listing=ListingFields.model_validate(document["listing"]),
        created_at=datetime.fromisoformat(document["createdAt"]),
        featured=document["featured"],
        images=tuple(Image.model_validate(image) for image in document["images"]),
        deleted=document["deleted"],
        recent_commands=remembered_from_json(document["recentCommands"]),
        decided_through=document.get("decidedThrough"),  # absent from states written before it was kept
    )
