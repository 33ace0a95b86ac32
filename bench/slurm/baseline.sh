#!/usr/bin/env bash
# baseline.sh measures real Slurm 22.05 on this host with the workload of
# `loom bench e2e`, so Loom's figures can stand beside Slurm's from the same
# machine (issue #17).
#
# It runs as root on Debian 12: installs slurmctld, slurmd, slurm-client and
# munge if missing; starts a private munged (own key, own socket) and one
# slurmctld plus N slurmd on this one host (Slurm's multiple-slurmd mode, one
# port per node), all under a temporary directory and on free ports; waits
# until sinfo shows every node idle; runs the workload R times; prints the
# medians as key=value lines on stdout (progress goes to stderr); and stops
# every daemon it started when it exits.
#
# Usage: bench/slurm/baseline.sh [--nodes N] [--jobs J] [--clients C]
#          [--runs R] [--array A] [--held H] [--sched-params LIST] [--keep]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

nodes=64        # slurmd daemons, one NodeName each
jobs=300        # jobs in each of the job and gang phases
clients=1       # sbatch processes running at once in those phases, as
                # loom bench e2e --clients: each submits its share in turn
runs=1          # repetitions; the medians are printed
array=1000      # tasks in the drained job array
held=10000      # tasks in the held array for the 10k listing figures
# SchedulerParameters: the set Slurm's high-throughput guide gives as a
# starting point for hundreds of jobs per second; the bf_* entries of that
# set are left out because sched/builtin (also the guide's advice for short
# jobs) does no backfill.
sched_params="batch_sched_delay=20,partition_job_depth=500,sched_max_job_start=200,sched_min_interval=2000000"
keep=0

