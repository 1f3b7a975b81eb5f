"""Event types, their payload models and the upcasters that lift old versions to the current one.

Readers accept every version ever written: `read()` walks the upcaster chain
(`x.v1 -> x.v2 -> …`) until it reaches a type that has a model, then validates the payload.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from schemas.codec import EventDecodeError
from schemas.envelope import Envelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventData(BaseModel):
    """Base of every event payload: frozen, camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class UnknownEventType(EventDecodeError):
    """No model and no upcaster is registered for this type."""


@dataclass(frozen=True)
class TypedEvent:
    envelope: Envelope
    data: EventData


@dataclass(frozen=True)
class _Step:
    target: str
    upcast: Upcaster


class EventRegistry:
    def __init__(self) -> None:
        self._models: dict[str, type[EventData]] = {}
        self._upcasters: dict[str, _Step] = {}

    def register(self, event_type: str, model: type[EventData]) -> None:
        if event_type in self._models or event_type in self._upcasters:
            raise ValueError(f"event type {event_type} is registered twice")
        self._models[event_type] = model

    def register_upcaster(self, old_type: str, new_type: str, upcast: Upcaster) -> None:
        if old_type in self._models or old_type in self._upcasters:
            raise ValueError(f"event type {old_type} is registered twice")
        self._upcasters[old_type] = _Step(new_type, upcast)

    def knows(self, event_type: str) -> bool:
        return event_type in self._models or event_type in self._upcasters

    @property
    def current_types(self) -> frozenset[str]:
        return frozenset(self._models)

    def upcast(self, envelope: Envelope) -> Envelope:
        """Lift an envelope to the newest version of its type; the envelope's id and time never change."""
        seen: set[str] = set()
        while envelope.type in self._upcasters:
            if envelope.type in seen:
                raise ValueError(f"upcaster cycle at {envelope.type}")
            seen.add(envelope.type)
            step = self._upcasters[envelope.type]
            envelope = envelope.model_copy(update={"type": step.target, "data": step.upcast(dict(envelope.data))})
        if envelope.type not in self._models:
            raise UnknownEventType(f"unknown event type {envelope.type!r}")
        return envelope

    def read(self, envelope: Envelope) -> TypedEvent:
        current = self.upcast(envelope)
        model = self._models[current.type]
        try:
            data = model.model_validate(current.data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
            raise EventDecodeError(f"invalid {current.type} data: {problems}") from None
        return TypedEvent(current, data)


EVENTS = EventRegistry()
"""The registry of every event type of the product; aggregate modules register into it."""
