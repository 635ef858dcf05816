#!/usr/bin/env bash
# A SLURM cluster of two nodes on this one machine, for the test suite, CI and trying `--executor slurm`
# on a laptop. Debian/Ubuntu, as root, no systemd needed.
#
#   scripts/slurm-dev-cluster.sh start    install what is missing, write the configs, start the daemons,
#                                         wait until every node is idle; a no-op when it already runs
#   scripts/slurm-dev-cluster.sh stop     stop the daemons by their PID files (reverse start order)
#   scripts/slurm-dev-cluster.sh status   each daemon's pid, and the nodes as sinfo sees them; exit 1 if down
#   scripts/slurm-dev-cluster.sh stop-controller / start-controller
#                                         slurmctld alone, as a maintenance restart (tests of outages);
#                                         the nodes' slurmds go on running their jobs
#
# Daemons: munged -> mariadbd -> slurmdbd (sacct needs accounting: submitit reads job states from it)
#          -> slurmctld -> one slurmd per node.
# Nodes: Slurm's multiple-slurmd mode (Debian builds it: `scontrol show config` says MULTIPLE_SLURMD = Yes).
#   Every node is this machine (NodeHostname=$(hostname -s), NodeAddr=127.0.0.1), each served by its own
#   `slurmd -N NAME` on its own port (6818, then 6831, 6832, ...), with its own spool dir, pid and log file
#   (%n in slurm.conf). The first node is named $(hostname -s), as a single-node cluster's would be; it
#   alone has the fake GPUs and the lowest Weight, so a job of one node runs there while it has room.
#   The others are $(hostname -s)-2, -3, ...; all are in the default partition `debug`, so a job of
#   `--nodes=2` runs its tasks on two nodes (SLURMD_NODENAME differs), all of them processes of this
#   machine (`hostname` says the same in each).
# Environment:
#   SWEEP_SLURM_DIR  the directory this script owns: configs, spool, logs, pid files, the accounting
#                    database (default /var/lib/sweep-slurm)
#   SLURM_NODES      how many nodes `start` starts (default 2; 1 gives the single-node cluster of old;
#                    a running cluster of another count is restarted); the other commands take the count
#                    the running cluster was started with
#   SLURM_CPUS       CPUs each node offers (default: nproc; more is allowed: the nodes then oversubscribe
#                    the machine, as two nodes of nproc CPUs each already do); each node also offers 90%
#                    of the machine's memory
#   FAKE_GPUS        fake GPUs the first node offers as gres/gpu (default 1): char devices
#                    /dev/sweep-fakegpuK (the same device as /dev/null), so jobs asking --gpus-per-node
#                    are scheduled there
# /etc/slurm/{slurm,gres,slurmdbd}.conf are written (the client commands read them from there), but only
# where absent or written by this script before: a real cluster's config is never overwritten.
set -euo pipefail

DIR=${SWEEP_SLURM_DIR:-/var/lib/sweep-slurm}
CPUS=${SLURM_CPUS:-$(nproc)}
FAKE_GPUS=${FAKE_GPUS:-1}
HOST=$(hostname -s)
MARK="# written by sweep scripts/slurm-dev-cluster.sh"
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server mariadb-client)
RUN=$DIR/run
NODES_FILE=$RUN/nodes  # the node count `start` started: what the other commands look after
if [ -n "${SLURM_NODES:-}" ] || [ "${1:-}" = start ] || [ ! -s "$NODES_FILE" ]; then
  NODES=${SLURM_NODES:-2}
else
  NODES=$(cat "$NODES_FILE")
