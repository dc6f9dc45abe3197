#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real (called by `make test` and .ci/run).
# Only installs what is missing; needs root or sudo for apt-get.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)   # scale-out tests: real etcd members
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client) # kube-apiserver tests: compact etcd (410 Gone)
[ -x /usr/bin/chromium ] || need+=(chromium)              # dashboard browser tests (Playwright)
command -v openssl >/dev/null 2>&1 || need+=(openssl)     # kube-apiserver tests: service-account keys
{ command -v mariadbd && ls /usr/lib/postgresql/*/bin/pg_basebackup; } >/dev/null 2>&1 || need+=(mariadb-server postgresql)  # database tests
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # cache tests: ephemeral servers on free ports
command -v java >/dev/null 2>&1 || need+=(default-jdk-headless)  # interop tests: the official Java SDK
command -v mvn >/dev/null 2>&1 || need+=(maven)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
fi
echo "installing system packages: ${need[*]} (apt-get; about a minute or two)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}" >&2
