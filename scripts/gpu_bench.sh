#!/usr/bin/env bash
# The whole sonoguide benchmark on a GPU machine, in one go:
#
#     scripts/gpu_bench.sh OUT_DIR [PATH/PWI_disk.mat]
#
# writes into OUT_DIR:
#   machine.txt        GPU (nvidia-smi), CPU (lscpu), the adapter wgpu picks
#   pwi_disk.json/.csv/.svg, pwi_disk.txt
#                      the reference workload (mach's PWI_disk: 251 x 251 px,
#                      128 channels, 32 frames), CPU twin, per-stage times,
#                      and the sweeps of pixels, channels, waves and frames
#   tune_*.txt/.json/.csv
#                      every DAS tiling (pixels per invocation x frames per
#                      block x element loop split, f32 and f16 rows) and
#                      demodulation chunk length timed in one process on
#                      PWI_disk and on a 64 x 64 image (bench --tune), to
#                      pick the GPU defaults
#   hfr_*.json/.txt    streaming: 256 x 256 pixels, 128 channels, one plane
#                      wave (the issue's >= 10 000 frames/s target), and
#                      PWI_disk looped; f32 and int16 samples
#   display_*.txt/.png the display's full loop headless at 1280 x 720, the
#                      quality preset (the >= 200 frames/s target) and fast;
#                      display_*_moving: the tissue simulated for every image;
#                      display_*_renewing: renewed behind the images, always;
#                      display_*_direct: both with the direct receive;
#                      display_*_wall: per stage on the host clock
#   sim_receive_*.txt  the simulator's receive, direct vs tiled
#   summary.txt        the headline numbers
#
# Uses target/release/sonoguide when it is there (or $SONOGUIDE_BIN), else
# builds it (cargo build --release, offline if the registry is cached).
# GPU_BENCH_QUICK=1 runs every step at toy sizes (to check the script).
# Every step runs even if an earlier one failed; failures are listed at the
# end and make the exit status non-zero.
set -u

out=${1:?usage: scripts/gpu_bench.sh OUT_DIR [PATH/PWI_disk.mat]}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${2:-$root/../shared/data/must/PWI_disk.mat}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
failed=()
if [ "${GPU_BENCH_QUICK:-0}" = 1 ]; then
    quick=(--quick); repeat=3; seconds=1
else
    quick=(); repeat=50; seconds=10
fi

bin=${SONOGUIDE_BIN:-$root/target/release/sonoguide}
if [ ! -x "$bin" ]; then
    echo "building sonoguide (release) ..."
    (cd "$root" && (cargo build --release --offline || cargo build --release)) >"$out/build.log" 2>&1 || { echo "build failed: see $out/build.log"; exit 2; }
fi

step() {  # step NAME CMD... : run, tee the output to OUT_DIR/NAME.txt, remember failures
    local name=$1; shift
    echo "== $name: $*"
    if ! "$@" >"$out/$name.txt" 2>&1; then
        failed+=("$name")
        echo "   FAILED (see $out/$name.txt)"
    fi
    tail -n 3 "$out/$name.txt" | sed 's/^/   /'
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    command -v lscpu >/dev/null && lscpu | grep -E "Model name|^CPU\(s\)"
    "$bin" adapters
} >"$out/machine.txt" 2>&1

if [ -f "$data" ]; then
    step pwi_disk "$bin" bench --workload pwi-disk --data "$data" --sweep --repeat "$repeat" ${quick[@]+"${quick[@]}"} \
        --json "$out/pwi_disk.json" --csv "$out/pwi_disk.csv" --plot "$out/pwi_disk.svg"
    # Every DAS tiling (pixels per invocation x vec4 per row x element
    # loop split, f32 and f16 rows) timed in one process, in rounds, each
    # image checked against the default's; then the kernel measured with
    # the fastest correct f32 one (tune_pwi.txt has the table).
    # --roofline: the card's cached and streamed load rates and FMA rate
    # in the same process, and the chosen tiling's share of each.
    step tune_pwi "$bin" bench --workload pwi-disk --data "$data" --no-cpu --no-stages --tune --roofline --repeat "$repeat" ${quick[@]+"${quick[@]}"} \
        --json "$out/tune_pwi.json" --csv "$out/tune_pwi.csv"
    # The same on a small image, where a GPU's serial element loop set a
    # fixed ~170 us (the case for splitting it).
    step tune_small "$bin" bench --workload synthetic --size 64x64 --frames 8 --no-cpu --no-stages --tune --repeat "$repeat" ${quick[@]+"${quick[@]}"} \
        --json "$out/tune_small.json" --csv "$out/tune_small.csv"
    step hfr_pwi_disk "$bin" hfr --data "$data" --size 251x251 --batch 32 --seconds "$seconds" --json "$out/hfr_pwi_disk.json"
else
    echo "PWI_disk.mat not found at $data: reference workload skipped (pass its path as the second argument)"
    failed+=("pwi_disk (no data)")
    step synthetic "$bin" bench --workload synthetic --size 251x251 --channels 128 --frames 32 --sweep ${quick[@]+"${quick[@]}"} \
        --json "$out/synthetic.json" --csv "$out/synthetic.csv" --plot "$out/synthetic.svg"
fi
for b in 1 8 16 32; do
    step "hfr_256_b$b" "$bin" hfr --size 256x256 --channels 128 --waves 1 --batch "$b" --seconds "$seconds" --json "$out/hfr_256_b$b.json"
