#!/usr/bin/env bash
# Installs the node's runtime from Debian when it is missing: containerd, runc, the CNI plugins
# and iptables (kube-proxy's iptables mode; nf_tables backend). Debian's packages rather than a
# build from the Go module proxy: containerd's build needs cgo (btrfs, seccomp headers) and
# runc's needs libseccomp, while Debian ships all four ready and `apt-get install` works as
# root on developers' machines and in CI. Needs root; prints nothing when all are present.
set -euo pipefail

log() { printf '[node-packages %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
need=()
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables-restore >/dev/null 2>&1 || need+=(iptables)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  log "missing ${need[*]}: run as root (or install them: apt-get install -y ${need[*]})"
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { log "missing ${need[*]} and no apt-get: install them by hand"; exit 1; }
log "installing ${need[*]} from Debian ..."
export DEBIAN_FRONTEND=noninteractive
# Other jobs may hold the dpkg lock: wait for it rather than fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
log "installed ${need[*]}"
