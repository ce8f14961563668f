#!/usr/bin/env bash
# Cut benchmark: `prepcast cut` against the shell equivalent on the same tree,
# interleaved, RUNS times each; prints medians and ratios (machines here are
# shared and noisy, so ratios are what count).
#
#   first cut   prepcast cut of a fresh store   vs  sha256sum of every file, then tar -c | zstd -3 -T0
#   unchanged   prepcast cut, nothing changed (50k-file tree)
#   10% change  prepcast cut after 10% of the files were rewritten  vs  sha256sum of those files alone,
#               with the package built (a target in package mode) and without (SFTP targets only)
#
# Knobs (env): FILES (20000), MB (2048), BIG_FILES (50000), RUNS (3), OUT (/tmp/prepcast-bench-cut).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000} MB=${MB:-2048} BIG_FILES=${BIG_FILES:-50000} RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/prepcast-bench-cut}
BIN=$PWD/bin/prepcast
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/prepcast
go build -o "$OUT/mktree" ./bench/mktree 2>/dev/null || { mkdir -p "$OUT"; go build -o "$OUT/mktree" ./bench/mktree; }

say() { printf '%s\n' "$*" >&2; }
# timed LABEL CMD...: appends "label wall user+sys maxrss_kb" to $OUT/times
timed() {
  local label=$1; shift
  /usr/bin/time -f "$label %e %U %S %M" -a -o "$OUT/times" "$@" >/dev/null
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v l="$1" -v c="$2" '$1==l {print $c}' "$OUT/times" | median; }
cpu() { awk -v l="$1" '$1==l {print $3+$4}' "$OUT/times" | median; }

