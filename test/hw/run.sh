#!/usr/bin/env bash
# test/hw/run.sh: check Loom against the real hardware of one Linux host
# with NVIDIA GPUs and a driver. See docs/gpu.md ("Checking a GPU node").
#
# It builds nothing and installs nothing; it needs bash, awk, curl and
# nvidia-smi, and bin/loom built beforehand (make build). It:
#   1. compares Loom's NVML discovery (loom gpu topo --json, loom gpu topo)
#      with nvidia-smi: GPU count, UUIDs, models, memory, topo -m matrix;
#   2. starts a server and an agent with NVML on, and compares the agent's
#      DCGM-named metrics (utilisation, memory used, temperature) with
#      nvidia-smi --query-gpu, within tolerances;
#   3. runs a one-GPU job whose rank reports what it sees, and checks it
#      sees exactly the GPU it was allocated;
# then prints a short report and exits 1 on any difference (2 on misuse).
#
# Settings (environment):
#   LOOM               the loom binary (bin/loom)
#   NVIDIA_SMI         the nvidia-smi to compare with (nvidia-smi); the tests
#                      point it at test/hw/testdata/fake-nvidia-smi
#   HW_TOPO_ARGS       how loom gpu topo discovers (--nvml)
#   HW_AGENT_GPU_ARGS  how the agent discovers (--nvml)
#   HW_METRICS_URL     read the agent metrics here instead of starting
#                      daemons (http://HOST:PORT/metrics or file://PATH)
#   HW_SKIP_JOB        1: skip step 3 (reported as skipped)
#   HW_PORTS           four free ports for the server: RPC, Raft, gossip,
#                      metrics ("17170 17171 17172 17180")
#   HW_UTIL_TOL, HW_MEM_TOL, HW_TEMP_TOL  tolerances: utilisation points
#                      (10), MiB of memory used (256), degrees C (3)
#   HW_DEADLINE_S      stop, failing, after this many seconds (150), so
#                      that the check ends within 3 minutes
set -uo pipefail

LOOM=${LOOM:-bin/loom}
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}
HW_TOPO_ARGS=${HW_TOPO_ARGS:---nvml}
HW_AGENT_GPU_ARGS=${HW_AGENT_GPU_ARGS:---nvml}
HW_METRICS_URL=${HW_METRICS_URL:-}
HW_SKIP_JOB=${HW_SKIP_JOB:-}
HW_PORTS=${HW_PORTS:-17170 17171 17172 17180}
UTIL_TOL=${HW_UTIL_TOL:-10}
MEM_TOL=${HW_MEM_TOL:-256}
TEMP_TOL=${HW_TEMP_TOL:-3}
HW_DEADLINE_S=${HW_DEADLINE_S:-150}

for tool in awk curl "$LOOM" "$NVIDIA_SMI"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool not found (LOOM and NVIDIA_SMI name the binaries; make build makes bin/loom)" >&2
    exit 2
  fi
done
LOOM=$(command -v "$LOOM"); NVIDIA_SMI=$(command -v "$NVIDIA_SMI")
case $LOOM in /*) ;; *) LOOM=$PWD/$LOOM ;; esac
case $NVIDIA_SMI in /*) ;; *) NVIDIA_SMI=$PWD/$NVIDIA_SMI ;; esac

work=$(mktemp -d /tmp/loom-hw.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# The check ends within 3 minutes: HW_DEADLINE_S after its start a
# watchdog stops it, failing. A command running then finishes first (each
# nvidia-smi call has 30 s at most), which the default leaves room for.
# The report goes to fd 3, the script's output: the trap may run inside a
# command whose output is redirected to a file.
exec 3>&1
trap 'printf "  FAIL  not done within %s s (the check must end within 3 minutes)\n\nFAIL: stopped at the time limit\n" "$HW_DEADLINE_S" >&3; exit 1' TERM
(
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$HW_DEADLINE_S" &
  s=$!
  wait "$s" && kill -TERM $$ 2>/dev/null
) &
pids+=($!)

fails=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; fails=$((fails + 1)); }
skip() { printf '  skip  %s\n' "$*"; }
smi() { timeout 30 "$NVIDIA_SMI" "$@"; }

# csv_trim: nvidia-smi's "a, b, c" as "a,b,c", without CRs.
csv_trim() { tr -d '\r' | sed 's/ *, */,/g; s/^ *//; s/ *$//'; }

