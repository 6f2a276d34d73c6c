#!/bin/sh
# Write the basic-auth configuration, then start the MLflow server with the arguments given.
# The users database sits beside the tracking database in the same PostgreSQL server:
# its URI is MLFLOW_BACKEND_STORE_URI with the database name mlflow_auth.
set -eu

: "${MLFLOW_BACKEND_STORE_URI:?is not set: give the tracking database URI}"
: "${MLFLOW_AUTH_CONFIG_PATH:?is not set: give the path of the basic-auth configuration to write}"

auth_database_uri=$(python -c 'import sys; base, _, _ = sys.argv[1].rpartition("/"); print(base + "/mlflow_auth")' "$MLFLOW_BACKEND_STORE_URI")

umask 077
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = ${auth_database_uri}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI

exec mlflow server "$@"
