# ruff: noqa: E402  (the project root goes on sys.path before the imports: bench is not installed)
"""Benchmark: OpenSearch CPU per listings search: the search as the service sends it (`shipped`: one
`_search` with the default facets, the exact total and a keyword `id` tiebreak) next to the variants
named in `--compare`, alternated:
- `two-leg`: a size-0 leg with the total and facets (kept by the shard request cache) and the page
  without a total, in one `_msearch` (measured costing more; not what the service sends);
- `one-sort-key`: no `id` tiebreak (what a numeric tiebreak could at best save);
- `no-spelling`: the locality facet without its `location.raw` sub-aggregation;
- `no-facets`: the page and total only;
- `service`: `GET /api/search/properties` through the search service itself (on a free port, pointed
  at this OpenSearch and alias; anonymous), so the figure is the service's OpenSearch CPU per search.

    .venv/bin/python bench/search_cost.py [--opensearch http://127.0.0.1:9200] [--pid PID]
        [--listings 6000] [--searches 300] [--rounds 3] [--compare two-leg,...] [--live 10]

Not part of `make test`; prints numbers, never asserts. Run it against an OpenSearch of its own when
the machine is shared (`--opensearch`, `--pid`): the CPU counted is the whole OpenSearch process's
(utime + stime of its threads from /proc/<pid>/task, the JIT compiler's threads left out), so anyone
else's indexing there lands in the figures. What is left of that is taken out: each burst is followed
by an idle window as long as the burst, and the idle CPU is subtracted.

Listings: `--listings` of bench/search.py's documents (ops/demo_data.py, seed 777) in an alias of their
own, `bench-search-cost`, with the production mapping, written in bulks of 250 with `refresh=true` as
the search projection writes (so the index has the segments a live one has, not one merged segment).
`--live N` keeps writing: N single-listing bulks a second with `refresh=true` throughout, as the
projection does under creates, so caches and global ordinals are invalidated as in production (the
writes run through the idle windows too, so their own CPU is subtracted). Searches: the four of the
day's traffic mix (bench/mix.py): words, a locality, a locality and bedrooms, words and a top price,
each with the default facets of `GET /api/search/properties`, in two kinds of burst:
- repeated: the same search `--searches` times (a common search between two refreshes of the index);
- distinct: `--searches` different searches of that shape (the locality, the bedrooms, the price
  vary), the shard request cache cleared first: nothing cached helps, as right after a refresh.
Each burst runs 4 searches at a time.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import orjson

from api.search.models import Facet, Sort
from api.search.queries import HIT_FIELDS, facet_aggregations, sort_clause  # what the service sends
from api.search.routes import _simple_criteria as simple_criteria  # the criteria the service reads from a URL
from api.services import by_name
from bench.search import bench_document
from config import get_settings
from ops.search_index import MAPPING_VERSION, alias_indices, create_index, mapping_version, new_index_name
from ops.search_index import properties_index_body as index_body
from schemas.localities import LOCALITIES
from schemas.search_query import search_query
from schemas.searches import SearchCriteria
from tests.support.services import ServiceProcess

ALIAS = "bench-search-cost"
DEFAULT_FACETS = {Facet.LOCATION, Facet.PROPERTY_TYPE, Facet.BEDROOMS, Facet.PRICE}
LIMIT = 20
CONCURRENCY = 4
TICKS = os.sysconf("SC_CLK_TCK")

Request = tuple[str, str, dict[str, Any]]
Params = dict[str, str | int]


def search_body(criteria: SearchCriteria) -> dict[str, Any]:
    """What `GET /api/search/properties` sends for a first page (api/search/queries.search_listings)."""
    sort = Sort.RELEVANCE if criteria.q else Sort.NEWEST
    return {
        "query": search_query(criteria),
        "size": LIMIT + 1,
        "sort": sort_clause(sort),
        "track_total_hits": True,
        "aggs": facet_aggregations(DEFAULT_FACETS),
    }


def search_request(body: dict[str, Any]) -> Request:
    options = {
        "content": orjson.dumps(body),
        "params": {"filter_path": HIT_FIELDS},
        "headers": {"Content-Type": "application/json"},
    }
    return "POST", f"/{ALIAS}/_search", options


def shipped_request(criteria: SearchCriteria) -> Request:
    return search_request(search_body(criteria))


def one_sort_key_request(criteria: SearchCriteria) -> Request:
    body = search_body(criteria)
    body["sort"] = body["sort"][:-1]
    return search_request(body)


def no_spelling_request(criteria: SearchCriteria) -> Request:
    body = search_body(criteria)
    body["aggs"]["location"].pop("aggs")
    return search_request(body)


def no_facets_request(criteria: SearchCriteria) -> Request:
    body = search_body(criteria)
    body.pop("aggs")
    return search_request(body)


# The two-leg `_msearch` that was tried (and measured costing more): a size-0 leg with the total and the
# facets, kept by the shard request cache, and the page without counting every match.
_LEG_FIELDS = (
    "responses.status,responses.error,responses.hits.total,responses.aggregations,"
    "responses.hits.hits._score,responses.hits.hits._source,responses.hits.hits.sort"
)


def two_leg_request(criteria: SearchCriteria) -> Request:
    sort = Sort.RELEVANCE if criteria.q else Sort.NEWEST
    query = search_query(criteria)
    counts = {"size": 0, "query": query, "track_total_hits": True, "aggs": facet_aggregations(DEFAULT_FACETS)}
    hits = {"query": query, "size": LIMIT + 1, "sort": sort_clause(sort), "track_total_hits": False}
    lines = [{"index": ALIAS, "request_cache": True}, counts, {"index": ALIAS}, hits]
    return (
        "POST",
        "/_msearch",
        {
            "content": b"\n".join(orjson.dumps(line) for line in lines) + b"\n",
            "params": {"filter_path": _LEG_FIELDS},
            "headers": {"Content-Type": "application/x-ndjson"},
        },
    )


def shapes(n: int) -> dict[str, list[Params]]:
    """Per shape of the mix, n searches as `GET /api/search/properties` parameters: the first one is
    the `repeated` search."""
    found: dict[str, list[Params]] = {"words": [], "locality": [], "locality+bedrooms": [], "words+price": []}
    for i in range(n):
        place = LOCALITIES[i % len(LOCALITIES)]
        bedrooms = 1 + (i // len(LOCALITIES)) % 4
        found["words"].append({"q": place.name.lower() if i else "gachibowli"})
        found["locality"].append({"location": place.name})
        found["locality+bedrooms"].append({"location": place.name, "bedrooms": bedrooms})
        found["words+price"].append({"q": f"{bedrooms}bhk", "maxPrice": 5_000_000 + 250_000 * i})
    return found


def criteria_of(params: Params) -> SearchCriteria:
    def number(name: str) -> int | None:
        return int(params[name]) if name in params else None

    q, location = params.get("q"), params.get("location")
    return simple_criteria(
        str(q) if q is not None else None,
        str(location) if location is not None else None,
        None,
        number("minPrice"),
        number("maxPrice"),
        number("bedrooms"),
        None,
    )


# The JVM's JIT compiler threads are left out: on a JVM started recently, or starved of CPU by a
# busy machine, they compile in bursts unrelated to the searches measured (a third of its CPU here).
_COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre", "Sweeper thread")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process's threads but the JIT compiler's."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() in _COMPILER_THREADS:
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


async def burst(client: httpx.AsyncClient, pid: int, requests: list[Request]) -> float:
    """OpenSearch CPU ms per request over the burst, less what it used idle for as long again."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(request: Request) -> None:
        method, path, options = request
        async with gate:
            answer = await client.request(method, path, **options)
        answer.raise_for_status()
        body = answer.json()
        for leg in body.get("responses", [body]):
            if "error" in leg:
                raise RuntimeError(f"search failed: {leg['error']}")

    before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    used, took = cpu_seconds(pid) - before, time.perf_counter() - started
    idle_before = cpu_seconds(pid)
    await asyncio.sleep(took)
    idle = cpu_seconds(pid) - idle_before
    return 1000 * max(0.0, used - idle) / len(requests)