echo "== discovery: $LOOM gpu topo $HW_TOPO_ARGS against $NVIDIA_SMI"
disc_ok=1
if ! "$LOOM" gpu topo --json $HW_TOPO_ARGS >"$work/loom.json" 2>"$work/loom.err"; then
  bad "loom gpu topo --json: $(head -1 "$work/loom.err")"
  disc_ok=0
fi
if ! smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits >"$work/smi-inv.raw" 2>&1 ||
  ! smi -L >"$work/smi-L.txt" 2>&1; then
  bad "nvidia-smi: $(head -1 "$work/smi-inv.raw")"
  disc_ok=0
fi
if [ $disc_ok = 1 ]; then
  # index,uuid,name,memory_mib per GPU from the JSON (one field a line).
  awk '
    /"gpus": \[/ { in_gpus = 1; next }
    in_gpus && /^  \]/ { in_gpus = 0 }
    !in_gpus { next }
    { line = $0; sub(/^ +/, "", line); sub(/,$/, "", line) }
    line ~ /^"index": / { sub(/^"index": /, "", line); idx = line }
    line ~ /^"uuid": / { sub(/^"uuid": "/, "", line); sub(/"$/, "", line); uuid = line }
    line ~ /^"name": / { sub(/^"name": "/, "", line); sub(/"$/, "", line); name = line }
    line ~ /^"memory_mib": / { sub(/^"memory_mib": /, "", line); mem = line }
    line ~ /^}/ { print idx "," uuid "," name "," mem }
  ' "$work/loom.json" | sort -t, -k1,1n >"$work/loom-inv.csv"
  csv_trim <"$work/smi-inv.raw" | sort -t, -k1,1n >"$work/smi-inv.csv"
  n_loom=$(wc -l <"$work/loom-inv.csv")
  n_smi=$(grep -c '^GPU [0-9]*:' "$work/smi-L.txt")
  if [ "$n_loom" = "$n_smi" ] && [ "$n_smi" -gt 0 ]; then
    ok "GPU count: $n_loom"
  else
    bad "GPU count: loom $n_loom, nvidia-smi -L $n_smi"
  fi
  # The UUIDs nvidia-smi -L prints agree with its own --query-gpu.
  L_uuids=$(sed -n 's/.*(UUID: \(GPU-[^)]*\)).*/\1/p' "$work/smi-L.txt" | sort)
  q_uuids=$(cut -d, -f2 "$work/smi-inv.csv" | sort)
  [ "$L_uuids" = "$q_uuids" ] || bad "nvidia-smi -L and --query-gpu list different UUIDs"
  diffs=$(awk -F, -v mem_tol=0 '
    NR == FNR { u[$1] = $2; n[$1] = $3; m[$1] = $4; next }
    {
      if (!($1 in u)) { printf "GPU %s: nvidia-smi lists it, loom does not\n", $1; next }
      if (u[$1] != $2) printf "GPU %s UUID: loom %s, nvidia-smi %s\n", $1, u[$1], $2
      if (n[$1] != $3) printf "GPU %s model: loom \"%s\", nvidia-smi \"%s\"\n", $1, n[$1], $3
      if (m[$1] != $4) printf "GPU %s memory: loom %s MiB, nvidia-smi %s MiB\n", $1, m[$1], $4
      seen[$1] = 1
    }
    END { for (i in u) if (!(i in seen)) printf "GPU %s: loom lists it, nvidia-smi does not\n", i }
  ' "$work/loom-inv.csv" "$work/smi-inv.csv")
  if [ -z "$diffs" ]; then
    ok "UUIDs, models and memory of every GPU"
  else
    while IFS= read -r d; do bad "$d"; done <<<"$diffs"
  fi

  # The topo -m matrix, cell by cell, by row and column name; plus each
  # GPU's CPU and NUMA affinity and the NIC names of the legend.
  if "$LOOM" gpu topo $HW_TOPO_ARGS >"$work/loom-topo.txt" 2>&1 && smi topo -m >"$work/smi-topo.txt" 2>&1; then
    diffs=$(awk -F'\t' '
      function clean(s) { gsub(/\033\[[0-9;]*m/, "", s); gsub(/\r/, "", s); gsub(/^ +| +$/, "", s); return s }
      FNR == 1 { f++ }
      {
        for (i = 1; i <= NF; i++) $i = clean($i)
      }
      $1 == "" && NF > 2 && !hdr[f] { hdr[f] = 1; for (i = 2; i <= NF; i++) col[f, i] = $i; ncol[f] = NF; next }
      hdr[f] && $1 ~ /^(GPU|NIC)[0-9]+$/ {
        rows[$1] = 1
        for (i = 2; i <= ncol[f] && i <= NF; i++) {
          c = col[f, i]
          if (c ~ /^(GPU|NIC)[0-9]+$/ || c == "CPU Affinity" || c == "NUMA Affinity") { cell[f, $1, c] = $i; cols[c] = 1 }
        }
        next
      }
      /^ *NIC[0-9]+: / { split(clean($0), kv, ": "); nic[f, kv[1]] = kv[2]; nics[kv[1]] = 1 }
      END {
        if (!hdr[1] || !hdr[2]) { print "topo -m: no matrix header in " (hdr[1] ? "nvidia-smi" : "loom") "\x27s output"; exit }
        for (r in rows) for (c in cols) {
          a = ((1, r, c) in cell) ? cell[1, r, c] : "(none)"
          b = ((2, r, c) in cell) ? cell[2, r, c] : "(none)"
          if (a != b) printf "topo -m %s to %s: loom %s, nvidia-smi %s\n", r, c, a, b
        }
        for (k in nics) if (nic[1, k] != nic[2, k]) printf "topo -m %s: loom %s, nvidia-smi %s\n", k, nic[1, k], nic[2, k]
      }
    ' "$work/loom-topo.txt" "$work/smi-topo.txt" | sort)
    if [ -z "$diffs" ]; then
      ok "topo -m matrix, CPU and NUMA affinity, NIC names"
    else
      n=$(wc -l <<<"$diffs")
      head -20 <<<"$diffs" | while IFS= read -r d; do printf '  FAIL  %s\n' "$d"; done
      [ "$n" -gt 20 ] && echo "        ... and $((n - 20)) more cells"
      fails=$((fails + n))
    fi
  else
    bad "topo -m: $(tail -1 "$work/loom-topo.txt") / $(tail -1 "$work/smi-topo.txt")"
  fi
fi

# start_daemons starts a single server and one agent on this host, and sets
# agent_url (its metrics) and LOOM_ADDR.
daemons=0
start_daemons() {
  [ $daemons = 1 ] && return 0
  daemons=1
  read -r p_rpc p_raft p_gossip p_metrics <<<"$HW_PORTS"
  local root=()
  [ "$(id -u)" = 0 ] && root=(--allow-root)
  "$LOOM" server --name hw-server --data-dir "$work/server" --rpc-addr "127.0.0.1:$p_rpc" \
    --raft-addr "127.0.0.1:$p_raft" --gossip-addr "127.0.0.1:$p_gossip" --insecure-gossip --tls=false \
    --metrics-addr "127.0.0.1:$p_metrics" --auth local --local-socket "$work/loom.sock" >"$work/server.log" 2>&1 &
  pids+=($!)
  "$LOOM" agent --name "$(hostname)" --servers "127.0.0.1:$p_rpc" --data-dir "$work/agent" \
    --listen-addr 127.0.0.1:0 --gossip-addr 127.0.0.1:0 --gossip-join "127.0.0.1:$p_gossip" --insecure-gossip \
    --tls=false --metrics-addr 127.0.0.1:0 "${root[@]}" $HW_AGENT_GPU_ARGS >"$work/agent.log" 2>&1 &
  pids+=($!)
  export LOOM_ADDR="unix://$work/loom.sock"
  local target=""
  for _ in $(seq 1 150); do
    target=$(curl -fsS "http://127.0.0.1:$p_metrics/v1/sd/agents" 2>/dev/null | sed -n 's/.*"targets":\["\([^"]*\)".*/\1/p')
    [ -n "$target" ] && break
    sleep 0.2
  done
  if [ -z "$target" ]; then
    bad "the server and agent did not start: $(tail -2 "$work/server.log" "$work/agent.log" | tr '\n' ' ')"
    return 1
  fi
  agent_url="http://$target/metrics"
}

echo "== metrics: the agent's DCGM series against nvidia-smi --query-gpu"
agent_url=$HW_METRICS_URL
if [ -z "$agent_url" ]; then
  start_daemons || agent_url=""
fi
if [ -n "$agent_url" ]; then
  # Up to three rounds: utilisation moves between two reads.
  for round in 1 2 3; do
    if ! curl -fsS "$agent_url" >"$work/metrics.txt" 2>"$work/curl.err"; then
      diffs="metrics: $agent_url: $(head -1 "$work/curl.err")"
      break
    fi
    smi --query-gpu=uuid,utilization.gpu,memory.used,temperature.gpu --format=csv,noheader,nounits 2>&1 |
      csv_trim >"$work/smi-metrics.csv"
    diffs=$(awk -v ut="$UTIL_TOL" -v mt="$MEM_TOL" -v tt="$TEMP_TOL" '
      function abs(x) { return x < 0 ? -x : x }
      NR == FNR {
        if ($0 !~ /^(DCGM_FI_DEV_GPU_UTIL|DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_GPU_TEMP|loom_gpu_simulated)\{/) next
        name = $0; sub(/\{.*/, "", name)
        uuid = $0; sub(/.*UUID="/, "", uuid); sub(/".*/, "", uuid)
        v[name, uuid] = $NF; gpus[uuid] = 1
        next
      }
      {
        split($0, f, ","); u = f[1]; seen[u] = 1
        if (!(u in gpus)) { printf "metrics: no series for %s, which nvidia-smi lists\n", u; next }
        if (v["loom_gpu_simulated", u] != 0) printf "metrics: %s is simulated, not read from the device\n", u
        if (abs(v["DCGM_FI_DEV_GPU_UTIL", u] - f[2]) > ut) printf "utilisation of %s: loom %s%%, nvidia-smi %s%% (tolerance %s)\n", u, v["DCGM_FI_DEV_GPU_UTIL", u], f[2], ut
        if (abs(v["DCGM_FI_DEV_FB_USED", u] - f[3]) > mt) printf "memory used of %s: loom %s MiB, nvidia-smi %s MiB (tolerance %s)\n", u, v["DCGM_FI_DEV_FB_USED", u], f[3], mt
        if (abs(v["DCGM_FI_DEV_GPU_TEMP", u] - f[4]) > tt) printf "temperature of %s: loom %s C, nvidia-smi %s C (tolerance %s)\n", u, v["DCGM_FI_DEV_GPU_TEMP", u], f[4], tt
      }
      END {
        for (u in gpus) if (!(u in seen)) printf "metrics: series for %s, which nvidia-smi does not list\n", u
        if (length(seen) == 0) print "metrics: nvidia-smi --query-gpu printed nothing"
      }
    ' "$work/metrics.txt" "$work/smi-metrics.csv" | sort)
    [ -z "$diffs" ] && break
  done
  if [ -z "$diffs" ]; then
    ok "utilisation, memory used and temperature of every GPU"
  else
    while IFS= read -r d; do bad "$d"; done <<<"$diffs"
  fi
fi

echo "== job: one rank on one GPU"
if [ -n "$HW_SKIP_JOB" ]; then
  skip "HW_SKIP_JOB is set"
elif start_daemons && [ -n "${agent_url:-}" ]; then
  cat >"$work/rank.sh" <<EOF
#!/bin/sh
echo "cvd=\$CUDA_VISIBLE_DEVICES"
echo "nvd=\$NVIDIA_VISIBLE_DEVICES"
"$NVIDIA_SMI" -L | sed 's/^/L: /'
"$NVIDIA_SMI" --query-gpu=uuid --format=csv,noheader -i "\$CUDA_VISIBLE_DEVICES" 2>&1 | sed 's/^/i: /'
# Hold the GPU until the check has read the agent's metrics (at most 60 s).
for _ in \$(seq 1 300); do [ -e "$work/release" ] && break; sleep 0.2; done
echo done
EOF
  chmod 755 "$work/rank.sh"
  job=$("$LOOM" slurm sbatch --parsable --gpus-per-node=1 --time=2 --output="$work/job.out" "$work/rank.sh" 2>"$work/sbatch.err")
  job=${job%%;*}
  if [ -z "$job" ]; then
    bad "sbatch: $(head -1 "$work/sbatch.err")"
  else
    held=""
    for _ in $(seq 1 150); do
      held=$(curl -fsS "$agent_url" 2>/dev/null | awk -v j="$job" '/^DCGM_FI_DEV_GPU_UTIL\{/ && index($0, "job=\"" j "\"") { u = $0; sub(/.*UUID="/, "", u); sub(/".*/, "", u); print u }')
      [ -n "$held" ] && break
      sleep 0.2
    done
    touch "$work/release"
    state=""
    for _ in $(seq 1 300); do
      state=$("$LOOM" slurm sacct -j "$job" -X -n -P -o State 2>/dev/null | head -1)
      case $state in COMPLETED | FAILED | CANCELLED* | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
      sleep 0.2
    done
    cvd=$(sed -n 's/^cvd=//p' "$work/job.out" 2>/dev/null)
    nvd=$(sed -n 's/^nvd=//p' "$work/job.out" 2>/dev/null)
    [ "$state" = COMPLETED ] || bad "job $job ended $state: $(tail -3 "$work/job.out" 2>/dev/null | tr '\n' ' ')"
    if [ -z "$held" ]; then
      bad "job $job: the agent's metrics never showed a GPU held by it"
    elif [ "$(wc -w <<<"$held")" != 1 ]; then
      bad "job $job holds $(wc -w <<<"$held") GPUs in the agent's metrics, want 1"
    fi
    if [ -z "$cvd" ] || [ "${cvd#*,}" != "$cvd" ]; then
      bad "rank: CUDA_VISIBLE_DEVICES=\"$cvd\", want exactly one GPU"
    elif [ -n "$held" ] && [ "$cvd" != "$held" ]; then
      bad "rank: CUDA_VISIBLE_DEVICES=$cvd, but the agent says the job holds $held"
    elif [ "$nvd" != "$cvd" ]; then
      bad "rank: NVIDIA_VISIBLE_DEVICES=$nvd differs from CUDA_VISIBLE_DEVICES=$cvd"
    elif ! grep -q "^L: .*(UUID: $cvd)" "$work/job.out"; then
      bad "rank: its GPU $cvd is not among those nvidia-smi -L lists on this host"
    elif [ "$(sed -n 's/^i: //p' "$work/job.out")" != "$cvd" ]; then
      bad "rank: nvidia-smi -i $cvd answers \"$(sed -n 's/^i: //p' "$work/job.out" | head -1)\""
    else
      ok "rank sees exactly its allocated GPU $cvd"
      n=$(grep -c '^L: GPU' "$work/job.out")
      [ "$n" -gt 1 ] && echo "        (nvidia-smi -L inside the rank lists $n GPUs: the exec driver sets CUDA_VISIBLE_DEVICES but does not hide the other devices)"
    fi
  fi
fi

echo
if [ $fails = 0 ]; then
  echo "PASS: Loom agrees with nvidia-smi on this host"
  exit 0
fi
echo "FAIL: $fails difference(s)"
exit 1
