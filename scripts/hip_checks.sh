#!/usr/bin/env bash
# The image checks of the hip scenes (tests/hip.rs), too slow for CI on
# lavapipe: needle ridge and tip against the tracked needle, cortex depth and
# shadow, effusion, out-of-plane fade. Prints each measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
if [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && [ -z "${VK_ICD_FILENAMES:-}" ]; then
    export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
fi
cargo test --release --test hip -- --ignored --nocapture --test-threads 1 2>&1 | grep -E "ridge|tip:|cortex|effusion|needle ridge|test |result"
