#!/usr/bin/env bash
# Debian's chromium and chromedriver for the review page's browser tests (tests/e2e/test_report_browser.py).
# Idempotent and quiet: does nothing when both are installed. The tests never download a browser.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
