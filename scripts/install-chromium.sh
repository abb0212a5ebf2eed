#!/usr/bin/env bash
# Install a headless Chromium for the HTML report test (tests/report/test_report_html_browser.py).
# Idempotent: does nothing when a Chromium is already on PATH. Called by `make setup`/`make test`.
# Without root and without sudo it cannot install; then it explains what to do and, outside CI,
# exits 0 (the test skips with that reason); under CI=true it fails, as the test would.
set -euo pipefail

for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "install-chromium: found $(command -v "$name")"
    exit 0
  fi
done

fail() {
  echo "install-chromium: $*" >&2
  case "${CI:-}" in true|TRUE|True|1|yes) exit 1 ;; esac
  echo "install-chromium: continuing without it; the HTML report test will be skipped" >&2
  exit 0
}

if [[ "$(uname -s)" == "Darwin" ]]; then
  command -v brew >/dev/null 2>&1 || fail "install Homebrew, or Chromium by hand"
  brew install --cask chromium || fail "brew install --cask chromium failed"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
else fail "need root or password-less sudo to install Chromium; install it yourself (Debian: apt-get install chromium)"; fi

if command -v apt-get >/dev/null 2>&1; then
  # Debian ships a real package named chromium; Ubuntu only a snap wrapper named chromium-browser.
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  # Capture first, then test: `apt-cache policy | grep -q` under pipefail fails when grep exits
  # at the first match and apt-cache dies of SIGPIPE, which sent Debian down the Ubuntu branch.
  policy="$(apt-cache policy chromium 2>/dev/null || true)"
  if [[ "$policy" =~ Candidate:\ [0-9] ]]; then
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
      || fail "apt-get install chromium failed"
  else
    "${SUDO[@]}" apt-get install -y -qq chromium-browser || fail "apt-get install chromium-browser failed"
  fi
elif command -v dnf >/dev/null 2>&1; then
  "${SUDO[@]}" dnf install -y chromium || fail "dnf install chromium failed"
elif command -v apk >/dev/null 2>&1; then
  "${SUDO[@]}" apk add --no-cache chromium || fail "apk add chromium failed"
else
  fail "no known package manager (apt-get, dnf, apk, brew); install Chromium and put it on PATH"
fi

command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || fail "installed, but no chromium on PATH"
echo "install-chromium: $(chromium --version 2>/dev/null || chromium-browser --version)"
