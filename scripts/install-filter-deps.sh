#!/usr/bin/env bash
# System packages the caption filters need, installed before `pip install -r requirements.lock`:
# - protobuf-compiler + libprotobuf-dev: gcld3 (laion2b's language detector, as DataComp uses) builds
#   from source against them;
# - wordnet-base: WordNet 3.0 for the text_based filter (read by NLTK).
# Idempotent: installs nothing when they are present. Called by `make setup`.
# Without root or password-less sudo, or without apt-get, it says what to install and fails.
set -euo pipefail

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[[ -f "${HARNESS_PROTOBUF_INCLUDE:-/usr/include}/google/protobuf/message.h" ]] || missing+=(libprotobuf-dev)
[[ -f "${HARNESS_WORDNET_DIR:-/usr/share/wordnet}/index.noun" ]] || missing+=(wordnet-base)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-filter-deps: protoc $(protoc --version | cut -d' ' -f2), protobuf headers and WordNet present"
  exit 0
fi

fail() {
  echo "install-filter-deps: $*" >&2
  echo "install-filter-deps: needed: ${missing[*]} (Debian/Ubuntu names). gcld3 (laion2b) builds only with" >&2
  echo "  protoc and the protobuf headers; text_based reads WordNet 3.0 from /usr/share/wordnet or" >&2
  echo "  \$HARNESS_WORDNET_DIR. Install them (e.g. apt-get install ${missing[*]}), then rerun make setup." >&2
  exit 1
}

if [[ $(id -u) -eq 0 ]]; then SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
else fail "need root or password-less sudo to install system packages"; fi

command -v apt-get >/dev/null 2>&1 || fail "no apt-get on this machine"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || fail "apt-get install ${missing[*]} failed"
echo "install-filter-deps: installed ${missing[*]}"
