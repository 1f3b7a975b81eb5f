"""Realistic Hyderabad listings, created through the real command path.

    python -m ops.demo_data --count 200 [--url http://127.0.0.1:8082] [--users 20] [--seed 1]
    make demo-data COUNT=200

Each listing is a `POST /api/properties` by one of `--users` synthetic owners (`user-demo-01`, ...),
signed with the same keys the services verify with, so it goes service -> `property-commands` ->
decider -> `properties` -> projection like any owner's. Listing N of seed S is always the same
listing by the same owner with `Idempotency-Key: demo-S-N`: running it again creates nothing new,
and `--count 500` after `--count 200` adds only the 300 missing ones. Needs the property service and
both property workers running (`make run`).

Tests and benchmarks call `create_listings(client, count, seed)` with their own client.
"""

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from api.common.auth import issue_access_token
from schemas.localities import LOCALITIES, Locality
from schemas.properties import PropertyType

DEFAULT_URL = "http://127.0.0.1:8082"
_RETRIES = 8  # 409 "still in progress" and 503 "no decision yet" both say: ask again shortly

# How often each type is listed; villa belts (Kokapet, Jubilee Hills, ...) lean to villas and plots.
_TYPE_WEIGHTS = {
    PropertyType.APARTMENT: (60, 38),
    PropertyType.INDEPENDENT_HOUSE: (12, 10),
    PropertyType.COMMERCIAL: (10, 5),
    PropertyType.PLOT: (6, 17),
    PropertyType.VILLA: (6, 25),
    PropertyType.PENTHOUSE: (6, 5),
}
# Price per built-up square foot relative to an apartment in the same locality.
_RATE_FACTOR = {
    PropertyType.APARTMENT: 1.0,
    PropertyType.PENTHOUSE: 1.35,
    PropertyType.VILLA: 1.2,
    PropertyType.INDEPENDENT_HOUSE: 0.95,
    PropertyType.COMMERCIAL: 1.25,
    PropertyType.PLOT: 0.75,  # per square foot of land
}
_FACINGS = ("East", "East", "North-East", "North", "West", "South", "North-West", "South-East")
_FURNISHING = ("Unfurnished", "Semi-furnished", "Semi-furnished", "Fully furnished")
_APARTMENT_AMENITIES = (
    "gym",
    "swimming pool",
    "clubhouse",
    "power backup",
    "24x7 security",
    "covered parking",
    "lift",
    "children's play area",
    "jogging track",
    "CCTV",
    "intercom",
    "rainwater harvesting",
    "indoor games",
    "landscaped garden",
    "EV charging",
    "multipurpose hall",
)
_AMENITIES: dict[PropertyType, tuple[str, ...]] = {
    PropertyType.APARTMENT: _APARTMENT_AMENITIES,
    PropertyType.PENTHOUSE: (*_APARTMENT_AMENITIES, "private terrace", "private lift", "jacuzzi"),
    PropertyType.VILLA: (
        "private garden",
        "clubhouse",
        "swimming pool",
        "gym",
        "power backup",
        "24x7 security",
        "covered parking",
        "home automation",
        "tennis court",
        "jogging track",
        "EV charging",
    ),
    PropertyType.INDEPENDENT_HOUSE: (
        "covered parking",
        "power backup",
        "borewell",
        "municipal water",
        "terrace",
        "modular kitchen",
        "CCTV",
        "solar water heater",
    ),
    PropertyType.PLOT: (
        "gated layout",
        "compound wall",
        "BT roads",
        "underground drainage",
        "street lights",
        "water supply",
        "avenue plantation",
        "24x7 security",
    ),
    PropertyType.COMMERCIAL: (
        "power backup",
        "lift",
        "central AC",
        "fire safety",
        "visitor parking",
        "cafeteria",
        "24x7 security",
        "covered parking",
    ),
}
_APARTMENT_STYLES = ("Gated-Community", "Spacious", "Premium", "Lake-View", "Corner", "Well-Ventilated", "Vastu")
_HOUSE_STYLES = ("Duplex", "G+1", "G+2", "Corner", "East-Facing", "Newly Built")
_VILLA_STYLES = ("Luxury", "Triplex", "Duplex", "Gated-Community", "Golf-View", "Independent")
# Commercial listings by what they are, with the built-up area such a space has (sqft).
_COMMERCIAL_KINDS = {
    "Grade-A Office Space": (2_000, 12_000),
    "IT Office Floor": (5_000, 20_000),
    "Co-working Floor": (3_000, 9_000),
    "Retail Showroom": (1_200, 6_000),
    "Ground-Floor Shop": (250, 1_200),
}
_DISTANCES = ("a 5-minute drive", "10 minutes", "walking distance", "2 km", "15 minutes")


@dataclass(frozen=True)
class DemoListing:
    index: int
    owner: str
    idempotency_key: str
    body: dict[str, Any]


def demo_user(number: int) -> str:
    return f"user-demo-{number:02d}"


