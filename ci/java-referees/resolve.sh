#!/usr/bin/env bash
# Resolves the Java referees' jars into ci/java-referees/*/lib (ignored) with Maven, through
# ~/.m2, so later runs need no network. Needs a JDK (javac) and Maven: Debian's
# openjdk-17-jdk-headless and maven. tests/test_digdag_java_*.py and test_sql_java_parsers.py
# compile the drivers against these jars; without them those tests skip, except under CI,
# where they fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for referee in client core tdclient presto trino hive; do
  rm -rf "$here/$referee/lib"
  mvn -q -B -f "$here/$referee/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$here/$referee/lib" -DincludeScope=runtime
done