def bulk(index: str, documents: list[dict[str, Any]]) -> Request:
    lines = []
    for document in documents:
        lines.append(orjson.dumps({"index": {"_index": index, "_id": document["id"]}}))
        lines.append(orjson.dumps(document))
    # refresh=true, as the search projection writes (streams/properties/sinks.py).
    options = {
        "content": b"\n".join(lines) + b"\n",
        "params": {"refresh": "true"},
        "headers": {"Content-Type": "application/x-ndjson"},
    }
    return "POST", "/_bulk", options


def ensure_listings(client: httpx.Client, count: int) -> str:
    current = alias_indices(client, ALIAS)
    if current and mapping_version(client, current[0]) >= MAPPING_VERSION:
        have = client.get(f"/{ALIAS}/_count").json()["count"]
        if have == count:
            return f"reused {current[0]} ({have} listings)"
    index = new_index_name(ALIAS)
    create_index(client, index, index_body())
    for start in range(0, count, 250):
        method, path, options = bulk(index, [bench_document(i) for i in range(start, min(count, start + 250))])
        answer = client.request(method, path, **options)
        answer.raise_for_status()
        if answer.json()["errors"]:
            raise RuntimeError(f"bulk refused documents: {answer.text[:500]}")
    actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": ALIAS}} for name in current]
    actions.append({"add": {"index": index, "alias": ALIAS, "is_write_index": True}})
    client.post("/_aliases", json={"actions": actions}).raise_for_status()
    for name in current:
        client.delete(f"/{name}")
    segments = len(client.get(f"/_cat/segments/{index}", params={"format": "json"}).json())
    return f"built {index} ({count} listings, {segments} segments)"


