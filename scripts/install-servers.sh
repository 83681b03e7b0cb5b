#!/usr/bin/env bash
# Installs the servers the integration tests start on loopback: Debian's clickhouse-server and Prometheus.
# Idempotent: does nothing when they are already there. Needs root (CI and dev machines run as root).
set -euo pipefail
need=()
command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server clickhouse-client)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install-servers: need root to apt-get install ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's packages start services via init scripts where they can; the tests start their own copies.
  (service clickhouse-server stop || true) >/dev/null 2>&1
  (service prometheus stop || true) >/dev/null 2>&1
fi
# Debian's 18.16 binary has no --version; ask the package manager first (the warehouse tests need >= 18.16).
ch_version=$(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || clickhouse-server --version 2>/dev/null | head -1 || echo '?')
echo "servers: clickhouse-server ${ch_version}; $(prometheus --version 2>&1 | head -1)"
