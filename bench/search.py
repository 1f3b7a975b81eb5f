# ruff: noqa: E402  (the project root goes on sys.path before the imports: tests.support is not installed)
"""Benchmark: search latency over 100,000 listings at a fixed offered rate, and how soon a saved search
alerts on a new listing.

    .venv/bin/python bench/search.py [--listings 100000] [--rate 50] [--seconds 20] [--alerts 30] [--rebuild]
    make bench-search

Not part of `make test`: it needs minutes and the machine to itself, and prints numbers, never asserts.

1. Listings: `--listings` of `ops/demo_data.py`'s listings (seed 777), bulk-indexed straight into an
   alias of their own, `bench-properties`, with the production mapping (`ops/search_index.py`). Going
   through Kafka would measure the property slice (bench/properties.py does that), and 100,000
   creates take many minutes here; the documents are what the search projection writes
   (`search_document` of a row). Built once and reused while the alias holds that many documents of
   the current mapping version (`--rebuild` forces it).
2. The search service on a free port, pointed at that alias; a few hundred warm-up requests.
3. Open loop, per scenario: a separate load-generator process (aiohttp; its CPU is not the server's)
   sends request i at start + i/rate whatever earlier ones did; latency counts from the scheduled time,
   so queueing is not hidden. Scenarios: simple (`GET /api/search/properties`: text and filters, with
   the default facets), advanced (`POST /api/search/advanced`: ranges, amenities, distance, exclusions,
   facets) and suggestions (`GET /api/search/suggestions`: prefixes as typed). Anonymous requests: a
   signed-in search also produces its `search.performed` fact (one acks=all produce, ~5-10 ms more).
   Targets: p99 < 50 ms simple, < 100 ms advanced, < 30 ms suggestions.
4. Alerts (`--alerts N`, 0 skips): the search slice of the tests (property decider and projections,
   search projection and matcher under bench groups), one saved search, N matching listings created
   one every 200 ms; the time from each create's 201 to its `search.saved_match` on `searches`.
"""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
import httpx
import orjson

from api.services import by_name
from config import get_settings
from ops.demo_data import demo_listing
from ops.search_index import MAPPING_VERSION, alias_indices, create_index, mapping_version, new_index_name
from ops.search_index import properties_index_body as index_body
from schemas.envelope import format_time
from schemas.localities import LOCALITIES
from tests.support.services import ServiceProcess

ALIAS = "bench-properties"
SEED = 777
TARGET_P99_MS = {"simple": 50, "advanced": 100, "suggestions": 30}
LOG_DIR = ROOT / ".state" / "logs" / "bench-search"


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- 1. the listings


def bench_document(index: int) -> dict[str, Any]:
    """Listing `index` as the property search projection indexes it (the fields of `search_document`)."""
    body = demo_listing(index, SEED).body
    rng = random.Random(index)
    created = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(minutes=rng.randrange(365 * 24 * 60))
    return {
        "id": f"prop-bench{index:07d}",
        "ownerId": f"user-bench-{index % 500:03d}",
        "title": body["title"],
        "description": body["description"],
        "location": body["location"],
        "propertyType": body["propertyType"],
        "price": body["price"],
        "bedrooms": body["bedrooms"],
        "bathrooms": body["bathrooms"],
        "areaSqft": body["areaSqft"],
        "amenities": body["amenities"],
        "attributes": body["attributes"],
        "featured": index % 50 == 0,
        "imageCount": rng.randrange(0, 8),
        "createdAt": format_time(created),
        "updatedAt": format_time(created),
        "version": 1,
        "geo": {"lat": body["latitude"], "lon": body["longitude"]},
    }


