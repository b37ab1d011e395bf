#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster and create the test role and database (idempotent).
# Prints the export line for LAMPLIGHTER_TEST_DATABASE_URL.
#
# Run it as a plain command, never inside "$(...)": the server it starts is a daemon, and a daemon
# that inherits the pipe of a command substitution keeps it open, so the substitution never ends.
# For the same reason the server is started with every standard stream pointed away from ours.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start </dev/null >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" && break
  sleep 1
done
# A throwaway test cluster: no durability (no fsync, no full-page writes, asynchronous commits).
# The suite creates and drops databases and truncates tables thousands of times; with fsync each
# DROP DATABASE's checkpoint waited on the disk (27 s for one test's teardown).
su postgres -c "psql -qc \"ALTER SYSTEM SET fsync = off\"" >/dev/null
su postgres -c "psql -qc \"ALTER SYSTEM SET full_page_writes = off\"" >/dev/null
su postgres -c "psql -qc \"ALTER SYSTEM SET synchronous_commit = off\"" >/dev/null
su postgres -c "psql -qtAc \"SELECT pg_reload_conf()\"" >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='lamplighter'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE lamplighter LOGIN PASSWORD 'lamplighter' CREATEDB;\""
# The self-service postgres.database action creates databases and roles: its tests connect as
# this administrator (LAMPLIGHTER_TEST_PG_ADMIN_URL).
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='lamplighter_admin'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE lamplighter_admin LOGIN PASSWORD 'lamplighter_admin' CREATEDB CREATEROLE;\""
for name in lamplighter_test lamplighter_bench; do
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='$name'\"" | grep -q 1 \
    || su postgres -c "createdb -O lamplighter $name"
done
echo "export LAMPLIGHTER_TEST_DATABASE_URL=postgresql+psycopg://lamplighter:lamplighter@127.0.0.1:5432/lamplighter_test"
echo "export LAMPLIGHTER_TEST_PG_ADMIN_URL=postgresql://lamplighter_admin:lamplighter_admin@127.0.0.1:5432/postgres"
