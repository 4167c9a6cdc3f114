#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests of the SLURM launcher.
#
#   bash tests/slurm/cluster.sh start    # install slurm-wlm and munge where missing, start the daemons
#   bash tests/slurm/cluster.sh status   # is a cluster answering? (exit 0 if so)
#   bash tests/slurm/cluster.sh stop     # stop exactly the processes `start` started, by their pids
#
# Needs root (it installs Debian packages and runs the daemons as root and munge). Everything it
# writes lives in $TEXTDUEL_SLURM_DIR (default /tmp/textduel-slurm): slurm.conf, state and spool
# folders, logs, and the pid of each daemon it started. Clients (sbatch, squeue, submitit) find the
# configuration through /etc/slurm/slurm.conf, which `start` writes only where none exists and
# `stop` removes only if `start` wrote it. Where a cluster already answers (`sinfo`), `start`
# starts nothing. Settings measured to work on a 2-core machine without systemd: proctrack/
# linuxproc, task/none, no accounting (sacct then fails; read job state from squeue/scontrol),
# select/cons_tres with CR_CPU, SlurmUser root, munged run as munge with its key at mode 400.
set -euo pipefail

DIR=${TEXTDUEL_SLURM_DIR:-/tmp/textduel-slurm}
ETC_CONF=/etc/slurm/slurm.conf

say() { echo "slurm test cluster: $*"; }

answering() { command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h -o %T 2>/dev/null | grep -q .; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    say "installing slurm-wlm and munge (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >"$DIR/apt.log" 2>&1 \
        || { tail -20 "$DIR/apt.log"; say "apt-get install failed; its log: $DIR/apt.log"; exit 1; }
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        say "munged already runs; using it"
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    # setpriv execs munged itself, so $! is munged's own pid (runuser would stay its parent)
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$DIR/munged.out" 2>&1 &
    echo $! >"$DIR/munged.pid"
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && return; sleep 0.1; done
    say "munged did not open its socket; its output: $DIR/munged.out"; exit 1
}

write_conf() {
    local node
    node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...: this machine as slurmd sees it
    mkdir -p "$DIR/ctld" "$DIR/spool"
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=textduel
SlurmctldHost=$(hostname -s)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if [ ! -e "$ETC_CONF" ]; then
        mkdir -p "$(dirname "$ETC_CONF")"
        cp "$DIR/slurm.conf" "$ETC_CONF"
        touch "$DIR/wrote_etc_conf"
    elif ! cmp -s "$DIR/slurm.conf" "$ETC_CONF"; then
        say "$ETC_CONF exists and is not this script's; clients need SLURM_CONF=$DIR/slurm.conf"
    fi
}

start() {
    mkdir -p "$DIR"
    if answering; then
        say "a cluster already answers (sinfo); starting nothing"
        return
    fi
    install_packages
    start_munge
    write_conf
    /usr/sbin/slurmctld -D -f "$DIR/slurm.conf" >"$DIR/slurmctld.out" 2>&1 &
    echo $! >"$DIR/slurmctld.pid"
    /usr/sbin/slurmd -D -f "$DIR/slurm.conf" >"$DIR/slurmd.out" 2>&1 &
    echo $! >"$DIR/slurmd.pid"
    for _ in $(seq 100); do
        if SLURM_CONF="$DIR/slurm.conf" sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            say "up: $(SLURM_CONF="$DIR/slurm.conf" sinfo -h -o '%N %c CPUs %m MB %T') (state, logs: $DIR)"
            return
        fi
        sleep 0.2
    done
    say "the node did not become idle within 20 s; logs: $DIR/slurmctld.log, $DIR/slurmd.log"
    tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" 2>/dev/null || true
    exit 1
}

stop() {
    local name pid
    if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
        # this cluster's jobs first: their slurmstepd processes would outlive slurmd
        SLURM_CONF="$DIR/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do pgrep -x slurmstepd >/dev/null || break; sleep 0.1; done
    fi
    for name in slurmd slurmctld munged; do
        [ -f "$DIR/$name.pid" ] || continue
        pid=$(cat "$DIR/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            say "stopped $name (pid $pid)"
        fi
        rm -f "$DIR/$name.pid"
    done
    if [ -f "$DIR/wrote_etc_conf" ]; then
        rm -f "$ETC_CONF" "$DIR/wrote_etc_conf"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if answering; then say "answering: $(sinfo -h -o '%N %T')"; else say "not answering"; exit 1; fi ;;
    *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