def ensure_bench_listings(count: int, rebuild: bool) -> str:
    settings = get_settings()
    with httpx.Client(base_url=settings.opensearch_url, timeout=120) as client:
        current = alias_indices(client, ALIAS)
        if current and not rebuild and mapping_version(client, current[0]) >= MAPPING_VERSION:
            have = client.get(f"/{ALIAS}/_count").json()["count"]
            if have == count:
                return f"reused {current[0]} ({have} listings)"
        index = new_index_name(ALIAS)
        body = index_body()
        body["settings"]["refresh_interval"] = "-1"
        create_index(client, index, body)
        started = time.perf_counter()
        chunk = 5000
        for start in range(0, count, chunk):
            lines = []
            for i in range(start, min(count, start + chunk)):
                lines.append(orjson.dumps({"index": {"_index": index, "_id": f"prop-bench{i:07d}"}}))
                lines.append(orjson.dumps(bench_document(i)))
            answer = client.post(
                "/_bulk", content=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
            )
            answer.raise_for_status()
            if answer.json()["errors"]:
                raise RuntimeError(f"bulk refused documents: {answer.text[:500]}")
            print(f"\r  indexed {min(count, start + chunk):,} of {count:,}", end="", flush=True)
        client.put(f"/{index}/_settings", json={"index": {"refresh_interval": None}}).raise_for_status()
        client.post(f"/{index}/_refresh").raise_for_status()
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": ALIAS}} for name in current]
        actions.append({"add": {"index": index, "alias": ALIAS, "is_write_index": True}})
        client.post("/_aliases", json={"actions": actions}).raise_for_status()
        for name in current:
            client.delete(f"/{name}")
        print()
        return f"built {index}: {count:,} listings in {time.perf_counter() - started:.1f} s"


# ---------------------------------------------------------------- 2. the requests


PHRASES = ("lake view", "gated community", "east facing", "corner", "luxury villa", "office space", "duplex")
KINDS = {"APARTMENT": "apartment", "VILLA": "villa", "PLOT": "plot", "INDEPENDENT_HOUSE": "independent house"}
AMENITIES_BY_TYPE = {
    "APARTMENT": ("gym", "swimming pool", "clubhouse", "power backup", "lift", "covered parking"),
    "VILLA": ("private garden", "clubhouse", "swimming pool", "gym", "power backup", "covered parking"),
    "PLOT": ("gated layout", "compound wall", "BT roads", "street lights", "water supply"),
    "INDEPENDENT_HOUSE": ("covered parking", "power backup", "borewell", "terrace", "modular kitchen"),
}
PREFIXES = ("g", "ga", "gac", "gach", "ko", "kon", "kond", "hit", "hitech", "3b", "3bh", "vil", "villa")
PREFIXES += ("pent", "ma", "mad", "fin", "ban", "jub", "te", "tel", "mi", "miy", "sec", "kuk", "kphb")


def simple_requests(n: int) -> list[dict[str, Any]]:
    """What people type and tick: "3BHK Gachibowli", "villa Neopolis" (any spelling of a locality),
    a phrase in one locality, or filters alone; sometimes a price band or another sort."""
    rng = random.Random(1)
    requests = []
    for _ in range(n):
        locality = rng.choice(LOCALITIES)
        kind = rng.choice(tuple(KINDS))
        params: dict[str, Any] = {}
        shape = rng.random()
        if shape < 0.35:
            params["q"] = f"{rng.choice((2, 3, 3, 4))}BHK {locality.name}"
        elif shape < 0.55:
            params["q"] = f"{KINDS[kind]} {rng.choice(locality.names)}"
        elif shape < 0.75:
            params["q"], params["location"] = rng.choice(PHRASES), locality.name
        else:
            params["location"], params["propertyType"] = locality.name, kind
        if rng.random() < 0.3:
            low, high = locality.rate_per_sqft
            params["minPrice"], params["maxPrice"] = low * 500, high * 5000
        if rng.random() < 0.3:
            params["sort"] = rng.choice(("price_asc", "price_desc", "newest"))
        requests.append({"method": "GET", "path": "/api/search/properties", "params": params})
    return requests


