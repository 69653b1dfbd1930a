#!/usr/bin/env bash
# Installs what the tests need beyond Python packages: mosquitto and chromium (Debian), and the
# Prism mock of Twilio (npm, into .cache/prism). Idempotent: does nothing when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# CJK glyphs for the console screenshots (Chinese is the default language)
[ -d /usr/share/fonts/opentype/noto ] || need_apt+=(fonts-noto-cjk)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing ${need_apt[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .cache/prism/node_modules/.bin/prism ] && [ -z "${ELDERCARE_PRISM_BIN:-}" ]; then
  echo "installing @stoplight/prism-cli (npm, into .cache/prism)"
  mkdir -p .cache/prism
  (cd .cache/prism && { [ -f package.json ] || npm init -y >/dev/null; } \
     && npm install --silent --no-audit --no-fund @stoplight/prism-cli@5.14.2 >/dev/null)
fi

spec="${ELDERCARE_TWILIO_SPEC:-../shared/twilio/twilio_api_v2010.json}"
[ -f "$spec" ] || { echo "Twilio OpenAPI spec not found at $spec (set ELDERCARE_TWILIO_SPEC)"; exit 1; }
