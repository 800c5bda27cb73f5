#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for the tests of the cluster path (tests/cluster) and for
# trying the slurm profile on a workstation. Needs root (Debian packages, daemons as root/munge).
#
#   bash scripts/slurm_local.sh start    # install slurmctld/slurmd/munge if missing, start them
#   bash scripts/slurm_local.sh env      # the line to eval for sbatch/squeue: export SLURM_CONF=...
#   bash scripts/slurm_local.sh status
#   bash scripts/slurm_local.sh stop     # stops only the daemons that `start` started
#
# State (config, logs, spool, PIDs) lives in $QB_SLURM_DIR (default /tmp/qbench-slurm).
# /etc/slurm/slurm.conf becomes a link to its slurm.conf while the cluster runs (`stop` removes
# it): srun inside a job finds its cluster only there, because the snakemake jobstep executor
# clears SLURM_* variables (SLURM_CONF included). An existing /etc/slurm/slurm.conf of another
# cluster is never replaced. Settings that a one-node cluster without systemd and slurmdbd needs:
#   - no cgroup.conf, ProctrackType=proctrack/linuxproc, TaskPlugin=task/none (22.05 rejects
#     CgroupPlugin=disabled; containers have no writable cgroup tree);
#   - AccountingStorageType=accounting_storage/none, so no account/QoS checks, and MinJobAge=600:
#     finished jobs stay visible to squeue for 10 minutes, which the snakemake slurm plugin's
#     `status_command: squeue` needs (sacct needs slurmdbd + a database).
# The node offers the machine's cores (QB_SLURM_CPUS overrides) and 90% of its memory.

set -euo pipefail

D=${QB_SLURM_DIR:-/tmp/qbench-slurm}
NODE=${QB_SLURM_NODE:-qbench-node}
PARTITION=${QB_SLURM_PARTITION:-debug}
CTLD_PORT=${QB_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${QB_SLURM_SLURMD_PORT:-6818}
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "[slurm_local] $*" >&2; }
die() { echo "[slurm_local] error: $*" >&2; exit 1; }

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them as root: apt-get install ${PACKAGES[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >"$D/apt.log" 2>&1 || {
    apt-get update >>"$D/apt.log" 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>"$D/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed, see $D/apt.log"
  }
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_works; then
    log "munged already running (not ours, left alone)"
    return 0
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force --keyfile /etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  mkdir -p "$D/munge" && chown munge:munge "$D/munge"
  rm -f "$D/munge/munged.pid"
  # munged refuses to run as root; it daemonizes and writes its PID file
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --pid-file="$D/munge/munged.pid" \
    --log-file="$D/munge/munged.log" || die "munged did not start, see $D/munge/munged.log"
  wait_for "munged" munge_works 20
  cp "$D/munge/munged.pid" "$D/pids/munged"
}

write_conf() {
  local cpus mem host
  cpus=${QB_SLURM_CPUS:-$(nproc)}
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  host=$(hostname -s)
  mkdir -p "$D/state" "$D/spool" "$D/log"
  cat >"$D/slurm.conf" <<EOF
# written by scripts/slurm_local.sh
ClusterName=qbench
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MpiDefault=none
NodeName=${NODE} NodeHostname=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
}

ETC_CONF=/etc/slurm/slurm.conf

link_etc_conf() {
  if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$D/slurm.conf" ]; then return 0; fi
  if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
    die "$ETC_CONF exists (another cluster's configuration); stop that cluster or remove the file"
  fi
  mkdir -p /etc/slurm
  ln -s "$D/slurm.conf" "$ETC_CONF"
  touch "$D/pids/etc_conf_link"
}

# wait_for <what> <command> <seconds>
wait_for() {
  local what=$1 check=$2 t=$3
  for _ in $(seq $((t * 4))); do
    $check && return 0
    sleep 0.25
  done
  die "$what did not come up within ${t}s, see $D/log/"
}

ctld_up() { SLURM_CONF=$D/slurm.conf scontrol ping 2>/dev/null | grep -q UP; }
node_idle() { SLURM_CONF=$D/slurm.conf sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  [ "$(id -u)" = 0 ] || die "start needs root (daemons run as root and munge)"
  mkdir -p "$D/pids" "$D/log"
  if alive "$D/pids/slurmctld" && alive "$D/pids/slurmd" && ctld_up; then
    log "already running ($D)"
    return 0
  fi
  install_packages
  write_conf
  link_etc_conf
  start_munge
  export SLURM_CONF=$D/slurm.conf
  if ! alive "$D/pids/slurmctld"; then
    # -c: a fresh cluster, no jobs of an earlier run
    slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start, see $D/log/slurmctld.log"
    wait_for slurmctld ctld_up 30
    cp "$D/slurmctld.pid" "$D/pids/slurmctld"
  fi
  if ! alive "$D/pids/slurmd"; then
    slurmd -N "$NODE" -f "$SLURM_CONF" || die "slurmd did not start, see $D/log/slurmd.log"
    wait_for "slurmd ($NODE)" node_idle 30
    cp "$D/slurmd.pid" "$D/pids/slurmd"
  fi
  log "up: node $NODE, partition $PARTITION; export SLURM_CONF=$SLURM_CONF"
}

stop() {
  local name pid
  # reverse order of start; only PIDs that start recorded
  for name in slurmd slurmctld munged; do
    [ -f "$D/pids/$name" ] || continue
    pid=$(cat "$D/pids/$name")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      log "stopped $name ($pid)"
    fi
    rm -f "$D/pids/$name"
  done
  if [ -f "$D/pids/etc_conf_link" ] && [ "$(readlink "$ETC_CONF")" = "$D/slurm.conf" ]; then
    rm -f "$ETC_CONF" "$D/pids/etc_conf_link"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$D/slurm.conf" ;;
  status)
    for name in munged slurmctld slurmd; do
      if alive "$D/pids/$name"; then echo "$name: running ($(cat "$D/pids/$name"))"; else echo "$name: not started here"; fi
    done
    SLURM_CONF=$D/slurm.conf sinfo 2>/dev/null || true ;;
  *) echo "usage: bash scripts/slurm_local.sh start|stop|status|env" >&2; exit 2 ;;
esac
