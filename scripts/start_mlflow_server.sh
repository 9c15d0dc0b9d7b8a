#!/usr/bin/env bash
# Start the team's MLflow tracking server: PostgreSQL backend, proxied artifact store and
# MLflow's basic-auth app (see docs/server.md). Runs in the foreground (exec), so a process
# supervisor (systemd, a container runtime) or a test can stop it with SIGTERM.
#
# Required environment:
#   SEMQA_MLFLOW_DB                 backend store, e.g. postgresql+psycopg2://mlflow@db.example:5432/mlflow
#                                   (the password from PGPASSFILE / ~/.pgpass, libpq's password file, or in the URI)
#   SEMQA_MLFLOW_AUTH_DB            user/permission store, e.g. postgresql+psycopg2://mlflow:PW@db.example:5432/mlflow_auth
#   SEMQA_MLFLOW_ARTIFACTS          artifact destination: a folder, or s3://…, gs://…
#   MLFLOW_FLASK_SERVER_SECRET_KEY  secret that signs sessions/CSRF tokens (same on every worker)
#   MLFLOW_AUTH_ADMIN_PASSWORD      the admin's password; used only on the first start (empty user store)
# Optional:
#   SEMQA_MLFLOW_HOST (127.0.0.1)  SEMQA_MLFLOW_PORT (5000)  SEMQA_MLFLOW_WORKERS (2)
#   SEMQA_MLFLOW_ADMIN (admin)     SEMQA_MLFLOW_DEFAULT_PERMISSION (READ)
#   SEMQA_MLFLOW_AUTH_CONFIG       where the auth config file is written (default ./mlflow-auth.ini)
#   SEMQA_MLFLOW_ALLOWED_HOSTS     --allowed-hosts for a server reached by name (e.g. mlflow.example.com)
#   SEMQA_MLFLOW_AUTH_CACHE_TTL_S  seconds a worker trusts a checked password (0, MLflow's default: check every request)
set -euo pipefail

: "${SEMQA_MLFLOW_DB:?set SEMQA_MLFLOW_DB to the backend store URI (postgresql+psycopg2://…)}"
: "${SEMQA_MLFLOW_AUTH_DB:?set SEMQA_MLFLOW_AUTH_DB to the auth database URI}"
: "${SEMQA_MLFLOW_ARTIFACTS:?set SEMQA_MLFLOW_ARTIFACTS to the artifact destination}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (e.g. python -c 'import secrets; print(secrets.token_hex(32))')}"

config="${SEMQA_MLFLOW_AUTH_CONFIG:-$PWD/mlflow-auth.ini}"
umask 077
cat > "$config" <<INI
[mlflow]
default_permission = ${SEMQA_MLFLOW_DEFAULT_PERMISSION:-READ}
database_uri = ${SEMQA_MLFLOW_AUTH_DB}
admin_username = ${SEMQA_MLFLOW_ADMIN:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${SEMQA_MLFLOW_AUTH_CACHE_TTL_S:-0}
INI
export MLFLOW_AUTH_CONFIG_PATH="$config"

# The backend store URI may hold the database password: hand it to MLflow through the
# environment (MLFLOW_BACKEND_STORE_URI, which `mlflow server` reads and passes on to its
# workers the same way), never on a command line, where `ps` shows it to every user.
export MLFLOW_BACKEND_STORE_URI="$SEMQA_MLFLOW_DB"
unset SEMQA_MLFLOW_DB

args=(
  --artifacts-destination "$SEMQA_MLFLOW_ARTIFACTS"
  --host "${SEMQA_MLFLOW_HOST:-127.0.0.1}"
  --port "${SEMQA_MLFLOW_PORT:-5000}"
  --workers "${SEMQA_MLFLOW_WORKERS:-2}"
  --app-name basic-auth
)
if [[ -n "${SEMQA_MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "$SEMQA_MLFLOW_ALLOWED_HOSTS")
fi
exec "${MLFLOW:-mlflow}" server "${args[@]}"
