#!/usr/bin/env bash
# Runs one workload through Cairn and every peer installed (restic, borg, rustic, bupstash; missing
# ones are skipped) in a single run and prints a table of times, peak RSS and repository sizes,
# with each figure as a ratio to the best peer. Release build; warm page cache for every tool
# alike, or with --cold a cold one: the page cache dropped before every step (as root), as a
# nightly job finds it. Cairn opens with a key file (as README's nightly job; bupstash opens with
# one too), and so does a baseline build that knows key files; the other tools with a password.
#
# Usage: benches/compare.sh [--cold] [MIXED_DIR]
#   With CAIRN_BASELINE=PATH, the `cairn` binary at PATH (an earlier build, a release build of
#   another commit) runs every step too, as the tool "cairn-baseline": a before/after comparison
#   in one run; BASELINE_FIRST=1 runs it before the current build (run both orders: a later
#   tool finds the file system and page cache as the earlier one left them). PEERS=0 leaves
#   the other tools out.
#   MIXED_DIR  the mixed data set (default: built under $WORK: /usr/include, /usr/share/doc,
#              shared libraries, 200 MiB of random bytes, 150 MiB of text)
# Environment: WORK (scratch directory, default a temp dir), SMALL_FILES (default 100000),
#              CHANGE_PERCENT (files touched before the third snapshot, default 3), REPEAT (runs of
#              each repeatable step, default 3), KEEP=1 to keep WORK.
#
# Every step except the changed-files snapshot and the prune runs REPEAT times for every tool alike (an initial
# snapshot into a fresh repository each time) and the table shows the fastest time and the
# highest peak RSS of those runs: on a shared machine noise only adds time, and one slow outlier
# (the first heavy run after the data set was written, say) should not decide a ratio.
set -euo pipefail
COLD=0
if [ "${1:-}" = --cold ]; then
  COLD=1
  shift
  if ! { sync && echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
    echo "--cold drops the page cache before every step: run as root" >&2
    exit 2
  fi
fi
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-cli -p cairn-benches --bins >&2
export cairn="$CARGO_TARGET_DIR/release/cairn"
limit="$CARGO_TARGET_DIR/release/compute-limit"
floor="$CARGO_TARGET_DIR/release/stat-floor"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-compare.XXXXXX")}"
SMALL_FILES="${SMALL_FILES:-100000}"
CHANGE_PERCENT="${CHANGE_PERCENT:-3}"
REPEAT="${REPEAT:-3}"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
export PASSWORD="compare-password-$$"

# --- data ----------------------------------------------------------------------------------
mixed="${1:-}"
if [ -z "$mixed" ]; then
  mixed="$WORK/mixed"
  if [ ! -d "$mixed" ]; then
    mkdir -p "$mixed/lib" "$mixed/random" "$mixed/text"
    cp -a /usr/include "$mixed/include" 2>/dev/null || true
    cp -a /usr/share/doc "$mixed/doc" 2>/dev/null || true
    find /usr/lib -name '*.so*' -type f -size +100k 2>/dev/null | head -400 | while read -r f; do
      cp "$f" "$mixed/lib/$(echo "$f" | tr / _)"
    done
    for i in $(seq 1 20); do head -c 10M /dev/urandom > "$mixed/random/r$i"; done
    for i in $(seq 1 15); do
      for j in $(seq 1 20000); do echo "log line $j of file $i: user=$((j % 97)) status=$((j % 7)) path=/srv/app/$((j % 1013))"; done > "$mixed/text/t$i.log"
    done
  fi
fi
small="$WORK/small"
if [ ! -d "$small" ]; then
  mkdir -p "$small"
  python3 - "$small" "$SMALL_FILES" <<'EOF'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write((f"file {i} " * rnd.randint(1, 300)).encode())
EOF
fi
mixed_bytes=$(du -sb "$mixed" | cut -f1)
echo "data: mixed $(du -sh "$mixed" | cut -f1) ($(find "$mixed" -type f | wc -l) files), small $SMALL_FILES files" >&2

# --- tools ---------------------------------------------------------------------------------
export cairn_baseline="${CAIRN_BASELINE:-}"
tools=(cairn)
[ -n "$cairn_baseline" ] && tools+=(cairn-baseline)
[ -n "$cairn_baseline" ] && [ "${BASELINE_FIRST:-0}" = 1 ] && tools=(cairn-baseline cairn)
if [ "${PEERS:-1}" = 1 ]; then
  command -v restic >/dev/null && tools+=(restic)
  command -v borg >/dev/null && tools+=(borg)
  command -v rustic >/dev/null && tools+=(rustic)
  command -v bupstash >/dev/null && tools+=(bupstash)
fi
echo "tools: ${tools[*]}" >&2

# run TOOL STEP CMD...: times CMD, records seconds and peak RSS (KiB).
results="$WORK/results.tsv"
: > "$results"
run() {
  local tool=$1 step=$2
  shift 2
  if [ "$COLD" = 1 ]; then
    sync
    echo 3 > /proc/sys/vm/drop_caches
  fi
  local t="$WORK/time.$$"
  if /usr/bin/time -f "%e %M" -o "$t" "$@" > "$WORK/$tool-$step.out" 2>&1; then
    read -r secs rss < "$t"
    printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$secs" "$rss" >> "$results"
  else
    echo "$tool $step failed: $(tail -3 "$WORK/$tool-$step.out")" >&2
    printf '%s\t%s\tFAIL\tFAIL\n' "$tool" "$step" >> "$results"
  fi
}

tool_env() {
  case $1 in
    # Cairn opens with a key file once `init` made one, as README's nightly job does (bupstash
    # too opens with a key file); a baseline build that predates key files, with a password.
    cairn|cairn-baseline) export CAIRN_REPOSITORY="$WORK/repo-$1-$2" CAIRN_CACHE_DIR="$WORK/cache-$1" CAIRN_PASSWORD="$PASSWORD"
      if [ -f "$WORK/$1-$2.key" ]; then export CAIRN_KEY_FILE="$WORK/$1-$2.key"; else unset CAIRN_KEY_FILE; fi ;;
    restic) export RESTIC_REPOSITORY="$WORK/repo-restic-$2" RESTIC_PASSWORD="$PASSWORD" RESTIC_CACHE_DIR="$WORK/cache-restic" ;;
    borg) export BORG_REPO="$WORK/repo-borg-$2" BORG_PASSPHRASE="$PASSWORD" BORG_CACHE_DIR="$WORK/cache-borg" BORG_BASE_DIR="$WORK/borg-base" ;;
    rustic) export RUSTIC_REPOSITORY="$WORK/repo-rustic-$2" RUSTIC_PASSWORD="$PASSWORD" ;;
    # bupstash's key is a file, not a password; its send log and query cache (its client
    # cache) under WORK like the others'.
    bupstash) export BUPSTASH_REPOSITORY="$WORK/repo-bupstash-$2" BUPSTASH_KEY="$WORK/bupstash.key" \
      BUPSTASH_SEND_LOG="$WORK/cache-bupstash/send-log-$2.sqlite3" \
      BUPSTASH_QUERY_CACHE="$WORK/cache-bupstash/query-cache.sqlite3" ;;
  esac
}

