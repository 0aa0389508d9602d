#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on this machine for CI (Debian/Ubuntu, as root).
#
#   bash .ci/slurm-up.sh        # install (if needed), configure, start, wait for an idle node
#
# Idempotent: a second call rewrites the same configuration, restarts the daemons only when the
# configuration changed or a daemon is not running, and waits for the node again.
# The node declares one stand-in GPU (gres.conf `File=/dev/null`) so that GPU requests
# (`sbatch --gpus=1`, the training rule's `gpu: 1`) are accepted; jobs get CUDA_VISIBLE_DEVICES=0
# and the training code falls back to the CPU. No accounting database: use
# `slurm-status-command: squeue` (MinJobAge=300 keeps finished jobs visible to squeue).
#
# The node is declared with at least SLURM_UP_CPUS CPUs (default 16) and SLURM_UP_MEM_MB MB
# (default 128000), whatever the machine has (`SlurmdParameters=config_overrides`; nothing is
# enforced: TaskPlugin=task/none), so that the workflow profile's real requests (8 CPUs per GPU,
# 32 GB, doubled on the retry) are accepted as on a GPU node. Jobs share the real cores.
#
# Environment: SLURM_UP_TIMEOUT (seconds to wait for the idle node, default 60),
# SLURM_UP_PARTITION (partition name, default "debug"), SLURM_UP_CPUS, SLURM_UP_MEM_MB.
set -euo pipefail

log() { echo "slurm-up: $*" >&2; }
die() { echo "slurm-up: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = "0" ] || die "must run as root (installs packages and starts daemons)"

TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
PARTITION="${SLURM_UP_PARTITION:-debug}"
CONF_DIR=/etc/slurm
PACKAGES=(slurmctld slurmd slurm-client munge)

# --- install ---------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
    || die "apt-get install ${PACKAGES[*]} failed"
fi
for b in munged slurmctld slurmd sbatch sinfo squeue scontrol; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found after install"
done
export PATH="/usr/sbin:$PATH"

# --- munge -----------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
chown -R munge:munge /etc/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
for d in /run/munge /var/lib/munge /var/log/munge; do
  mkdir -p "$d"
  chown munge:munge "$d"
done
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- munged --force || die "munged failed to start (see /var/log/munge/munged.log)"
  for _ in $(seq 1 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
  done
  munge -n | unmunge >/dev/null || die "munge credentials do not round-trip"
fi

# --- configuration ---------------------------------------------------------------------------
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
[ "$CPUS" -ge "${SLURM_UP_CPUS:-16}" ] || CPUS="${SLURM_UP_CPUS:-16}"
[ "$MEM_MB" -ge "${SLURM_UP_MEM_MB:-128000}" ] || MEM_MB="${SLURM_UP_MEM_MB:-128000}"
SLURM_USER=slurm
getent passwd slurm >/dev/null || SLURM_USER=root
for d in /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm; do
  mkdir -p "$d"
  chown "$SLURM_USER": "$d"
done
chown root: /var/lib/slurm/slurmd  # slurmd runs as root

mkdir -p "$CONF_DIR"
new_conf="$(mktemp)"
new_gres="$(mktemp)"
trap 'rm -f "$new_conf" "$new_gres"' EXIT
cat > "$new_conf" <<EOF
# Written by .ci/slurm-up.sh: a one-node CI cluster with a stand-in GPU. Do not use in production.
ClusterName=annodistill-ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=${SLURM_USER}
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# the node's CPUs and memory below are a stand-in shape, not the hardware's
SlurmdParameters=config_overrides
# finished jobs stay visible to squeue/scontrol for 5 minutes (the squeue status query needs it)
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
Waittime=0
GresTypes=gpu
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} Gres=gpu:1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$new_gres" <<EOF
# Stand-in GPU: lets the cluster accept --gpus=1 on a CPU-only machine (without File= the node drains).
NodeName=${HOST} Name=gpu File=/dev/null
EOF

changed=0
if ! cmp -s "$new_conf" "$CONF_DIR/slurm.conf"; then cp "$new_conf" "$CONF_DIR/slurm.conf"; changed=1; fi
if ! cmp -s "$new_gres" "$CONF_DIR/gres.conf"; then cp "$new_gres" "$CONF_DIR/gres.conf"; changed=1; fi
chmod 0644 "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"

# --- daemons ---------------------------------------------------------------------------------
running() {  # pidfile
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
stop() {  # pidfile
  if running "$1"; then
    kill "$(cat "$1")"
    for _ in $(seq 1 20); do running "$1" || break; sleep 0.5; done
  fi
  rm -f "$1"
}
if [ "$changed" = 1 ]; then
  log "configuration written to $CONF_DIR/slurm.conf and gres.conf"
  stop /run/slurmd.pid
  stop /run/slurmctld.pid
fi
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld || die "slurmctld failed to start; see /var/log/slurm/slurmctld.log:
$(tail -n 20 /var/log/slurm/slurmctld.log 2>/dev/null)"
fi
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd || die "slurmd failed to start; see /var/log/slurm/slurmd.log:
$(tail -n 20 /var/log/slurm/slurmd.log 2>/dev/null)"
fi

# --- wait for an idle node -------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
resumed=0
state=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle|mixed|allocated) break ;;
    drain*|down*|fail*)
      if [ "$resumed" = 0 ]; then
        log "node is $state; resuming it once"
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
        resumed=1
      fi ;;
  esac
  sleep 1
done
case "$state" in
  idle|mixed|allocated) ;;
  *) die "node $HOST not ready after ${TIMEOUT}s (state '${state:-unknown}'):
$(sinfo -R 2>&1)
--- slurmctld.log
$(tail -n 15 /var/log/slurm/slurmctld.log 2>/dev/null)
--- slurmd.log
$(tail -n 15 /var/log/slurm/slurmd.log 2>/dev/null)" ;;
esac
log "node $HOST is $state (partition $PARTITION; declared $CPUS CPUs, ${MEM_MB} MB, 1 stand-in GPU; real: $(nproc) CPUs)"
sinfo