def advanced_requests(n: int) -> list[dict[str, Any]]:
    """A search form filled in: types, a few localities, a budget, bedrooms, amenities, a distance."""
    rng = random.Random(2)
    requests = []
    for _ in range(n):
        kind = rng.choice(tuple(KINDS))
        places = rng.sample(LOCALITIES, rng.randint(1, 3))
        body: dict[str, Any] = {
            "filters": {"propertyType": [kind], "location": [p.name for p in places]},
            "price": {"min": rng.choice((0, 2_000_000, 5_000_000)), "max": rng.choice((50_000_000, 200_000_000))},
            "amenities": {"any": rng.sample(AMENITIES_BY_TYPE[kind], 2)},
            "facets": ["location", "propertyType", "bedrooms", "price"],
        }
        if kind != "PLOT":
            body["bedrooms"] = {"min": rng.choice((1, 2, 3))}
        if rng.random() < 0.4:
            body["amenities"]["all"] = rng.sample(AMENITIES_BY_TYPE[kind], 1)
        if rng.random() < 0.5:
            body["near"] = {"lat": places[0].latitude, "lon": places[0].longitude, "km": rng.choice((3, 5, 10))}
        if rng.random() < 0.3:
            body["exclude"] = {"location": [rng.choice(LOCALITIES).name]}
        if rng.random() < 0.3:
            body["q"] = rng.choice(PHRASES[:4])
        if rng.random() < 0.3:
            body["sort"] = rng.choice(("price_asc", "newest"))
        requests.append({"method": "POST", "path": "/api/search/advanced", "json": body})
    return requests


def suggestion_requests(n: int) -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [
        {"method": "GET", "path": "/api/search/suggestions", "params": {"q": rng.choice(PREFIXES)}} for _ in range(n)
    ]


SCENARIOS = {"simple": simple_requests, "advanced": advanced_requests, "suggestions": suggestion_requests}


# ---------------------------------------------------------------- 3. the load generator (its own process)


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    rate, total = spec["rate"], int(spec["rate"] * spec["seconds"])
    requests = SCENARIOS[spec["scenario"]](min(total, 2000))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(spec["url"], connector=connector, timeout=timeout) as client:

        async def one(request: dict[str, Any], due: float) -> None:
            try:
                async with client.request(
                    request["method"], request["path"], params=request.get("params"), json=request.get("json")
                ) as answer:
                    await answer.read()
                    if answer.status != 200:
                        errors[str(answer.status)] = errors.get(str(answer.status), 0) + 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - due)

        tasks = []
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(requests[i % len(requests)], due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "seconds": elapsed, "sent": total}


def load_generator(spec_json: str) -> None:
    print(json.dumps(asyncio.run(_open_loop(json.loads(spec_json)))))


