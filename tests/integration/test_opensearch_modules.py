"""OpenSearch carries the modules a real search needs; ops/check-opensearch.sh proves each by use
(edge n-gram analysis, a percolator match, scaled_float, a painless script, a reindex)."""

import subprocess

import httpx

from config.settings import PROJECT_ROOT

NEEDED = {
    "org.opensearch.analysis.common.CommonAnalysisPlugin",
    "org.opensearch.painless.PainlessPlugin",
    "org.opensearch.percolator.PercolatorPlugin",
    "org.opensearch.index.mapper.MapperExtrasPlugin",
    "org.opensearch.index.reindex.ReindexPlugin",
}


def test_the_node_lists_the_search_modules(settings):
    nodes = httpx.get(f"{settings.opensearch_url}/_nodes/plugins", timeout=10).json()["nodes"]
    loaded = {
        entry["classname"] for node in nodes.values() for entry in node.get("plugins", []) + node.get("modules", [])
    }
    assert loaded >= NEEDED, NEEDED - loaded


def test_each_module_works_including_a_matching_percolate_query(settings):
    check = subprocess.run(
        [str(PROJECT_ROOT / "ops" / "check-opensearch.sh")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HI_OPENSEARCH_URL": settings.opensearch_url},
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
