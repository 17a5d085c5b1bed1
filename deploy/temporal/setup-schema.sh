#!/bin/sh
# Temporal's two databases (history and visibility) on the installation's PostgreSQL, brought to
# the schema version the server image expects. Every step is idempotent: compose runs this before
# each start of the server, so upgrading the image tags of both upgrades the schema first.
set -eu

SQL_PASSWORD="$(cat "$SQL_PASSWORD_FILE")"
export SQL_PLUGIN=postgres12 SQL_PASSWORD
# Where the admin tools image ships the schema files of its version.
schemas="${TEMPORAL_SCHEMA_DIRECTORY:-/etc/temporal/schema}/postgresql/v12"

setup() {
  database=$1
  schema=$2
  temporal-sql-tool --db "$database" create-database
  # Version 0.0 only creates the version bookkeeping tables; update-schema then applies every
  # versioned step this image ships that the database has not seen yet.
  temporal-sql-tool --db "$database" setup-schema -v 0.0
  temporal-sql-tool --db "$database" update-schema -d "$schemas/$schema/versioned"
}

setup "$TEMPORAL_DATABASE" temporal
setup "$TEMPORAL_VISIBILITY_DATABASE" visibility
