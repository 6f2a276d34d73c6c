#!/bin/sh
# Runs once, when the postgres image initialises an empty data volume: create the roles
# and databases that the native launcher creates (tracking/stack/postgres.py).
set -eu

: "${MLFLOW_DB_PASSWORD:?is not set: give the password of the mlflow role in docker/.env}"
: "${OPTUNA_DB_PASSWORD:?is not set: give the password of the optuna role in docker/.env}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" -v optuna_password="$OPTUNA_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow WITH LOGIN PASSWORD :'mlflow_password';
CREATE ROLE optuna WITH LOGIN PASSWORD :'optuna_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE optuna OWNER optuna;
REVOKE CONNECT ON DATABASE mlflow FROM PUBLIC;
REVOKE CONNECT ON DATABASE mlflow_auth FROM PUBLIC;
REVOKE CONNECT ON DATABASE optuna FROM PUBLIC;
SQL
