# ruff: noqa: E402  (the project root goes on sys.path before the imports: bench is not installed)
"""Benchmark: OpenSearch CPU per listings search: the search as it is sent (`old`: one `_search` with
the facets, the exact total and a keyword `id` tiebreak) next to a two-leg `_msearch` (`new`: a size-0
leg with the total and facets, kept by the shard request cache, and the page without a total),
alternated. The two-leg form was measured costing more and is not what the service sends.

    .venv/bin/python bench/search_cost.py [--opensearch http://127.0.0.1:9200] [--pid PID]
        [--listings 6000] [--searches 300] [--rounds 3]

Not part of `make test`; prints numbers, never asserts. Run it against an OpenSearch of its own when
the machine is shared (`--opensearch`, `--pid`): the CPU counted is the whole OpenSearch process's
(utime + stime of its threads from /proc/<pid>/task, the JIT compiler's threads left out), so anyone
else's indexing there lands in the figures. What is left of that is taken out: each burst is followed
by an idle window as long as the burst, and the idle CPU is subtracted.

Listings: `--listings` of bench/search.py's documents (ops/demo_data.py, seed 777) in an alias of their
own, `bench-search-cost`, with the production mapping. Searches: the four of the day's traffic mix
(bench/mix.py): words, a locality, a locality and bedrooms, words and a top price, each with the
default facets of `GET /api/search/properties`, in two kinds of burst:
- repeated: the same search `--searches` times (a common search between two refreshes of the index);
- distinct: `--searches` different searches of that shape (the locality, the bedrooms, the price
  vary), the shard request cache cleared first: nothing cached helps, as right after a refresh.
Each burst runs 4 searches at a time. Old and new alternate within each round.
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
from bench.search import bench_document
from config import get_settings
from ops.search_index import MAPPING_VERSION, alias_indices, create_index, mapping_version, new_index_name
from ops.search_index import properties_index_body as index_body
from schemas.localities import LOCALITIES
from schemas.search_query import search_query
from schemas.searches import SearchCriteria

ALIAS = "bench-search-cost"
DEFAULT_FACETS = {Facet.LOCATION, Facet.PROPERTY_TYPE, Facet.BEDROOMS, Facet.PRICE}
LIMIT = 20
CONCURRENCY = 4
TICKS = os.sysconf("SC_CLK_TCK")

Request = tuple[str, str, dict[str, Any]]


def old_request(criteria: SearchCriteria) -> Request:
    sort = Sort.RELEVANCE if criteria.q else Sort.NEWEST
    body = {
        "query": search_query(criteria),
        "size": LIMIT + 1,
        "sort": sort_clause(sort),
        "track_total_hits": True,
        "aggs": facet_aggregations(DEFAULT_FACETS),
    }
    options = {
        "content": orjson.dumps(body),
        "params": {"filter_path": HIT_FIELDS},
        "headers": {"Content-Type": "application/json"},
    }
    return "POST", f"/{ALIAS}/_search", options


# The two-leg `_msearch` that was tried (and measured costing more): a size-0 leg with the total and the
# facets, kept by the shard request cache, and the page without counting every match.
_LEG_FIELDS = (
    "responses.status,responses.error,responses.hits.total,responses.aggregations,"
    "responses.hits.hits._score,responses.hits.hits._source,responses.hits.hits.sort"
)


def new_request(criteria: SearchCriteria) -> Request:
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


def shapes(n: int) -> dict[str, list[SearchCriteria]]:
    """Per shape of the mix, n searches: the first one is the `repeated` search."""
    found: dict[str, list[SearchCriteria]] = {"words": [], "locality": [], "locality+bedrooms": [], "words+price": []}
    for i in range(n):
        place = LOCALITIES[i % len(LOCALITIES)]
        bedrooms = 1 + (i // len(LOCALITIES)) % 4
        found["words"].append(SearchCriteria(q=place.name.lower() if i else "gachibowli"))
        found["locality"].append(SearchCriteria.model_validate({"filters": {"location": [place.name]}}))
        found["locality+bedrooms"].append(
            SearchCriteria.model_validate(
                {"filters": {"location": [place.name]}, "bedrooms": {"min": bedrooms, "max": bedrooms}}
            )
        )
        found["words+price"].append(
            SearchCriteria.model_validate({"q": f"{bedrooms}bhk", "price": {"max": 5_000_000 + 250_000 * i}})
        )
    return found


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


def ensure_listings(client: httpx.Client, count: int) -> str:
    current = alias_indices(client, ALIAS)
    if current and mapping_version(client, current[0]) >= MAPPING_VERSION:
        have = client.get(f"/{ALIAS}/_count").json()["count"]
        if have == count:
            return f"reused {current[0]} ({have} listings)"
    index = new_index_name(ALIAS)
    create_index(client, index, index_body())
    for start in range(0, count, 500):
        lines = []
        for i in range(start, min(count, start + 500)):
            lines.append(orjson.dumps({"index": {"_index": index, "_id": f"prop-bench{i:07d}"}}))
            lines.append(orjson.dumps(bench_document(i)))
        answer = client.post(
            "/_bulk", content=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
        )
        answer.raise_for_status()
        if answer.json()["errors"]:
            raise RuntimeError(f"bulk refused documents: {answer.text[:500]}")
    client.post(f"/{index}/_refresh").raise_for_status()
    client.post(f"/{index}/_forcemerge", params={"max_num_segments": 1}, timeout=300).raise_for_status()
    actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": ALIAS}} for name in current]
    actions.append({"add": {"index": index, "alias": ALIAS, "is_write_index": True}})
    client.post("/_aliases", json={"actions": actions}).raise_for_status()
    for name in current:
        client.delete(f"/{name}")
    return f"built {index} ({count} listings)"


async def measure(url: str, pid: int, searches: int, rounds: int, only: list[str]) -> None:
    kinds: dict[str, Callable[[SearchCriteria], Request]] = {"old": old_request, "new": new_request}
    figures: dict[tuple[str, str, str], list[float]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        chosen = {shape: criteria for shape, criteria in shapes(searches).items() if shape in only}
        for criteria in chosen.values():  # warm: caches, global ordinals, JIT
            for make in kinds.values():
                await burst(client, pid, [make(c) for c in criteria[:20]])
        for round_ in range(1, rounds + 1):
            for shape, criteria in chosen.items():
                for burst_kind in ("repeated", "distinct"):
                    for name, make in kinds.items():
                        if burst_kind == "distinct":
                            (await client.post(f"/{ALIAS}/_cache/clear", params={"request": "true"})).raise_for_status()
                            requests = [make(c) for c in criteria]
                        else:
                            requests = [make(criteria[0])] * searches
                        ms = await burst(client, pid, requests)
                        figures.setdefault((shape, burst_kind, name), []).append(ms)
                        print(f"    round {round_} {shape:<18} {burst_kind:<9} {name}: {ms:.2f} ms", flush=True)
            print(f"  round {round_} of {rounds} done", flush=True)
    print(f"\nOpenSearch CPU ms per search (median of {rounds} rounds; each round's figures in brackets)")
    print(f"  {'shape':<20} {'burst':<9} {'old':>8} {'new':>8} {'new/old':>8}")
    for shape in chosen:
        for burst_kind in ("repeated", "distinct"):
            old = figures[(shape, burst_kind, "old")]
            new = figures[(shape, burst_kind, "new")]
            ratio = statistics.median(new) / statistics.median(old) if statistics.median(old) else float("nan")
            print(
                f"  {shape:<20} {burst_kind:<9} {statistics.median(old):8.2f} {statistics.median(new):8.2f}"
                f" {ratio:8.2f}   old {[round(x, 1) for x in old]} new {[round(x, 1) for x in new]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opensearch", help="OpenSearch URL (default: the settings')")
    parser.add_argument("--pid", type=int, help="its process id (default: the stack's run/opensearch.pid)")
    parser.add_argument("--listings", type=int, default=6000)
    parser.add_argument("--searches", type=int, default=300, help="per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(shapes(1)), help="which of the four, comma-separated")
    args = parser.parse_args()
    settings = get_settings()
    url = args.opensearch or settings.opensearch_url
    pid = args.pid or int((settings.state_dir / "run" / "opensearch.pid").read_text().split()[0])
    print(f"search cost benchmark: OpenSearch {url} (pid {pid}), alias {ALIAS}", flush=True)
    with httpx.Client(base_url=url, timeout=900) as client:
        print(f"  listings: {ensure_listings(client, args.listings)}", flush=True)
    asyncio.run(measure(url, pid, args.searches, args.rounds, args.shapes.split(",")))


if __name__ == "__main__":
    main()
