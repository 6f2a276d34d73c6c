#!/usr/bin/env bash
# Install the system programs that the integration tests need, if they are missing:
# the PostgreSQL server and Chromium, both Debian packages. The tests start and stop the
# stack themselves (PostgreSQL as the user postgres in a temporary directory, SeaweedFS
# and the MLflow server from the virtualenv), each on free ports of 127.0.0.1.
#
# Usage: .ci/services.sh [ENV_FILE]
# Appends `export NAME=value` lines for the tests to ENV_FILE, which the caller sources.
set -euo pipefail

env_file="${1:-/dev/null}"

have_postgres() {
  command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have_chromium() {
  command -v chromium >/dev/null 2>&1
}

packages=()
have_postgres || packages+=(postgresql)
have_chromium || packages+=(chromium)

if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh: missing Debian packages ${packages[*]}; run as root or install them: apt-get install -y ${packages[*]}" >&2
    exit 1
  fi
  echo "services.sh: installing ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

have_postgres || { echo "services.sh: initdb and pg_ctl still not found after installing postgresql" >&2; exit 1; }
have_chromium || { echo "services.sh: chromium still not found after installing it" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "services.sh: the OS user postgres is missing; reinstall the Debian package postgresql" >&2; exit 1; }

echo "export KIDNEY_SSL_CHROMIUM=$(command -v chromium)" >> "$env_file"
echo "services.sh: PostgreSQL $(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1) and $(chromium --version 2>/dev/null | head -n 1) are installed"
