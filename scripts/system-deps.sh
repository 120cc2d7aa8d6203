#!/usr/bin/env bash
# The Debian packages the test suite drives: chromium (the web page and the browser build, through
# playwright-core) and redis-server (the worker fleet on BullMQ). Run by `npm test` (its pretest step)
# and by .ci/run. Missing ones are installed with apt-get when running as root; otherwise this stops at
# once with the exact command to run. Nothing else is installed: npm packages come from `npm ci`.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
command="apt-get update && apt-get install -y --no-install-recommends ${need[*]}"
if [ "${EUID}" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "altclip tests: ${need[*]} not installed (Debian packages the tests drive). As root, run: ${command}" >&2
  exit 1
fi
echo "altclip tests: installing ${need[*]} (Debian packages the tests drive): ${command}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