def demo_listing(index: int, seed: int, users: int = 20) -> DemoListing:
    """Listing `index` of `seed`: the same every time, whatever the count asked for."""
    rng = random.Random(f"hyderabad-demo:{seed}:{index}")
    locality = rng.choice(LOCALITIES)
    kind = rng.choices(list(_TYPE_WEIGHTS), [w[locality.villa_belt] for w in _TYPE_WEIGHTS.values()])[0]
    commercial = rng.choice(tuple(_COMMERCIAL_KINDS))
    bedrooms, bathrooms, area = _size(rng, kind, commercial)
    low, high = locality.rate_per_sqft
    price = area * rng.uniform(low, high) * _RATE_FACTOR[kind]
    price_step = 100_000 if price >= 10_000_000 else 50_000
    facing = rng.choice(_FACINGS)
    body = {
        "title": _title(rng, kind, bedrooms, area, facing, locality, commercial),
        "location": locality.name,
        "price": max(price_step, round(price / price_step) * price_step),
        "propertyType": kind.value,
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "description": _description(rng, kind, locality),
        "areaSqft": area,
        "amenities": sorted(rng.sample(_AMENITIES[kind], rng.randint(3, min(8, len(_AMENITIES[kind]))))),
        # Within about a kilometre of the locality's centre.
        "latitude": round(locality.latitude + rng.uniform(-0.009, 0.009), 6),
        "longitude": round(locality.longitude + rng.uniform(-0.009, 0.009), 6),
        "attributes": _attributes(rng, kind, facing, area),
    }
    owner = demo_user(1 + rng.randrange(users))
    return DemoListing(index, owner, f"demo-{seed}-{index}", body)