init() { # tool set
  case $1 in
    cairn) "$cairn" -q init --no-recovery-code
      "$cairn" -q key add --new-key-file "$WORK/cairn-$2.key" --label bench
      export CAIRN_KEY_FILE="$WORK/cairn-$2.key" ;;
    cairn-baseline) "$cairn_baseline" -q init --no-recovery-code
      if "$cairn_baseline" -q key add --new-key-file "$WORK/cairn-baseline-$2.key" --label bench; then
        export CAIRN_KEY_FILE="$WORK/cairn-baseline-$2.key"
      fi ;;
    restic) restic -q init --repository-version 2 ;;
    borg) borg init -e repokey-blake2 ;;
    rustic) rustic init ;;
    bupstash)
      mkdir -p "$WORK/cache-bupstash"
      [ -f "$BUPSTASH_KEY" ] || bupstash new-key -o "$BUPSTASH_KEY"
      bupstash init
      ;;
  esac
}

backup() { # tool path
  case $1 in
    cairn) "$cairn" -q snapshot "$2" ;;
    cairn-baseline) "$cairn_baseline" -q snapshot "$2" ;;
    restic) restic -q backup "$2" ;;
    borg) borg create --compression zstd,3 "::s$(date +%s%N)" "$2" ;;
    rustic) rustic backup "$2" ;;
    # Tagged with a counter, so that restore can name the latest (bupstash has no `latest`).
    bupstash)
      local n
      n=$(date +%s%N)
      bupstash put --no-progress --send-log "$BUPSTASH_SEND_LOG" "n=$n" "$2" && echo "$n" > "$BUPSTASH_REPOSITORY.latest"
      ;;
  esac
}

