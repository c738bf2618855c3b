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

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -e /usr/share/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
# The lookout-cluster server runs three nodes on a redis-server of its own.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages; their services are not started)"
    bash .ci/apt-install-quiet "nginx rabbitmq-server epmd.socket epmd.service redis-server" "${missing[@]}"
fi

# Every server and client socket of the connection scenarios: near the open-file cap.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec cargo bench --bench compare "$@"