async def keep_writing(client: httpx.AsyncClient, count: int, per_second: float) -> None:
    """A listing re-indexed (a later version) `per_second` times a second, each bulk refreshed."""
    written = 0
    while True:
        document = bench_document(written % count)
        document["version"] += 1 + written // count
        method, path, options = bulk(ALIAS, [document])
        (await client.request(method, path, **options)).raise_for_status()
        written += 1
        await asyncio.sleep(1 / per_second)


def service_request(service_url: str) -> Callable[[Params], Request]:
    def request(params: Params) -> Request:
        return "GET", f"{service_url}/api/search/properties", {"params": params}

    return request


def direct(make: Callable[[SearchCriteria], Request]) -> Callable[[Params], Request]:
    return lambda params: make(criteria_of(params))


COMPARED: dict[str, Callable[[SearchCriteria], Request]] = {
    "two-leg": two_leg_request,
    "one-sort-key": one_sort_key_request,
    "no-spelling": no_spelling_request,
    "no-facets": no_facets_request,
}


async def measure(url: str, pid: int, kinds: dict[str, Callable[[Params], Request]], args: argparse.Namespace) -> None:
    figures: dict[tuple[str, str, str], list[float]] = {}
    rounds = args.rounds
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        writer = asyncio.create_task(keep_writing(client, args.listings, args.live)) if args.live else None
        chosen = {shape: params for shape, params in shapes(args.searches).items() if shape in args.shapes.split(",")}
        for params in chosen.values():  # warm: caches, global ordinals, JIT
            for make in kinds.values():
                await burst(client, pid, [make(p) for p in params[:20]])
        for round_ in range(1, rounds + 1):
            for shape, params in chosen.items():
                for burst_kind in ("repeated", "distinct"):
                    for name, make in kinds.items():
                        if burst_kind == "distinct":
                            (await client.post(f"/{ALIAS}/_cache/clear", params={"request": "true"})).raise_for_status()
                            requests = [make(p) for p in params]
                        else:
                            requests = [make(params[0])] * args.searches
                        ms = await burst(client, pid, requests)
                        figures.setdefault((shape, burst_kind, name), []).append(ms)
                        print(f"    round {round_} {shape:<18} {burst_kind:<9} {name}: {ms:.2f} ms", flush=True)
            print(f"  round {round_} of {rounds} done", flush=True)
        if writer:
            writer.cancel()
    others = [name for name in kinds if name != "shipped"]
    print(f"\nOpenSearch CPU ms per search (median of {rounds} rounds; each round's figures in brackets)")
    print(f"  {'shape':<20} {'burst':<9} {'shipped':>8} " + " ".join(f"{name:>13}" for name in others))
    for shape in chosen:
        for burst_kind in ("repeated", "distinct"):
            line = f"  {shape:<20} {burst_kind:<9}"
            rounds_of = []
            for name in kinds:
                values = figures[(shape, burst_kind, name)]
                line += f" {statistics.median(values):{8 if name == 'shipped' else 13}.2f}"
                rounds_of.append(f"{name} {[round(x, 1) for x in values]}")
            print(f"{line}   {' '.join(rounds_of)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opensearch", help="OpenSearch URL (default: the settings')")
    parser.add_argument("--pid", type=int, help="its process id (default: the stack's run/opensearch.pid)")
    parser.add_argument("--listings", type=int, default=6000)
    parser.add_argument("--searches", type=int, default=300, help="per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(shapes(1)), help="which of the four, comma-separated")
    parser.add_argument(
        "--compare", default="two-leg,one-sort-key,no-spelling,no-facets,service", help="variants beside `shipped`"
    )
    parser.add_argument("--live", type=float, default=0, help="refreshed single-listing writes a second meanwhile")
    args = parser.parse_args()
    settings = get_settings()
    url = args.opensearch or settings.opensearch_url
    pid = args.pid or int((settings.state_dir / "run" / "opensearch.pid").read_text().split()[0])
    compared = [name for name in args.compare.split(",") if name]
    unknown = set(compared) - {*COMPARED, "service"}
    if unknown:
        parser.error(f"--compare: unknown variants {sorted(unknown)}")
    print(f"search cost benchmark: OpenSearch {url} (pid {pid}), alias {ALIAS}", flush=True)
    with httpx.Client(base_url=url, timeout=900) as client:
        print(f"  listings: {ensure_listings(client, args.listings)}", flush=True)
    kinds = {
        "shipped": direct(shipped_request),
        **{name: direct(COMPARED[name]) for name in compared if name in COMPARED},
    }
    service = None
    if "service" in compared:
        log = settings.state_dir / "logs" / "bench-search-cost-service.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        service = ServiceProcess(
            by_name("search"), log, {"HI_OPENSEARCH_URL": url, "HI_OPENSEARCH_PROPERTIES_ALIAS": ALIAS}
        )
        asyncio.run(service.start())
        kinds["service"] = service_request(service.url)
    try:
        asyncio.run(measure(url, pid, kinds, args))
    finally:
        if service:
            service.stop()


if __name__ == "__main__":
    main()
