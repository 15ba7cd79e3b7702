#!/usr/bin/env bash
# Installs the services the tests drive for real: etcd (Debian etcd-server) and
# Chromium (Debian chromium, for Playwright). Never downloads a browser build.
set -euo pipefail
missing=()
command -v etcd >/dev/null || missing+=(etcd-server etcd-client)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-system-deps: need ${missing[*]}; run as root or install them" >&2
        exit 2
    fi
    echo "install-system-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