fi
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "slurm-dev-cluster: error: SLURM_NODES must be a number >= 1" >&2; exit 1; }
NODE_NAMES=("$HOST")  # the first node is this machine's name; node K (from 2) is $HOST-K
for (( k=2; k<=NODES; k++ )); do NODE_NAMES+=("$HOST-$k"); done
# start order; stop goes the other way. mariadbd's socket stays where the client library looks for it.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "slurm-dev-cluster: $*"; }
die() { echo "slurm-dev-cluster: error: $*" >&2; exit 1; }
pidfile() {  # mariadbd writes its own as user mysql: in its runtime dir; slurmd one per node (%n)
  case "$1" in
    mariadbd) echo /run/mysqld/mariadbd.pid ;;
    slurmd) echo "$RUN/slurmd-%n.pid" ;;
    *) echo "$RUN/$1.pid" ;;
  esac
}
# the pid files of a daemon: one per node for slurmd ("slurmd-NODE"), else one
pidfiles() {
  local node
  if [ "$1" = slurmd ]; then
    for node in "${NODE_NAMES[@]}"; do echo "$RUN/slurmd-$node.pid"; done
  else
    pidfile "$1"
  fi
}
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive() {  # every process of the daemon runs (every node's slurmd)
  local pf
  for pf in $(pidfiles "$1"); do pid_alive "$pf" || return 1; done
}
waitfor() {  # waitfor SECONDS WHAT CMD...: poll CMD every 0.1 s
  local tries=$(( $1 * 10 )) what=$2; shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what; logs in $DIR/log"
}
node_state() { sinfo -h -n "$1" -o %t 2>/dev/null | head -1; }
node_ready() { case "$(node_state "$1")" in idle|mix|alloc|comp) return 0;; *) return 1;; esac; }
nodes_ready() {
  local node
  for node in "${NODE_NAMES[@]}"; do node_ready "$node" || return 1; done
}
nodes_idle() {
  local node
  for node in "${NODE_NAMES[@]}"; do [ "$(node_state "$node")" = idle ] || return 1; done
}
nodes_known() {  # every node has registered with slurmctld: neither `unk` nor not responding (`*`)
  local node state
  for node in "${NODE_NAMES[@]}"; do
    state=$(node_state "$node")
    case "$state" in ""|unk*|*'*') return 1;; esac
  done
}
node_states() {  # "vm idle, vm-2 idle"
  local node out=()
  for node in "${NODE_NAMES[@]}"; do out+=("$node $(node_state "$node")"); done
  local IFS=,; echo "${out[*]}" | sed 's/,/, /g'
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run as root to install them"
  log "installing ${missing[*]}"
  apt-get update -qq
  # no recommends: every plugin used here is in slurm-wlm-basic-plugins (+ the mysql plugin of slurmdbd)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {  # write_conf PATH MODE < text: refuse to replace a config this script did not write
  local path=$1 mode=$2
  if [ -e "$path" ] && ! grep -qxF "$MARK" "$path"; then
    die "$path exists and was not written by this script; not touching a real cluster's config"
  fi
  { echo "$MARK"; cat; } > "$path.tmp"
  chmod "$mode" "$path.tmp"
  mv "$path.tmp" "$path"
}

node_port() {  # node_port K: the slurmd port of node K (from 1): 6818 (Slurm's default), 6831, 6832, ...
  if [ "$1" -eq 1 ]; then echo 6818; else echo $(( 6829 + $1 )); fi
}

