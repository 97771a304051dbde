#!/usr/bin/env bash
# Fetches Apache Kafka's broker and its runtime dependencies from Maven
# Central into one directory (the classpath the tests and benchmarks start
# `java kafka.Kafka server.properties` with), unless it is there already.
# The directory: $KAFKA_LIBS, else ~/.cache/samvad/kafka-<version>/libs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="${KAFKA_LIBS:-$HOME/.cache/samvad/kafka-$version/libs}"
if [ -f "$libs/kafka_2.13-$version.jar" ]; then
  exit 0
fi
tmp="$libs.partial"
rm -rf "$tmp"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp"
rm -rf "$libs"
mv "$tmp" "$libs"
echo "Apache Kafka $version in $libs"