usage() {
  sed -n '/^# Usage:/,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

need_int() { # name value
  [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "baseline.sh: $1 must be a positive integer, got \"$2\"" >&2; exit 2; }
}

while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=${2-}; need_int --nodes "$nodes"; shift 2 ;;
    --jobs) jobs=${2-}; need_int --jobs "$jobs"; shift 2 ;;
    --clients) clients=${2-}; need_int --clients "$clients"; shift 2 ;;
    --runs) runs=${2-}; need_int --runs "$runs"; shift 2 ;;
    --array) array=${2-}; need_int --array "$array"; shift 2 ;;
    --held) held=${2-}; need_int --held "$held"; shift 2 ;;
    --sched-params) sched_params=${2-}; [ $# -ge 2 ] || usage; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "baseline.sh: unknown option \"$1\"" >&2; usage ;;
  esac
done
[ "$nodes" -ge 4 ] || { echo "baseline.sh: --nodes must be at least 4 (the gang phase uses -N4), got $nodes" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "baseline.sh: must run as root (it starts slurmd and munged)" >&2; exit 2; }

log() { echo "baseline: $*" >&2; }

# --- packages -----------------------------------------------------------

install_packages() {
  local want=() p
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return
  log "installing ${want[*]}"
  apt-get update -qq
  # Packages must not start their daemons (slurmctld, slurmd and munged on
  # their default ports and socket would collide with others' here):
  # policy-rc.d refuses every service start during the install.
  local policy=/usr/sbin/policy-rc.d saved=""
  if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >&2 || rc=$?
  if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  [ $rc -eq 0 ] || { echo "baseline.sh: apt-get install ${want[*]} failed (exit $rc)" >&2; exit 1; }
}
install_packages

# --- teardown -------------------------------------------------------------

dir=""
pids=()   # every daemon this script started, stopped in reverse order

teardown() {
  local rc=$? i p
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  # Wait for each (they are our children); SIGKILL what is left after 15 s.
  for p in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$dir" ]; then
    if [ $keep = 1 ] || [ $rc -ne 0 ]; then log "logs and state kept in $dir"; else rm -rf "$dir"; fi
  fi
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir=$(mktemp -d /tmp/slurmbase.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir"/{state,spool,run,log,munge,out}

# --- ports ----------------------------------------------------------------

# free_block COUNT prints the first port of COUNT consecutive ports on which
# nothing listens or is connected, searching from a random start.
free_block() {
  local count=$1 used base p ok
  used=$(ss -Htan | awk '{n=split($4, a, ":"); print a[n]}' | sort -un)
  for _ in $(seq 200); do
    base=$((20000 + RANDOM % 30000))
    ok=1
    for ((p = base; p < base + count; p++)); do
      if grep -qx "$p" <<<"$used"; then ok=0; break; fi
    done
    [ $ok = 1 ] && { echo "$base"; return; }
  done
  echo "baseline.sh: no block of $count free ports found" >&2
  exit 1
}

ctld_ports=4   # the guide: two to ten slurmctld ports for bursts of requests
base=$(free_block $((ctld_ports + nodes)))
ctld_first=$base
ctld_last=$((base + ctld_ports - 1))
slurmd_first=$((base + ctld_ports))

# --- munged ---------------------------------------------------------------

# A private munged: its own key and socket under $dir, so a munged that
# others run on the default socket is not touched. The guide suggests ten
# threads for high throughput.
chown munge:munge "$dir/munge"
chmod 700 "$dir/munge"
setpriv --reuid=munge --regid=munge --init-groups \
  mungekey --create --keyfile="$dir/munge/munge.key" >&2
munge_socket=$dir/munge/munge.socket
setpriv --reuid=munge --regid=munge --init-groups \
  munged --foreground --num-threads=10 \
  --socket="$munge_socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" \
  --seed-file="$dir/munge/munged.seed" 2>"$dir/log/munged.stderr" &
pids+=($!)
# The socket's directory must be reachable by every Slurm daemon and client.
chmod 711 "$dir/munge"
munged_pid=$!
for _ in $(seq 300); do
  [ -S "$munge_socket" ] && break
  kill -0 "$munged_pid" 2>/dev/null || break
  sleep 0.1
done
munge --socket="$munge_socket" -n | unmunge --socket="$munge_socket" >/dev/null ||
  { echo "baseline.sh: private munged on $munge_socket does not answer (see $dir/log/munged.stderr)" >&2; exit 1; }

# --- slurm.conf -----------------------------------------------------------

host=$(hostname -s)
export SLURM_CONF=$dir/slurm.conf
sed -e "s|@HOST@|$host|g" \
    -e "s|@NODES@|$nodes|g" \
    -e "s|@CTLD_PORTS@|$ctld_first-$ctld_last|g" \
    -e "s|@MUNGE_SOCKET@|$munge_socket|g" \
    -e "s|@DIR@|$dir|g" \
    -e "s|@SCHED_PARAMS@|$sched_params|g" \
    -e "s|@MIN_JOB_AGE@|2|g" \
    -e "s|@MAX_JOB_COUNT@|$((held * 2 + 20000))|g" \
    -e "s|@MAX_ARRAY_SIZE@|$(( (held > array ? held : array) + 1 ))|g" \
    -e "s|@MESSAGE_TIMEOUT@|30|g" \
    "$here/slurm.conf.in" >"$SLURM_CONF"
# An empty SchedulerParameters= line stops slurmctld: leave it out instead,
# so that --sched-params "" measures Slurm's defaults.
[ -n "$sched_params" ] || sed -i 's/^SchedulerParameters=$/# SchedulerParameters: defaults/' "$SLURM_CONF"
{
  echo
  echo "# $nodes nodes on this one host: each slurmd has its own port."
  for ((i = 1; i <= nodes; i++)); do
    echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((slurmd_first + i - 1)) CPUs=8 State=UNKNOWN"
  done
  echo "PartitionName=bench Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} >>"$SLURM_CONF"
for ((i = 1; i <= nodes; i++)); do mkdir -p "$dir/spool/n$i"; done

# --- daemons --------------------------------------------------------------

log "slurmctld on ports $ctld_first-$ctld_last, $nodes slurmd on $slurmd_first-$((slurmd_first + nodes - 1)), state in $dir"
slurmctld -D -i -f "$SLURM_CONF" 2>>"$dir/log/slurmctld.stderr" &
pids+=($!)
ctld_pid=$!
for ((i = 1; i <= nodes; i++)); do
  slurmd -D -N "n$i" -f "$SLURM_CONF" 2>>"$dir/log/slurmd.n$i.stderr" &
  pids+=($!)
done

# wait_for SECONDS WHAT CMD... runs CMD every 0.2 s until it succeeds.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    if ! kill -0 "$ctld_pid" 2>/dev/null; then
      echo "baseline.sh: slurmctld exited while waiting for $what (see $dir/log/slurmctld.stderr)" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "baseline.sh: timed out after ${secs}s waiting for $what (logs in $dir/log)" >&2
      exit 1
    fi
    sleep 0.2
  done
}

all_idle() {
  local n
  n=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l) || return 1
  [ "$n" -eq "$nodes" ]
}
wait_for 180 "all $nodes nodes idle in sinfo" all_idle
log "all $nodes nodes idle"

# queue_empty succeeds when squeue answers and lists no job.
queue_empty() {
  local out
  out=$(squeue -h -o %i 2>/dev/null) || return 1
  [ -z "$out" ]
}

# --- figures --------------------------------------------------------------

# pct P FILE prints the P-th percentile (nearest rank) of the numbers in FILE.
pct() {
  sort -g "$2" | awk -v p="$1" '{v[NR] = $1} END {
    if (NR == 0) { print "NaN"; exit }
    r = int((p * NR + 99) / 100); if (r < 1) r = 1; printf "%.1f\n", v[r] }'
}

# ms FROM TO prints TO-FROM in milliseconds, both EPOCHREALTIME values.
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'; }

results=$dir/results   # lines "key value", one per run and key
: >"$results"
record() { echo "$1 $2" >>"$results"; log "run $run: $1=$2"; }

# Each job writes the time it started (date +%s.%N, the first thing its
# batch script does) to out/ID, so submit-to-start has sub-millisecond
# resolution; Slurm's own Submit/Start times have only whole seconds.
# $SLURM_JOB_ID is expanded by the job's shell, not here.
# shellcheck disable=SC2016
stamp='date +%s.%N >'"$dir"'/out/$SLURM_JOB_ID'

# submit_share W SUB ACKS ARGS... is client W of $clients: it submits jobs
# W, W+clients, ... one sbatch process after the other, appending each
# submit's wall time to SUB and "ID ACK_TIME" to ACKS.
submit_share() {
  local w=$1 sub=$2 acks=$3 t0 t1 id i
  shift 3
  for ((i = w; i < jobs; i += clients)); do
    t0=$EPOCHREALTIME
    id=$(sbatch --parsable -o /dev/null "$@" --wrap "$stamp")
    t1=$EPOCHREALTIME
    ms "$t0" "$t1" >>"$sub"
    echo "${id%%;*} $t1" >>"$acks"
  done
}

# serial_phase PREFIX ARGS... submits $jobs jobs from $clients sbatch
# processes running at once (one after the other in each), waits for the
# queue to drain and records submit latency, submit-to-start latency and
# drained jobs per second.
serial_phase() {
  local prefix=$1 start end w
  shift
  local sub=$dir/$prefix.submit lat=$dir/$prefix.start acks=$dir/$prefix.acks
  : >"$sub"; : >"$lat"; : >"$acks"
  rm -f "$dir"/out/* "$sub".* "$acks".*
  local clients_pids=()
  start=$EPOCHREALTIME
  for ((w = 0; w < clients; w++)); do
    submit_share "$w" "$sub.$w" "$acks.$w" "$@" &
    clients_pids+=($!)
  done
  # A client whose sbatch failed exits non-zero, and set -e stops here.
  for w in "${clients_pids[@]}"; do
    wait "$w"
  done
  cat "$sub".* >"$sub"
  cat "$acks".* >"$acks"
  wait_for 600 "the $prefix jobs to drain" queue_empty
  end=$EPOCHREALTIME
  # Start latency: the job's own timestamp minus the moment sbatch returned
  # (the acknowledgement), a lower bound that favours Slurm slightly.
  while read -r id t1; do
    [ -s "$dir/out/$id" ] || { echo "baseline.sh: job $id left no start stamp" >&2; exit 1; }
    ms "$t1" "$(cat "$dir/out/$id")" >>"$lat"
  done <"$acks"
  if [ "$prefix" = serial ]; then
    record slurm_submit_p50_ms "$(pct 50 "$sub")"
    record slurm_submit_p99_ms "$(pct 99 "$sub")"
    record slurm_start_p50_ms "$(pct 50 "$lat")"
    record slurm_start_p99_ms "$(pct 99 "$lat")"
    record slurm_jobs_per_s "$(awk -v n="$jobs" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", n / (b - a) }')"
  else
    log "run $run: gang4 submit p50 $(pct 50 "$sub") ms, start p50 $(pct 50 "$lat") ms p99 $(pct 99 "$lat") ms"
    record slurm_gang4_jobs_per_s "$(awk -v n="$jobs" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", n / (b - a) }')"
  fi
}

array_phase() {
  local start end
  rm -f "$dir"/out/*
  start=$EPOCHREALTIME
  sbatch --parsable -o /dev/null --array="0-$((array - 1))" --wrap "$stamp" >/dev/null
  wait_for 600 "the $array-task array to drain" queue_empty
  end=$EPOCHREALTIME
  local got
  got=$(find "$dir/out" -type f | wc -l)
  [ "$got" -eq "$array" ] || { echo "baseline.sh: $got of $array array tasks left a start stamp" >&2; exit 1; }
  record slurm_array_jobs_per_s "$(awk -v n="$array" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", n / (b - a) }')"
}

# median_wall FILE CMD... runs CMD 5 times (output discarded) and prints the
# median wall time in milliseconds.
median_wall() {
  local out=$1 t0 t1
  shift
  : >"$out"
  for _ in 1 2 3 4 5; do
    t0=$EPOCHREALTIME
    "$@" >/dev/null
    t1=$EPOCHREALTIME
    ms "$t0" "$t1" >>"$out"
  done
  pct 50 "$out"
}

held_phase() {
  local arr one n
  arr=$(sbatch --parsable --hold -o /dev/null --array="0-$((held - 1))" --wrap true)
  arr=${arr%%;*}
  # squeue -r lists each pending array task on its own line, as a queue of
  # $held separate pending jobs would be listed.
  n=$(squeue -h -r -t PD -o %i | wc -l)
  [ "$n" -ge "$held" ] || { echo "baseline.sh: squeue -r shows $n pending tasks, want $held" >&2; exit 1; }
  record slurm_squeue_10k_ms "$(median_wall "$dir/squeue10k" squeue -r)"
  record slurm_sbatch_10k_ms "$(median_wall "$dir/sbatch10k" sbatch --hold -o /dev/null --wrap true)"
  # sacct with no slurmdbd reads the job-completion text file (--completion);
  # that file holds only finished jobs, so it is timed for one job while the
  # $held tasks are pending and the file holds every job finished so far.
  one=$(awk 'NR == 1 { print $1 }' "$dir/serial.acks")
  log "run $run: the job-completion file holds $(wc -l <"$dir/jobcomp.txt") records"
  record slurm_sacct_10k_ms "$(median_wall "$dir/sacct10k" sacct --completion -j "$one")"
  scancel "$arr"
  scancel --state=PENDING --user=root
  wait_for 600 "the held jobs to leave the queue" queue_empty
}

# The host is shared: the load average says how much else ran meanwhile.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

for ((run = 1; run <= runs; run++)); do
  log "run $run of $runs: load average $(loadavg); $jobs jobs from $clients clients"
  serial_phase serial
  log "run $run: $jobs 4-node gangs"
  serial_phase gang4 -N4
  log "run $run: $array-task array"
  array_phase
  log "run $run: $held held tasks"
  held_phase
  log "run $run: done, load average $(loadavg)"
done

log "machine: $(nproc) CPUs, kernel $(uname -r), $(slurmctld -V), $nodes slurmd, clients=$clients, runs=$runs"
for key in slurm_submit_p50_ms slurm_submit_p99_ms slurm_start_p50_ms slurm_start_p99_ms \
  slurm_jobs_per_s slurm_gang4_jobs_per_s slurm_array_jobs_per_s \
  slurm_sbatch_10k_ms slurm_squeue_10k_ms slurm_sacct_10k_ms; do
  awk -v k="$key" '$1 == k { print $2 }' "$results" >"$dir/med"
  echo "$key=$(pct 50 "$dir/med")"
done