done
# The same stream with the DAS tiling tuned on one batch first.
step "hfr_256_b16_tuned" "$bin" hfr --size 256x256 --channels 128 --waves 1 --batch 16 --seconds "$seconds" --tune --json "$out/hfr_256_b16_tuned.json"
# Where a batch's GPU time goes (copy, demodulate, das, detect).
step "hfr_256_b16_stages" "$bin" hfr --size 256x256 --channels 128 --waves 1 --batch 16 --seconds "$seconds" --stages --json "$out/hfr_256_b16_stages.json"
# hfr beamforms from f16 rows by default: the same stream from f32 rows.
step "hfr_256_b16_f32rows" "$bin" hfr --size 256x256 --channels 128 --waves 1 --batch 16 --seconds "$seconds" --f32-rows --json "$out/hfr_256_b16_f32rows.json"
# The RF streamed as int16 (half the upload), at the batch sizes the upload
# bound on the H200 (16, 32), and PWI_disk's own int16 samples.
for b in 16 32; do
    step "hfr_256_b${b}_int16" "$bin" hfr --size 256x256 --channels 128 --waves 1 --batch "$b" --seconds "$seconds" --int16 --json "$out/hfr_256_b${b}_int16.json"
done
if [ -f "$data" ]; then
    step hfr_pwi_disk_int16 "$bin" hfr --data "$data" --size 251x251 --batch 32 --seconds "$seconds" --int16 --json "$out/hfr_pwi_disk_int16.json"
fi
# The simulator's receive: an atomic per sample into the traces (direct,
# the CPU adapters' default) against tiles of neighbouring scatterers summed
# in workgroup memory first (tiled, the GPUs' default), on the point-target
# phantom (262 557 scatterers x 128 channels x 3 waves), alternating, twice
# each (sim_receive_*.txt: "simulated ... in X ms"); the two UFFs are the
# same bytes.
# (Quick mode: skipped; the phantom takes ~2 min per run on lavapipe.)
if [ "${GPU_BENCH_QUICK:-0}" != 1 ]; then
    for i in 1 2; do
        for receive in direct tiled; do
            step "sim_receive_${receive}_$i" "$bin" simulate "$root/scenes/phantom-point-targets.toml" --tx-window 4 --repeat 3 \
                --receive "$receive" --out "$out/sim_receive_$receive.uff"
        done
    done
fi
# The display's full loop (simulate -> beamform -> detect -> scan convert ->
# composite) headless at 1280 x 720: the quality preset (128 channels x 3
# waves, the >= 200 frames/s target) and the fast one.
# (Quick mode: fast only; a quality image takes ~1 min to simulate on lavapipe.)
if [ "${GPU_BENCH_QUICK:-0}" = 1 ]; then display_frames=20; presets=fast; else display_frames=2000; presets="quality fast"; fi
for p in $presets; do
    step "display_$p" "$bin" view --preset "$p" --headless "$out/display_$p.png" --size 1280x720 \
        --frames "$display_frames" --progress $((display_frames / 10))
done
# The same with the tissue simulated for every image (a probe always on
# the move), against the default that keeps it while the probe is held.
step "display_${presets%% *}_moving" "$bin" view --preset "${presets%% *}" --headless "$out/display_moving.png" --size 1280x720 \
    --frames "$display_frames" --progress $((display_frames / 10)) --tissue-tolerance -1
# Per stage, host clock: an image that simulates its tissue, one that
# keeps it, and one that keeps it with a renewal's share behind it.
step "display_${presets%% *}_wall" "$bin" view --preset "${presets%% *}" --headless "$out/display_wall.png" --size 1280x720 --wall-clock
# A probe always on the move with the tissue renewed behind the images
# (tolerance 0: the tremor renews it continuously, over --renew-frames).
step "display_${presets%% *}_renewing" "$bin" view --preset "${presets%% *}" --headless "$out/display_renewing.png" --size 1280x720 \
    --frames "$display_frames" --progress $((display_frames / 10)) --tissue-tolerance 0
# The same two with the direct receive (the default on a GPU is tiled).
step "display_${presets%% *}_moving_direct" "$bin" view --preset "${presets%% *}" --headless "$out/display_moving_direct.png" --size 1280x720 \
    --frames "$display_frames" --progress $((display_frames / 10)) --tissue-tolerance -1 --receive direct
step "display_${presets%% *}_renewing_direct" "$bin" view --preset "${presets%% *}" --headless "$out/display_renewing_direct.png" --size 1280x720 \
    --frames "$display_frames" --progress $((display_frames / 10)) --tissue-tolerance 0 --receive direct

{
    echo "sonoguide GPU benchmark, $(head -n 1 "$out/machine.txt")"
    grep -h -E "^chosen:" "$out/machine.txt"
    for f in "$out/pwi_disk.txt" "$out"/hfr_*.txt "$out"/sim_receive_*.txt "$out"/display_*.txt; do
        [ -f "$f" ] || continue
        echo "--- $(basename "$f" .txt)"
        grep -E "das kernel \(median\)|CPU twin \(|GPU kernel vs|^hfr:|GPU per batch|latency|dropped|frames in|^  demodulate|^simulated|^phases|image, tissue|B/s$|fused multiply|of the cached load rate|rates allow" "$f"
    done
    for f in "$out"/tune_*.txt; do
        [ -f "$f" ] || continue
        echo "--- $(basename "$f" .txt): the ten fastest tilings"
        grep -E "tuned (das|demodulation):" "$f"
        grep -A 11 -E "^tuning " "$f" | tail -n +2
        grep -A 12 -E "^demodulation chunks" "$f"
    done
} >"$out/summary.txt"
cat "$out/summary.txt"

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed steps: ${failed[*]}"
    exit 1
fi
