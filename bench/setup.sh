#!/usr/bin/env bash
# Installs what the comparison needs, once: wrk, Django and gunicorn from
# Debian (when missing; needs root), and this folder's npm dependencies.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/gunicorn ] || need+=(gunicorn)
/usr/bin/python3 -c 'import django' 2>/dev/null || need+=(python3-django)
if [ ${#need[@]} -gt 0 ]; then
  echo "[bench] installing ${need[*]} from Debian"
  if [ "$(id -u)" -ne 0 ]; then
    echo "[bench] not root: run  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v taskset >/dev/null || echo "[bench] taskset not found: server and load generator will not be pinned" >&2

if [ ! -d node_modules/express-session ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "[bench] npm install (bench/)"
  npm install --no-audit --no-fund --loglevel=error
fi