def _size(rng: random.Random, kind: PropertyType, commercial: str) -> tuple[int, int, int]:
    """(bedrooms, bathrooms, area in sqft) as listed for this type in Hyderabad."""
    if kind == PropertyType.APARTMENT:
        bhk = rng.choices((1, 2, 3, 4), (10, 35, 45, 10))[0]
        area = {1: (550, 750), 2: (1000, 1350), 3: (1450, 2200), 4: (2400, 3500)}[bhk]
        return bhk, bhk if bhk < 3 else bhk + rng.randint(0, 1), rng.randrange(*area, 5)
    if kind == PropertyType.PENTHOUSE:
        bhk = rng.choice((4, 4, 5))
        return bhk, bhk + 1, rng.randrange(4_000, 7_500, 10)
    if kind == PropertyType.VILLA:
        bhk = rng.choice((3, 4, 4, 5))
        return bhk, bhk + 1, rng.randrange(2_800, 6_000, 10)
    if kind == PropertyType.INDEPENDENT_HOUSE:
        bhk = rng.choice((2, 3, 3, 4, 5))
        return bhk, bhk, rng.randrange(1_200, 3_500, 10)
    if kind == PropertyType.PLOT:
        return 0, 0, rng.randrange(150, 600, 10) * 9  # plots are sold in square yards
    low, high = _COMMERCIAL_KINDS[commercial]
    area = rng.randrange(low, high, 50)
    return 0, max(1, min(8, area // 1_500)), area  # washrooms


def _title(
    rng: random.Random, kind: PropertyType, bedrooms: int, area: int, facing: str, locality: Locality, commercial: str
) -> str:
    where = locality.name
    if kind == PropertyType.APARTMENT:
        return f"{bedrooms}BHK {rng.choice(_APARTMENT_STYLES)} Apartment in {where}"
    if kind == PropertyType.PENTHOUSE:
        return f"{bedrooms}BHK {rng.choice(('Sky', 'Duplex', 'Luxury'))} Penthouse in {where}"
    if kind == PropertyType.VILLA:
        return f"{bedrooms}BHK {rng.choice(_VILLA_STYLES)} Villa in {where}"
    if kind == PropertyType.INDEPENDENT_HOUSE:
        return f"{bedrooms}BHK {rng.choice(_HOUSE_STYLES)} Independent House in {where}"
    if kind == PropertyType.PLOT:
        return f"{facing}-Facing {area // 9} Sq Yd Plot in {where}"
    return f"{commercial} in {where}"


def _description(rng: random.Random, kind: PropertyType, locality: Locality) -> str:
    landmark = rng.choice(locality.landmarks) if locality.landmarks else locality.name
    noun = {
        PropertyType.APARTMENT: "apartment",
        PropertyType.PENTHOUSE: "penthouse",
        PropertyType.VILLA: "villa",
        PropertyType.INDEPENDENT_HOUSE: "independent house",
        PropertyType.PLOT: "plot",
        PropertyType.COMMERCIAL: "commercial space",
    }[kind]
    opening = rng.choice(
        (
            f"Well-maintained {noun} in {locality.name}, {rng.choice(_DISTANCES)} from {landmark}.",
            f"{'An' if noun[0] in 'aeiou' else 'A'} {noun} in the heart of {locality.name}, close to {landmark}.",
            f"Bright, airy {noun} in {locality.name} with quick access to {landmark}.",
        )
    )
    middle = {
        PropertyType.PLOT: "Clear title, ready for registration; suits a G+2 home or a weekend house.",
        PropertyType.COMMERCIAL: "Suits an IT/ITES office, a clinic or a showroom; ample parking for visitors.",
    }.get(kind, rng.choice(("Schools, hospitals and supermarkets nearby.", "Good ventilation and natural light.")))
    closing = rng.choice(
        (
            "Owner listing, no brokerage.",
            "Bank loans approved by major banks.",
            "Immediate site visits possible on weekends.",
            "Well connected to the IT corridor and the Outer Ring Road.",
        )
    )
    return f"{opening} {middle} {closing}"


def _attributes(rng: random.Random, kind: PropertyType, facing: str, area: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {"facing": facing}
    if kind == PropertyType.PLOT:
        attributes["plotAreaSqYd"] = area // 9
        attributes["approval"] = rng.choice(("HMDA approved", "DTCP approved", "GHMC approved"))
        return attributes
    if kind in (PropertyType.APARTMENT, PropertyType.PENTHOUSE, PropertyType.COMMERCIAL):
        total = rng.randint(5, 40)
        attributes["totalFloors"] = total
        attributes["floor"] = total if kind == PropertyType.PENTHOUSE else rng.randint(0, total)
    elif kind in (PropertyType.VILLA, PropertyType.INDEPENDENT_HOUSE):
        attributes["floors"] = rng.choice((2, 2, 3))
    attributes["furnishing"] = rng.choice(_FURNISHING)
    under_construction = rng.random() < 0.3
    attributes["possession"] = "Under construction" if under_construction else "Ready to move"
    if under_construction:
        attributes["possessionBy"] = f"{rng.randint(2026, 2028)}-{rng.choice(('03', '06', '09', '12'))}"
    attributes["parkingSpots"] = rng.choice((1, 1, 2, 2, 3)) if kind != PropertyType.APARTMENT else 1
    return attributes


class DemoDataError(RuntimeError):
    pass


async def _post(client: httpx.AsyncClient, demo: DemoListing, tokens: dict[str, str]) -> tuple[str, bool]:
    """(property id, was it already there)."""
    headers = {"Authorization": f"Bearer {tokens[demo.owner]}", "Idempotency-Key": demo.idempotency_key}
    for attempt in range(_RETRIES):
        answer = await client.post("/api/properties", json=demo.body, headers=headers)
        if answer.status_code == 201:
            return answer.json()["data"]["id"], answer.headers.get("Idempotent-Replay") == "true"
        if answer.status_code not in (409, 503) or "Retry-After" not in answer.headers:
            break
        await asyncio.sleep(min(0.25 * 2**attempt, 4))
    raise DemoDataError(f"listing {demo.index} ({demo.body['title']}): {answer.status_code} {answer.text[:300]}")


async def create_demo_listings(
    client: httpx.AsyncClient, count: int, seed: int = 1, users: int = 20, concurrency: int = 16
) -> list[tuple[str, bool]]:
    """(id, already there) per listing, in index order. `client` has the property service as base URL."""
    listings = [demo_listing(index, seed, users) for index in range(count)]
    tokens = {owner: issue_access_token(owner, "USER") for owner in {demo.owner for demo in listings}}
    gate = asyncio.Semaphore(concurrency)

    async def one(demo: DemoListing) -> tuple[str, bool]:
        async with gate:
            return await _post(client, demo, tokens)

    return list(await asyncio.gather(*(one(demo) for demo in listings)))


async def create_listings(
    client: httpx.AsyncClient, count: int, seed: int = 1, users: int = 20, concurrency: int = 16
) -> list[str]:
    """The ids of listings 0..count-1 of `seed`, created if they were not there yet."""
    return [property_id for property_id, _ in await create_demo_listings(client, count, seed, users, concurrency)]


def _summary(results: Sequence[tuple[str, bool]], users: int, seconds: float, url: str) -> str:
    replayed = sum(1 for _, again in results if again)
    return (
        f"demo data: {len(results)} listings ({len(results) - replayed} created, {replayed} already there) "
        f"by up to {users} users in {seconds:.2f} s ({len(results) / max(seconds, 1e-9):.1f}/s) at {url}"
    )


async def _main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as client:
        results = await create_demo_listings(client, args.count, args.seed, args.users, args.concurrency)
    print(_summary(results, args.users, time.perf_counter() - started, args.url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--url", default=DEFAULT_URL, help="the property service")
    parser.add_argument("--users", type=int, default=20, help="synthetic owners user-demo-01..NN")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    if not 1 <= args.users <= 99:
        parser.error("--users must be 1..99")
    try:
        asyncio.run(_main(args))
    except (DemoDataError, httpx.TransportError) as exc:
        raise SystemExit(f"demo data: {exc}") from None


if __name__ == "__main__":
    main()
