#!/usr/bin/env bash
# The registry tests' real components: Debian's docker-registry (CNCF distribution) and skopeo.
# Installed with apt when missing; where apt is unavailable (or we are not root) the tests that
# need them skip with a message naming this script, and everything else still runs.
set -uo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_registry_tools: no apt-get here; registry tests will skip (need: ${missing[*]})" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_registry_tools: not root; registry tests will skip (need: ${missing[*]})" >&2
        exit 0
    fi
fi
echo "install_registry_tools: installing ${missing[*]} with apt" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; then
    echo "install_registry_tools: apt-get install failed; registry tests will skip" >&2
fi
exit 0