restore() { # tool target
  case $1 in
    cairn) "$cairn" -q restore latest --target "$2" ;;
    cairn-baseline) "$cairn_baseline" -q restore latest --target "$2" ;;
    restic) restic -q restore latest --target "$2" ;;
    borg) (mkdir -p "$2" && cd "$2" && borg extract "::$(borg list --last 1 --short)") ;;
    rustic) rustic restore latest "$2" ;;
    bupstash) mkdir -p "$2" && bupstash restore --into "$2" "n=$(cat "$BUPSTASH_REPOSITORY.latest")" ;;
  esac
}

verify() {
  case $1 in
    cairn) "$cairn" -q check --read-data ;;
    cairn-baseline) "$cairn_baseline" -q check --read-data ;;
    restic) restic -q check --read-data ;;
    borg) borg check --verify-data ;;
    rustic) rustic check --read-data ;;
    # No verifying command: every item read back in full is the closest.
    bupstash) bupstash get "n=$(cat "$BUPSTASH_REPOSITORY.latest")" > /dev/null ;;
  esac
}

# forget_prune TOOL: forgets every snapshot but the newest and reclaims the space, each tool as
# its nightly job would (its own safety defaults: Cairn and rustic mark unused packs and delete
# them on a later run, borg compacts, bupstash collects at once).
forget_prune() {
  case $1 in
    cairn) "$cairn" -q forget --keep-last 1 --group-by host --prune ;;
    cairn-baseline) "$cairn_baseline" -q forget --keep-last 1 --group-by host --prune ;;
    restic) restic -q forget --keep-last 1 --group-by host --prune ;;
    borg) borg prune --keep-last 1 && borg compact ;;
    rustic) rustic forget --keep-last 1 --group-by host --prune ;;
    bupstash) bupstash rm --allow-many "~n=$(cat "$BUPSTASH_REPOSITORY.latest")" && bupstash gc ;;
  esac
}

# Every tool starts alike: sources in the page cache (unless --cold, where `run` drops it),
# no writeback pending from the previous tool's clean-up (fsync-heavy writers would otherwise
# pay for it).
settle() {
  sync
  [ "$COLD" = 1 ] || find "$mixed" "$small" -type f -exec cat {} + > /dev/null
}

# fresh TOOL SET: an empty repository and cache for TOOL, sources settled.
fresh() {
  rm -rf "$WORK/repo-$1-$2" "$WORK/cache-$1" "$WORK/borg-base" "$WORK/$1-$2.key"
  settle
  tool_env "$1" "$2"
  init "$1" "$2" > /dev/null 2>&1
}

# initial TOOL SET LABEL DIR: the first snapshot of DIR, REPEAT times into a fresh repository.
initial() {
  for _ in $(seq "$REPEAT"); do
    fresh "$1" "$2"
    run "$1" "snapshot initial ($3)" bash -c "$(declare -f backup); backup $1 '$4'"
  done
}

changed="$WORK/mixed-changed"
for tool in "${tools[@]}"; do
  echo "== $tool" >&2
  initial "$tool" mixed mixed "$mixed"
  for _ in $(seq "$REPEAT"); do
    run "$tool" "snapshot unchanged (mixed)" bash -c "$(declare -f backup); backup $tool '$mixed'"
  done
  # A few percent of the files change: appended to, in place. Not repeated: a second run would
  # find the first as its parent.
  rm -rf "$changed" && cp -a "$mixed" "$changed"
  find "$changed" -type f | awk -v p="$CHANGE_PERCENT" 'NR % int(100 / p) == 0' | while read -r f; do
    echo "changed $RANDOM" >> "$f"
  done
  sync
  run "$tool" "snapshot, ${CHANGE_PERCENT}% of files changed (a copy: no parent, all read)" bash -c "$(declare -f backup); backup $tool '$changed'"
  # Each restore gets its own target, and nothing is deleted until the restores are done:
  # ext4 creates files slowly right after many were deleted (it skips recently freed inodes,
  # reading inode tables to find them), which measured the file system, not the tool.
  for r in $(seq "$REPEAT"); do
    rm -rf "$WORK/restore-$tool-$r"
    sync
    run "$tool" "restore" bash -c "$(declare -f restore); restore $tool '$WORK/restore-$tool-$r'"
  done
  sync
  for _ in $(seq "$REPEAT"); do
    run "$tool" "check with data" bash -c "$(declare -f verify); verify $tool"
  done
  rm -rf "$changed" "$WORK"/restore-"$tool"-*
  sync
  printf '%s\t%s\t%s\t%s\n' "$tool" "repository size (MiB)" "$(( $(du -sb "$WORK/repo-$tool-mixed" | cut -f1) / 1048576 ))" "-" >> "$results"
  # Not repeated: a second run would find nothing to do.
  run "$tool" "forget + prune to 1" bash -c "$(declare -f forget_prune); forget_prune $tool"
  rm -rf "$WORK/repo-$tool-mixed"
  initial "$tool" small "${SMALL_FILES} files" "$small"
  for _ in $(seq "$REPEAT"); do
    run "$tool" "snapshot unchanged (${SMALL_FILES} files)" bash -c "$(declare -f backup); backup $tool '$small'"
  done
  rm -rf "$WORK/repo-$tool-small"