write_configs() {  # write_configs FIRST_JOB_ID
  local mem gres_node="" gres_types="" first_job_id=$1 k node_lines=""
  mem=$(( $(free -m | awk '/^Mem:/{print $2}') * 90 / 100 ))
  mkdir -p /etc/slurm
  if [ "$FAKE_GPUS" -gt 0 ]; then
    gres_node="Gres=gpu:fake:$FAKE_GPUS"
    gres_types="GresTypes=gpu"
  fi
  for (( k=1; k<=NODES; k++ )); do
    node_lines+="NodeName=${NODE_NAMES[$((k - 1))]} NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$(node_port "$k")"
    node_lines+=" CPUs=$CPUS RealMemory=$mem Weight=$k"
    if [ "$k" -eq 1 ] && [ -n "$gres_node" ]; then node_lines+=" $gres_node"; fi
    node_lines+=" State=UNKNOWN"$'\n'
  done
  if [ "$FAKE_GPUS" -gt 0 ]; then
    for i in $(seq 0 $((FAKE_GPUS - 1))); do
      [ -e "/dev/sweep-fakegpu$i" ] || mknod "/dev/sweep-fakegpu$i" c 1 3  # == /dev/null
    done
    # a GPU without a device file is dropped by slurmd and the node drains (count 0 < configured)
    write_conf /etc/slurm/gres.conf 644 <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu Type=fake File=/dev/sweep-fakegpu[0-$((FAKE_GPUS - 1))]
CONF
  else
    write_conf /etc/slurm/gres.conf 644 </dev/null
  fi
  write_conf /etc/slurm/slurm.conf 644 <<CONF
ClusterName=sweepdev
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job is eligible again cred_expire+1 s after the requeue (default 120 s)
AuthInfo=cred_expire=5
# submitit jobs ignore SIGTERM: a cancelled job stays COMPLETING for KillWait s (default 30)
KillWait=5
StateSaveLocation=$DIR/spool/slurmctld
# one slurmd per node on this machine (multiple-slurmd mode): %n is the node's name
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# no cgroups: works in containers, on cgroup v1 and without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# association limits are enforced, as on a shared cluster: tests set \`sacctmgr modify user ... set
# MaxSubmitJobs=N\` (root's association in account sweep is made before slurmctld starts)
AccountingStorageEnforce=associations,limits
# the defaults (batch_sched_delay=3, sched_interval=60, bf_interval=30) start jobs seconds late
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job with no --mem takes the whole node's memory: one job at a time
DefMemPerCPU=1024
ReturnToService=2
# job ids go on from the accounting database's last one: the spool is wiped on start, and a reused id
# would let sacct answer for the old job of that id
FirstJobId=$first_job_id
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
$gres_types
# every node is this machine: its own slurmd on its own port. The first has the GPUs and the lowest
# Weight (a job of one node goes there while it has room); a job of --nodes=2 spans two.
$node_lines
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  # slurmdbd refuses a config that is not mode 600
  write_conf /etc/slurm/slurmdbd.conf 600 <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
}

start_munged() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || mungekey --create  # Debian's postinst normally made it
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  touch "$(pidfile munged)" && chown munge:munge "$(pidfile munged)"
  runuser -u munge -- /usr/sbin/munged --pid-file="$(pidfile munged)" --force
  waitfor 10 munged sh -c 'munge -n | unmunge'
}

start_mariadbd() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mkdir -p "$DIR/mysql" && chown mysql:mysql "$DIR/mysql"
    mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >>"$DIR/log/mariadb.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/mariadb.log"
  fi
  # it does not daemonize: its own session, so nothing that kills the caller's process group takes it along
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$DIR/mysql" --skip-networking --skip-log-bin \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    --pid-file="$(pidfile mariadbd)" --socket=/run/mysqld/mysqld.sock \
    >>"$DIR/log/mariadb.log" 2>&1 </dev/null &
  waitfor 60 mariadbd mariadb -uroot --socket=/run/mysqld/mysqld.sock -e 'select 1'
}

start_slurmdbd() {
  /usr/sbin/slurmdbd  # daemonizes; creates slurm_acct_db on its first start
  waitfor 60 slurmdbd bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
}

add_association() {  # an enforced cluster runs only the jobs of users with an association
  sacctmgr -i add cluster sweepdev >/dev/null 2>&1 || true
  sacctmgr -i add account sweep Cluster=sweepdev Description=dev Organization=dev >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=sweep DefaultAccount=sweep Cluster=sweepdev >/dev/null 2>&1 || true
  sacctmgr -n -P list assoc user=root cluster=sweepdev format=account | grep -qx sweep \
    || die "no association for root in account sweep; see $DIR/log/slurmdbd.log"
}

