#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests (tests/test_slurm.py) and by hand.
#
#   .ci/slurm.sh start    # install slurm + munge if missing (root + apt), write the config, start
#                         # munged, slurmctld and slurmd, wait until `sinfo` shows the node idle
#   .ci/slurm.sh status   # the daemons, sinfo and squeue
#   .ci/slurm.sh stop     # stop the daemons this script started (their pid files)
#
# The node is this machine with its real cores and memory (`slurmd -C`); one partition `ci`
# (default, 30 min time limit). Jobs run as the submitting user; no accounting database (no sacct:
# twoclocks reads job states from squeue and submitit's result files). Process tracking by
# proctrack/linuxproc and no task plugin, so it works in containers without cgroups.
# Environment: SLURM_CI_ROOT (default /var/spool/twoclocks-slurm) holds logs and state,
# SLURM_CI_CONF (default /etc/slurm/slurm.conf) the config written.
# Exit codes: 0 ok; 3 SLURM cannot be started here (not root, no apt, install failed); 1 other errors.
set -uo pipefail

ROOT=${SLURM_CI_ROOT:-/var/spool/twoclocks-slurm}
CONF=${SLURM_CI_CONF:-/etc/slurm/slurm.conf}
LOG=$ROOT/log
PARTITION=ci

say() { echo "slurm.sh: $*" >&2; }
cannot() { say "cannot start SLURM: $*"; exit 3; }

have_slurm() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
               && command -v munged >/dev/null; }

install() {
    have_slurm && return 0
    [ "$(id -u)" = 0 ] || cannot "slurmctld/slurmd/munged are not installed and this is not root (run as root, or apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null || cannot "slurm is not installed and there is no apt-get"
    say "installing slurmctld slurmd slurm-client munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurmd >/dev/null 2>&1; then
        apt-get update -q >"$LOG/apt.log" 2>&1 || cannot "apt-get update failed (see $LOG/apt.log)"
    fi
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >>"$LOG/apt.log" 2>&1 \
        || cannot "apt-get install failed (see $LOG/apt.log)"
    have_slurm || cannot "slurm is still missing after apt-get install"
}

alive() {  # alive PID: a process that is not a zombie (containers whose init does not reap them);
    local st=""    # /proc, not kill -0, which fails for another user's process
    [ -r "/proc/$1/stat" ] && read -r _ _ st _ <"/proc/$1/stat" 2>/dev/null && [ "$st" != Z ]
}

running() {  # running PIDFILE: the process of that pid file is alive
    [ -s "$1" ] && alive "$(cat "$1")"
}

write_conf() {
    local host node
    host=$(hostname -s)
    # e.g. NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    node=$(slurmd -C 2>/dev/null | head -1)
    case "$node" in NodeName=*) ;; *) say "slurmd -C failed"; exit 1 ;; esac
    node=${node/NodeName=$host/NodeName=$host NodeAddr=127.0.0.1}
    mkdir -p "$(dirname "$CONF")" "$ROOT/ctld" "$ROOT/d" "$LOG"
    cat >"$CONF" <<EOF
# written by twoclocks .ci/slurm.sh: a single-node test cluster
ClusterName=twoclocks-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/d
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=60
InactiveLimit=0
Waittime=0
SlurmdTimeout=120
MessageTimeout=20
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=30 DefaultTime=10 State=UP
EOF
}

start_munge() {
    local pid=/run/munge/munged.pid
    if command -v munge >/dev/null && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already answering
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; fi
    fi
    if id munge >/dev/null 2>&1; then
        chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
        chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key; chmod 0755 /run/munge
        runuser -u munge -- munged --pid-file="$pid" 9>&- || { say "munged did not start"; exit 1; }
    else
        munged --force --pid-file="$pid" 9>&- || { say "munged did not start"; exit 1; }
    fi
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "munged does not answer"; exit 1
}

node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -1; }

start() {
    [ "$(id -u)" = 0 ] || { have_slurm && running "$ROOT/slurmctld.pid" && running "$ROOT/slurmd.pid" && exit 0;
                            cannot "not root (the daemons need root); start it as root: sudo .ci/slurm.sh start"; }
    mkdir -p "$LOG"
    install
    if running "$ROOT/slurmctld.pid" && running "$ROOT/slurmd.pid"; then
        say "already running"
    else
        stop quiet
        write_conf
        start_munge
        # -i: ignore unreadable state files (jobs of an earlier start are kept); 9>&-: the daemons must
        # not inherit the lock (see lock)
        slurmctld -f "$CONF" -i 9>&- || { say "slurmctld did not start (see $LOG/slurmctld.log)"; exit 1; }
        slurmd -f "$CONF" -c 9>&- || { say "slurmd did not start (see $LOG/slurmd.log)"; exit 1; }
    fi
    local st
    for _ in $(seq 120); do
        st=$(node_state)
        case "$st" in
            idle|mix|alloc) say "up: $(sinfo -V) node $(hostname -s) $st, partition $PARTITION (config $CONF)"; return 0 ;;
            down*|drain*|fail*) scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 ;;
        esac
        sleep 0.5
    done
    say "the node did not become idle (state: ${st:-unknown}); logs in $LOG"
    tail -5 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 2>/dev/null
    exit 1
}

stop() {
    local quiet=${1:-} f pid
    for f in slurmd slurmctld; do
        if running "$ROOT/$f.pid"; then
            pid=$(cat "$ROOT/$f.pid")
            kill "$pid" 2>/dev/null
            for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid" 2>/dev/null
            [ -n "$quiet" ] || say "stopped $f ($pid)"
        fi
        rm -f "$ROOT/$f.pid"
    done
    if [ -z "$quiet" ] && running /run/munge/munged.pid; then
        pid=$(cat /run/munge/munged.pid)
        kill "$pid" 2>/dev/null && say "stopped munged ($pid)"
    fi
    return 0
}

status() {
    local f ok=0
    for f in slurmctld slurmd; do
        if running "$ROOT/$f.pid"; then echo "$f: running (pid $(cat "$ROOT/$f.pid"))"
        else echo "$f: not running"; ok=1; fi
    done
    if running /run/munge/munged.pid; then echo "munged: running (pid $(cat /run/munge/munged.pid))"
    else echo "munged: not running (or not started by this script)"; fi
    if [ $ok = 0 ]; then sinfo -V; sinfo; squeue; fi
    return $ok
}

lock() {  # one start / stop at a time (.ci/run starts it in the background, the test fixture waits)
    [ "$(id -u)" = 0 ] || return 0  # only root starts or stops it
    if command -v flock >/dev/null; then exec 9>>/run/twoclocks-slurm.lock; flock 9; fi
}

case "${1:-}" in
    start) lock; start ;;
    stop) lock; stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