done

# --- compute limit ---------------------------------------------------------------------------
# The best of REPEAT runs, like the steps above.
: > "$WORK/limit.out"
for _ in $(seq "$REPEAT"); do "$limit" "$mixed" >> "$WORK/limit.out"; done
limit_mibs=$(grep -Eo 'limit_mib_s=[0-9.]+' "$WORK/limit.out" | cut -d= -f2 | sort -g | tail -1)

# --- stat floor (--cold) ---------------------------------------------------------------------
# Listing and lstat'ing every entry on 8 threads, nothing else, from a cold page cache: what an
# unchanged snapshot cannot go below on this machine. The best of REPEAT runs.
floors=""
if [ "$COLD" = 1 ]; then
  for set in mixed small; do
    best=""
    for _ in $(seq "$REPEAT"); do
      sync && echo 3 > /proc/sys/vm/drop_caches
      s=$("$floor" "${!set}" 8 | grep -Eo 'seconds=[0-9.]+' | cut -d= -f2)
      best=$(printf '%s\n%s\n' "$best" "$s" | grep . | sort -g | head -1)
    done
    floors+="$set $best s, "
  done
fi

# --- report ----------------------------------------------------------------------------------
python3 - "$results" "$mixed_bytes" "$limit_mibs" <<'EOF'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
mixed_bytes, limit = int(sys.argv[2]), float(sys.argv[3])
steps = list(dict.fromkeys(r[1] for r in rows))
tools = list(dict.fromkeys(r[0] for r in rows))
# Repeated runs of a step: the fastest time and the highest peak RSS; any failure fails the step.
runs = collections.defaultdict(list)
for r in rows:
    runs[(r[0], r[1])].append(r)
val = {}
for k, rs in runs.items():
    if any(r[2] == "FAIL" for r in rs):
        val[k] = [k[0], k[1], "FAIL", "FAIL"]
    else:
        rss = [int(r[3]) for r in rs if r[3] != "-"]
        val[k] = [k[0], k[1], str(min(float(r[2]) for r in rs)), str(max(rss)) if rss else "-"]
print(f"| step | {' | '.join(tools)} | cairn vs best peer |")
print(f"|---|{'---|' * len(tools)}---|")
for s in steps:
    cells, peer_best, mine = [], None, None
    for t in tools:
        r = val.get((t, s))
        if not r or r[2] == "FAIL":
            cells.append("fail" if r else "-")
            continue
        v = float(r[2])
        rss = "" if r[3] == "-" else f" ({int(r[3]) // 1024} MiB)"
        cells.append(f"{v:g}{'' if 'size' in s else ' s'}{rss}")
        if t == "cairn":
            mine = v
        elif t != "cairn-baseline" and (peer_best is None or v < peer_best):
            # The baseline is Cairn too: the ratio is to the other tools.
            peer_best = v
    ratio = f"{peer_best / mine:.2f}x faster" if mine and peer_best and "size" not in s else ""
    if "size" in s and mine and peer_best:
        ratio = f"{(mine / peer_best - 1) * 100:+.1f}% size"
    print(f"| {s} | {' | '.join(cells)} | {ratio} |")
init = val.get(("cairn", "snapshot initial (mixed)"))
if init and init[2] != "FAIL":
    tput = mixed_bytes / 1048576 / float(init[2])
    print(f"\ncairn initial snapshot: {tput:.0f} MiB/s = {tput / limit * 100:.0f}% of the compute limit ({limit:.0f} MiB/s: chunk + hash + compress + seal of the same data in memory, all cores)")
for t in tools:
    rss = [int(val[(t, s)][3]) for s in steps if (t, s) in val and val[(t, s)][3] not in ("-", "FAIL") and "snapshot" in s]
    if rss:
        print(f"peak RSS of {t} snapshots: {max(rss) // 1024} MiB")
print("\nall runs (seconds):")
for (t, s), rs in runs.items():
    if len(rs) > 1:
        print(f"  {t}, {s}: {' '.join(r[2] for r in rs)}")
EOF
if [ -n "$floors" ]; then
  echo "stat floor, cold (list and lstat every entry on 8 threads, nothing else: benches/src/bin/stat_floor.rs): ${floors%, }"
fi