setup_cfg() { # setup_cfg DIR TREE [package]: with "package", a target in package mode makes every cut build its package
  mkdir -p "$1"
  [ -f "$1/manifest.key" ] || "$BIN" keygen --out "$1" >/dev/null
  cat > "$1/prepcast.yaml" <<YAML
source: $2
state_dir: $1/state
signing_key: $1/manifest.key
retention: {cuts: 2}
YAML
  if [ "${3:-}" = package ]; then
    [ -f "$1/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$1/id"
    cat >> "$1/prepcast.yaml" <<YAML
targets:
  - {name: pkg, address: "127.0.0.1:22", user: prep, identity_file: $1/id, host_key: "$(cut -d' ' -f1,2 "$1/id.pub")", root: /srv/prep, mode: exec}
YAML
  fi
}

rm -f "$OUT/times"
mkdir -p "$OUT"
say "generating $FILES files (~$MB MB) in $OUT/tree"
"$OUT/mktree" -out "$OUT/tree" -files "$FILES" -mb "$MB" >&2
mkdir -p "$OUT/tree/json" && echo '{"corte":1}' > "$OUT/tree/json/main.json"
setup_cfg "$OUT/c1" "$OUT/tree" package
setup_cfg "$OUT/c3" "$OUT/tree"
sync

for r in $(seq "$RUNS"); do
  say "run $r/$RUNS: first cut"
  rm -rf "$OUT/c1/state"
  timed prepcast_first "$BIN" cut --config "$OUT/c1/prepcast.yaml"
  timed sha256sum_all sh -c "cd '$OUT/tree' && find . -type f -print0 | xargs -0 sha256sum"
  timed tar_zstd sh -c "tar -C '$OUT/tree' -c . | zstd -3 -T0 -q -f -o '$OUT/tree.tar.zst'"
  rm -f "$OUT/tree.tar.zst"
done

say "generating $BIG_FILES small files for the unchanged re-cut"
"$OUT/mktree" -out "$OUT/big" -files "$BIG_FILES" -mb $((BIG_FILES / 20)) -seed 2 >&2
mkdir -p "$OUT/big/json" && echo '{"corte":1}' > "$OUT/big/json/main.json"
setup_cfg "$OUT/c2" "$OUT/big"
rm -rf "$OUT/c2/state"
"$BIN" cut --config "$OUT/c2/prepcast.yaml" >/dev/null
sleep 1.2
"$BIN" cut --config "$OUT/c2/prepcast.yaml" --allow-empty >/dev/null # the index now trusts every file
for r in $(seq "$RUNS"); do
  timed prepcast_unchanged "$BIN" cut --config "$OUT/c2/prepcast.yaml"
done

# The same tree cut by a store whose config has no target in package mode
# (no package built): its first cut is not timed.
rm -rf "$OUT/c3/state"
"$BIN" cut --config "$OUT/c3/prepcast.yaml" >/dev/null
for r in $(seq "$RUNS"); do
  say "run $r/$RUNS: 10% change"
  "$OUT/mktree" -out "$OUT/tree" -files "$FILES" -mb "$MB" -seed $((100 + r)) -change 0.10 >&2
  echo "{\"corte\":$((r + 1))}" > "$OUT/tree/json/main.json"
  find "$OUT/tree" -type f -newer "$OUT/c1/state/store/scan.idx" -print0 > "$OUT/changed.list"
  sync
  # Interleaved, the order alternating from run to run.
  if [ $((r % 2)) = 1 ]; then
    timed prepcast_10pct "$BIN" cut --config "$OUT/c1/prepcast.yaml"; sync
    timed prepcast_10pct_nopkg "$BIN" cut --config "$OUT/c3/prepcast.yaml"; sync
  else
    timed prepcast_10pct_nopkg "$BIN" cut --config "$OUT/c3/prepcast.yaml"; sync
    timed prepcast_10pct "$BIN" cut --config "$OUT/c1/prepcast.yaml"; sync
  fi
  timed sha256sum_changed sh -c "xargs -0 sha256sum < '$OUT/changed.list'"
done

tree_bytes=$(du -sb "$OUT/tree" | cut -f1)
changed_bytes=$(xargs -0 du -cb < "$OUT/changed.list" | tail -1 | cut -f1)
pf=$(col prepcast_first 2) sa=$(col sha256sum_all 2) tz=$(col tar_zstd 2)
pu=$(col prepcast_unchanged 2) p10=$(col prepcast_10pct 2) s10=$(col sha256sum_changed 2) n10=$(col prepcast_10pct_nopkg 2)
cat <<TABLE
## prepcast cut benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, medians of $RUNS runs)

Tree: $FILES files, $((tree_bytes / 1000000)) MB (90 % incompressible images, 10 % JSON). Unchanged re-cut: $BIG_FILES files.
10 % change: last run rewrote $(wc -l < <(tr '\0' '\n' < "$OUT/changed.list")) files, $((changed_bytes / 1000000)) MB.

| scenario | wall s | CPU s | peak RSS MB | reference | ref wall s | ratio (goal) |
|---|---:|---:|---:|---|---:|---:|
| first cut | $pf | $(cpu prepcast_first) | $(( $(col prepcast_first 5) / 1024 )) | sha256sum all + tar\|zstd -3 -T0 | $(echo "$sa + $tz" | bc) | $(echo "scale=2; $pf / ($sa + $tz)" | bc) (≤ 1.0) |
| unchanged re-cut, $BIG_FILES files | $pu | $(cpu prepcast_unchanged) | $(( $(col prepcast_unchanged 5) / 1024 )) | — | — | $pu s (< 1 s) |
| 10 % change, package built (a target in package mode) | $p10 | $(cpu prepcast_10pct) | $(( $(col prepcast_10pct 5) / 1024 )) | sha256sum of the changed files | $s10 | $(echo "scale=2; $p10 / $s10" | bc) (≤ 1.3) |
| 10 % change, no package (SFTP targets only) | $n10 | $(cpu prepcast_10pct_nopkg) | $(( $(col prepcast_10pct_nopkg 5) / 1024 )) | sha256sum of the changed files | $s10 | $(echo "scale=2; $n10 / $s10" | bc) (≤ 1.3) |
TABLE
printf '\nRaw runs (wall s), in order: first cut %s against sha256sum %s and tar|zstd %s;\n10 %% change with package %s, without %s, against sha256sum %s.\n' \
  "$(awk '$1=="prepcast_first"{printf "%s ", $2}' "$OUT/times")" "$(awk '$1=="sha256sum_all"{printf "%s ", $2}' "$OUT/times")" \
  "$(awk '$1=="tar_zstd"{printf "%s ", $2}' "$OUT/times")" "$(awk '$1=="prepcast_10pct"{printf "%s ", $2}' "$OUT/times")" \
  "$(awk '$1=="prepcast_10pct_nopkg"{printf "%s ", $2}' "$OUT/times")" "$(awk '$1=="sha256sum_changed"{printf "%s ", $2}' "$OUT/times")"
