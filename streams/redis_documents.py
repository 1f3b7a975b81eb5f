"""Redis documents written by projections carry their version, and a write lands only over an older
one: a replay or a batch retried after a crash cannot put an old document back."""

# The head of every such Lua script. KEYS[1]: the document's key; ARGV[1]: the version being written.
# Returns 0, writing nothing, when the stored document is as new or newer.
RETURN_IF_NOT_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['version']) and
     tonumber(stored['version']) >= tonumber(ARGV[1]) then
    return 0
  end
end
"""

# KEYS[1]: the document's key; ARGV: version, document (JSON with a `version`). 1 when written.
WRITE_IF_NEWER = (
    RETURN_IF_NOT_NEWER
    + """redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
)