start_slurmctld() {
  local last
  last=$(mariadb -uroot -N -e 'select max(id_job) from slurm_acct_db.sweepdev_job_table' 2>/dev/null || true)
  write_configs $(( ${last//[^0-9]/} + 1 ))
  add_association
  /usr/sbin/slurmctld  # daemonizes; registers the cluster with slurmdbd
  waitfor 60 slurmctld sh -c 'scontrol ping | grep -q UP'
}

start_slurmd() {  # one per node, each told its node's name (all run on this machine)
  local node
  for node in "${NODE_NAMES[@]}"; do /usr/sbin/slurmd -N "$node"; done
  waitfor 60 "nodes ${NODE_NAMES[*]} idle" nodes_idle
  waitfor 30 sacct sacct -n -X
}

start() {
  if all_alive && nodes_ready && [ "$(cat "$NODES_FILE" 2>/dev/null)" = "$NODES" ]; then
    log "already running (nodes $(node_states)); nothing to do"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "start needs root (it installs packages and starts daemons)"
  stop quiet  # whatever half of it runs: start every daemon fresh
  install_packages
  # fresh scheduler state every start: a drained or INVAL node would otherwise survive restarts
  # (job ids restart at 1; keep submitit folders per cluster)
  rm -rf "$DIR/spool"
  mkdir -p "$DIR/spool/slurmctld" "$DIR/log" "$RUN"
  for node in "${NODE_NAMES[@]}"; do mkdir -p "$DIR/spool/slurmd-$node"; done
  write_configs 1  # slurmctld's start writes them again with the first free job id
  local t0 name node
  t0=$(date +%s.%N)
  for name in "${DAEMONS[@]}"; do "start_$name"; done
  echo "$NODES" > "$NODES_FILE"
  log "started in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f s", b-a}'); $DIR"
  sinfo -N -o '%N %P %t %c %m %G'
}

all_alive() {
  local name
  for name in "${DAEMONS[@]}"; do alive "$name" || return 1; done
}

stop_pid() {  # stop_pid NAME PIDFILE QUIET: SIGTERM, 15 s, SIGKILL; the pid file removed
  local name=$1 pf=$2 quiet=$3 pid
  if ! pid_alive "$pf"; then rm -f "$pf"; return 0; fi
  pid=$(cat "$pf")
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name (pid $pid) ignored SIGTERM for 15 s; SIGKILL"; kill -KILL "$pid"; fi
  rm -f "$pf"
  [ -n "$quiet" ] || log "stopped $name (pid $pid)"
}

stop() {
  local quiet=${1:-} i name pf
  for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
    name=${DAEMONS[$i]}
    if [ "$name" = slurmd ]; then
      # every node's, and any other this script started: another SLURM_NODES, or the one slurmd.pid
      # of a single-node cluster this script ran before
      for pf in "$RUN"/slurmd-*.pid "$RUN/slurmd.pid"; do
        [ -e "$pf" ] || continue
        name=$(basename "$pf" .pid)
        stop_pid "${name/-/ of node }" "$pf" "$quiet"
      done
    else
      stop_pid "$name" "$(pidfile "$name")" "$quiet"
    fi
  done
  rm -f "$NODES_FILE"
}

status() {
  local name pf down=0 node
  for name in "${DAEMONS[@]}"; do
    if [ "$name" = slurmd ]; then
      for node in "${NODE_NAMES[@]}"; do
        pf=$RUN/slurmd-$node.pid
        if pid_alive "$pf"; then echo "slurmd of node $node: running (pid $(cat "$pf"))"
        else echo "slurmd of node $node: stopped"; down=1; fi
      done
    elif alive "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"
    else echo "$name: stopped"; down=1; fi
  done
  if [ "$down" -eq 0 ]; then
    sinfo -N -o '%N %P %t %c %m %G'
    nodes_ready || down=1
  fi
  return "$down"
}

stop_controller() {  # slurmctld alone, as for maintenance: slurmd goes on running its jobs
  local pf pid
  pf=$(pidfile slurmctld)
  alive slurmctld || { log "slurmctld is not running"; return 0; }
  pid=$(cat "$pf")
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$pf"
  log "stopped slurmctld (pid $pid)"
}

start_controller() {  # slurmctld again, with its saved state (its jobs) and the same configuration
  alive slurmctld && { log "slurmctld is running"; return 0; }
  /usr/sbin/slurmctld
  waitfor 60 slurmctld sh -c 'scontrol ping | grep -q UP'
  # its nodes are `unk` until their slurmds (running on meanwhile) register again, a few seconds:
  # wait for that, so that the next `status` finds the cluster up; a node that stays unknown is said
  local _
  for _ in $(seq 300); do nodes_known && break; sleep 0.1; done
  nodes_known || log "nodes not registered yet: $(node_states)"
  log "started slurmctld"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  stop-controller) stop_controller ;;
  start-controller) start_controller ;;
  *) echo "usage: $0 start|stop|status|stop-controller|start-controller" >&2; exit 2 ;;
esac
