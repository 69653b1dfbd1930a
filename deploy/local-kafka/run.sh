#!/usr/bin/env bash
# A real Apache Kafka broker on loopback, single node in KRaft mode, from Maven artifacts:
# to run the platform, its chaos bench and tests/test_external_kafka.py against Apache Kafka
# instead of the embedded tansu (docs/reliability-stack.md, "Against Apache Kafka").
#
#   deploy/local-kafka/run.sh            # Kafka 4.0.0; prints ELDERCARE_KAFKA_BOOTSTRAP=...
#   KAFKA_VERSION=4.1.0 deploy/local-kafka/run.sh
#   KAFKA_JARS=/opt/kafka_2.13-4.0.0/libs deploy/local-kafka/run.sh   # jars you already have
#
# Needs java (17+) and, unless KAFKA_JARS is given, mvn with access to Maven Central. The jars
# go to a cache outside the repository (KAFKA_CACHE, default ~/.cache/eldercare/kafka-VERSION);
# the broker's data and log go to a fresh directory (KAFKA_WORK, default a temporary one).
# The broker runs in the foreground: Ctrl-C (or SIGTERM) stops it.
set -euo pipefail

version="${KAFKA_VERSION:-4.0.0}"
log4j_version="${LOG4J_VERSION:-2.24.3}"
cache="${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eldercare/kafka-$version}"
work="${KAFKA_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/eldercare-kafka-XXXXXX")}"
jars="${KAFKA_JARS:-$cache/jars}"

say() { echo "[local-kafka] $*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fetch() {
    # The broker (kafka_2.13 brings server, storage, raft, metadata, the group coordinator)
    # and a log4j 2 binding: Kafka 4 logs through SLF4J to log4j 2 (KIP-653).
    mkdir -p "$cache"
    cat > "$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eldercare.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$log4j_version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$log4j_version</version></dependency>
  </dependencies>
</project>
POM
    say "fetching Apache Kafka $version with mvn into $jars"
    if ! mvn -B -q -f "$cache/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$jars" >&2; then
        rm -rf "$jars"
        say "mvn could not fetch org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)."
        say "Alternatively point KAFKA_JARS at the libs/ folder of an unpacked Kafka release."
        exit 2
    fi
}

if [ -z "${KAFKA_JARS:-}" ] && ! ls "$jars"/kafka_2.13-*.jar >/dev/null 2>&1; then
    fetch
fi
ls "$jars"/kafka_2.13-*.jar >/dev/null 2>&1 || { say "no kafka_2.13 jar in $jars"; exit 2; }

port="${KAFKA_PORT:-$(free_port)}"
controller_port="$(free_port)"
mkdir -p "$work/data"
cat > "$work/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$work/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The platform's consumers use a 2 s session (ELDERCARE_KAFKA_SESSION_TIMEOUT_MS); Kafka's
# default floor is 6 s, and a join below it fails with INVALID_SESSION_TIMEOUT.
group.min.session.timeout.ms=${GROUP_MIN_SESSION_TIMEOUT_MS:-1000}
# A replacement joining a group its dead predecessor was evicted from joins an empty group,
# which Kafka holds for this long (default 3 s) waiting for more members.
group.initial.rebalance.delay.ms=${GROUP_INITIAL_REBALANCE_DELAY_MS:-0}
PROPS
cat > "$work/log4j2.properties" <<LOG
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = $work/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
LOG

java_opts=(-Xms256m -Xmx768m "-Dlog4j2.configurationFile=$work/log4j2.properties")
cluster_id="$(java "${java_opts[@]}" -cp "$jars/*" kafka.tools.StorageTool random-uuid)"
java "${java_opts[@]}" -cp "$jars/*" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$work/server.properties" >&2

java "${java_opts[@]}" -cp "$jars/*" kafka.Kafka "$work/server.properties" \
    > "$work/stdout.log" 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 240); do  # up to 60 s: a loaded machine starts the JVM slowly
    if ! kill -0 "$broker" 2>/dev/null; then
        say "the broker exited; see $work/server.log and $work/stdout.log"
        exit 1
    fi
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null
    then
        echo "127.0.0.1:$port" > "$work/bootstrap"
        say "Apache Kafka $version (pid $broker) up; data and logs in $work"
        echo "ELDERCARE_KAFKA_BOOTSTRAP=127.0.0.1:$port"
        wait "$broker"
        exit $?
    fi
    sleep 0.25
done
say "the broker did not listen on 127.0.0.1:$port within 60 s; see $work/server.log"
exit 1
