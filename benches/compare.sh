#!/usr/bin/env bash
# The side-by-side benchmark: installs the peers from Debian's packages when they are missing
# (nginx with libnginx-mod-nchan, rabbitmq-server), then runs `cargo bench --bench compare`
# (benches/compare/main.rs lists its settings). The bench starts each server itself, on
# 127.0.0.1 only with a directory of its own, and stops it by its pid.
#
# The packages would start their services at install time, listening on every address: a
# policy-rc.d that refuses service starts is put in place for the install (unless one exists),
# and on a systemd machine the units are left disabled.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -e /usr/share/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages; their services are not started)"
    policy_created=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# benches/compare.sh: no service starts while it installs peers\nexit 101\n' \
            | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    cleanup() { if [ -n "$policy_created" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now nginx rabbitmq-server epmd.socket epmd.service 2>/dev/null || true
    fi
fi

# Every server and client socket of the connection scenarios: near the open-file cap.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec cargo bench --bench compare "$@"
