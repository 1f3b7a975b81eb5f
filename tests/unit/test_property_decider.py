"""The property decider, events in and events out: no Kafka."""

from datetime import UTC, datetime

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
    Role,
    UpdateProperty,
)
from streams.properties.decider import (
    Command,
    PropertyState,
    Rejection,
    decide,
    evolve,
    state_from_json,
    state_to_json,
)
from streams.remembered_commands import remember, version_after

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
SEED_LISTING = ListingFields.model_validate(
    {
        "title": "3BHK Apartment",
        "location": "Gachibowli",
        "price": 9500000,
        "propertyType": "APARTMENT",
        "bedrooms": 3,
        "bathrooms": 2,
    }
)


def command(kind: str, data, *, by: str = "user-456", command_id: str = "cmd-1") -> Command:
    return Command(command_id, kind, "prop-123", by, NOW, data)


def listed(by: str = "user-456") -> PropertyState:
    [created] = decide(command(CREATE_PROPERTY, CreateProperty(listing=SEED_LISTING), by=by), None)
    return remember(evolve(None, created, property_id="prop-123", time=NOW), "cmd-0", 0)


def image(n: int) -> Image:
    return Image(url=f"/files/{n}", sha256=f"{n:064x}", content_type="image/png", size_bytes=10)


def test_creating_a_new_property_records_its_owner_and_listing():
    [event] = decide(command(CREATE_PROPERTY, CreateProperty(listing=SEED_LISTING)), None)
    assert event.type == PROPERTY_CREATED
    assert event.data.owner_id == "user-456" and event.data.listing == SEED_LISTING
    state = evolve(None, event, property_id="prop-123", time=NOW)
    assert (state.version, state.owner_id, state.deleted) == (1, "user-456", False)


def test_creating_over_an_existing_property_conflicts():
    assert decide(command(CREATE_PROPERTY, CreateProperty(listing=SEED_LISTING), command_id="cmd-9"), listed()) == (
        Rejection(409, "Property prop-123 already exists")
    )


def test_a_redelivered_command_changes_nothing():
    state = listed()
    assert decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 1}), command_id="cmd-0"), state) == []


def test_a_command_redelivered_after_later_ones_is_answered_with_the_version_it_left():
    """A decider killed before committing its offsets decides its batch again against the table the
    changelog restored, which already holds the whole batch: the first command is answered as before."""
    state = listed()
    first = command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 9000000}), command_id="cmd-1")
    second = command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 8000000}), command_id="cmd-2")
    for offset, step in enumerate((first, second), start=1):
        [event] = decide(step, state)
        state = remember(evolve(state, event, property_id="prop-123", time=NOW), step.id, offset)
    assert state.version == 3
    assert decide(first, state) == [] and decide(second, state) == []
    assert (version_after(state, "cmd-1"), version_after(state, "cmd-2")) == (2, 3)
    assert remember(state, "cmd-1", 1) == state  # seen again, still the version of its first decision
    assert version_after(state_from_json(state_to_json(state)), "cmd-1") == 2


def test_a_state_written_before_versions_were_remembered_still_reads():
    document = {**state_to_json(listed()), "recentCommands": ["cmd-0"]}
    state = state_from_json(document)
    assert decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 1}), command_id="cmd-0"), state) == []
    assert version_after(state, "cmd-0") == state.version


def test_the_owner_updates_and_the_event_carries_the_whole_listing():
    [event] = decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 9000000}, expected_version=1)), listed())
    assert event.type == PROPERTY_UPDATED
    assert event.data.listing.price == 9000000 and event.data.listing.title == "3BHK Apartment"
    assert event.data.changed_fields == ("price",)
    assert evolve(listed(), event, property_id="prop-123", time=NOW).version == 2


def test_a_stale_if_match_version_conflicts():
    decision = decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 1}, expected_version=7)), listed())
    assert isinstance(decision, Rejection) and decision.status == 409


def test_someone_else_may_not_change_it_but_an_admin_may():
    stranger = decide(command(DELETE_PROPERTY, DeleteProperty(), by="user-999"), listed())
    assert isinstance(stranger, Rejection) and stranger.status == 403
    [deleted] = decide(command(DELETE_PROPERTY, DeleteProperty(actor_role=Role.ADMIN), by="user-1"), listed())
    assert deleted.type == PROPERTY_DELETED


def test_only_an_admin_features_a_listing():
    refused = decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"featured": True})), listed())
    assert isinstance(refused, Rejection) and refused.status == 403
    [event] = decide(
        command(UPDATE_PROPERTY, UpdateProperty(changes={"featured": True}, actor_role=Role.ADMIN), by="user-1"),
        listed(),
    )
    assert event.data.featured is True and event.data.changed_fields == ("featured",)


def test_invalid_changes_are_rejected_naming_the_field():
    decision = decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": -5, "bedrooms": 99})), listed())
    assert isinstance(decision, Rejection) and decision.status == 422
    assert {problem.field for problem in decision.errors} == {"price", "bedrooms"}


def test_an_update_that_changes_nothing_records_nothing():
    assert decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 9500000})), listed()) == []


def test_a_deleted_property_is_gone_for_every_command():
    [deleted] = decide(command(DELETE_PROPERTY, DeleteProperty()), listed())
    gone = evolve(listed(), deleted, property_id="prop-123", time=NOW)
    decision = decide(command(UPDATE_PROPERTY, UpdateProperty(changes={"price": 1}), command_id="cmd-2"), gone)
    assert isinstance(decision, Rejection) and decision.status == 404


def test_images_are_added_once_each_and_capped():
    [added] = decide(command(ADD_PROPERTY_IMAGES, AddPropertyImages(images=(image(1), image(2)))), listed())
    assert added.type == PROPERTY_IMAGES_ADDED and len(added.data.images) == 2
    state = evolve(listed(), added, property_id="prop-123", time=NOW)
    again = AddPropertyImages(images=(image(2), image(3)))
    [more] = decide(command(ADD_PROPERTY_IMAGES, again, command_id="cmd-3"), state)
    assert [i.sha256 for i in more.data.added] == [image(3).sha256]
    too_many = AddPropertyImages(images=tuple(image(n) for n in range(10, 10 + MAX_IMAGES_PER_PROPERTY)))
    decision = decide(command(ADD_PROPERTY_IMAGES, too_many, command_id="cmd-4"), state)
    assert isinstance(decision, Rejection) and decision.status == 422


def test_the_state_survives_the_table_round_trip():
    state = listed()
    assert state_from_json(state_to_json(state)) == state