async def run_load_generator(spec: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(THIS_FILE), "--load-generator", json.dumps(spec), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def warm_up(url: str) -> None:
    """Caches and global ordinals warm; and a look at what the requests find, so a fast empty answer
    cannot pass for a fast search."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for name, scenario in SCENARIOS.items():
            found = []
            for request in scenario(100):
                answer = await client.request(
                    request["method"], request["path"], params=request.get("params"), json=request.get("json")
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"warm-up {request}: {answer.status_code} {answer.text[:300]}")
                data = answer.json()["data"]
                found.append(data.get("total", len(data["items"])))
            print(
                f"  {name:<12} requests find: median {pct(found, 50):,.0f}, "
                f"{sum(1 for n in found if n) / len(found):.0%} find something",
                flush=True,
            )


async def bench_latency(args: argparse.Namespace) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(
        by_name("search"), LOG_DIR / "search-service.log", {"HI_OPENSEARCH_PROPERTIES_ALIAS": ALIAS}
    )
    await service.start()
    try:
        await warm_up(service.url)
        for scenario in SCENARIOS:
            spec = {
                "url": service.url,
                "scenario": scenario,
                "rate": args.rate,
                "seconds": args.seconds,
                "connections": 64,
            }
            result = await run_load_generator(spec)
            ms = [1000 * s for s in result["latencies"]]
            target = TARGET_P99_MS[scenario]
            verdict = "ok" if pct(ms, 99) < target else "ABOVE TARGET"
            errors = sum(result["errors"].values())
            print(
                f"  {scenario:<12} {len(ms) / result['seconds']:6.1f} req/s offered {args.rate}/s: "
                f"p50 {pct(ms, 50):6.1f} ms  p90 {pct(ms, 90):6.1f} ms  p99 {pct(ms, 99):6.1f} ms  "
                f"max {max(ms, default=float('nan')):6.1f} ms  errors {errors} {result['errors'] or ''}"
                f"  (target p99 < {target} ms)  {verdict}",
                flush=True,
            )
    finally:
        service.stop()


# ---------------------------------------------------------------- 4. alerts


async def bench_alerts(count: int) -> None:
    from schemas.codec import decode
    from schemas.searches import SEARCH_SAVED_MATCH
    from tests.support.search import bearer, create_listing, running_search_slice
    from tests.support.stack import native_endpoints

    word = f"benchalert{uuid.uuid4().hex[:8]}"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = native_endpoints().as_env()
    async with running_search_slice(LOG_DIR, env, max_saved=10) as slice_, slice_.client() as api:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from schemas.topics import SEARCHES

        owner = slice_.owner(1)
        saved = await api.post(
            "/api/search/save", json={"name": "bench", "criteria": {"q": word}}, headers=bearer(owner)
        )
        saved_id = saved.json()["data"]["id"]
        token = {"X-Consistency-Token": saved.headers["X-Consistency-Token"], **bearer(owner)}
        await api.get(f"/api/search/saved/{saved_id}", headers=token)  # registered in the percolator
        consumer = AIOKafkaConsumer(bootstrap_servers=get_settings().kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        partitions = [TopicPartition(SEARCHES.name, p) for p in range(SEARCHES.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        answered: dict[str, float] = {}
        seen: dict[str, float] = {}
        alerts: dict[str, int] = {}

        async def watch() -> None:
            while len(seen) < count:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for messages in batch.values():
                    for message in messages:
                        event = decode(message.value)
                        if event.type == SEARCH_SAVED_MATCH and event.subject == saved_id:
                            seen.setdefault(event.data["propertyId"], now)
                            alerts[event.data["propertyId"]] = alerts.get(event.data["propertyId"], 0) + 1

        watcher = asyncio.create_task(watch())
        try:
            for n in range(count):
                paced = time.perf_counter() + 0.2
                body = {**demo_listing(n, SEED).body, "title": f"{word} listing {n}"}
                made = await create_listing(slice_, f"user-bench-lister{n % 10}", body)
                answered[made.json()["data"]["id"]] = time.time()
                await asyncio.sleep(max(0.0, paced - time.perf_counter()))
            await asyncio.wait_for(watcher, timeout=30)
            await asyncio.sleep(2)  # a duplicate, if any, would come now
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    event = decode(message.value)
                    if event.type == SEARCH_SAVED_MATCH and event.subject == saved_id:
                        alerts[event.data["propertyId"]] = alerts.get(event.data["propertyId"], 0) + 1
        finally:
            watcher.cancel()
            await consumer.stop()
    ms = [1000 * (seen[i] - answered[i]) for i in answered if i in seen]
    verdict = "ok" if pct(ms, 99) < 2000 else "ABOVE TARGET"
    once = sum(1 for n in alerts.values() if n == 1)
    print(
        f"  alerts: {len(ms)} of {count} listings alerted ({once} exactly once); from the create's 201 to the "
        "search.saved_match: "
        f"p50 {pct(ms, 50):.0f} ms  p99 {pct(ms, 99):.0f} ms  max {max(ms, default=float('nan')):.0f} ms"
        f"  (target < 2000 ms)  {verdict}"
    )


# ---------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--load-generator":
        load_generator(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50.0, help="offered requests per second, per scenario")
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario")
    parser.add_argument("--alerts", type=int, default=30, help="matching listings to time (0 skips)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the bench listings")
    args = parser.parse_args()
    print(f"search benchmark ({args.listings:,} listings in alias {ALIAS})", flush=True)
    print(f"  listings: {ensure_bench_listings(args.listings, args.rebuild)}", flush=True)
    asyncio.run(bench_latency(args))
    if args.alerts:
        asyncio.run(bench_alerts(args.alerts))


if __name__ == "__main__":
    main()
