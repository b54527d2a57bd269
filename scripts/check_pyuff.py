#!/usr/bin/env python3
"""Check that USTB's Python reader, pyuff-ustb, reads the channel data that
`sonoguide simulate` writes (UFF, HDF5).

    scripts/check_pyuff.py FILE.uff [--samples N --channels N --waves N --fs HZ --c M/S]

It reads FILE with pyuff_ustb and checks: the object is a uff.channel_data;
its data are [samples, channels, waves] (MATLAB order) of finite, not all
zero values equal to the raw HDF5 dataset; sampling frequency, sound speed,
probe element count and sequence length are what the options say.

CI runs it only where Python and pyuff_ustb are importable: without
pyuff_ustb (`pip install pyuff-ustb`) it prints SKIPPED and exits 0, so it
can be called unconditionally; `--require` makes that a failure. The Rust
test `pyuff_ustb_reads_simulated_channel_data` (tests/simulate.rs) runs it
on a freshly simulated file when python3 and pyuff_ustb are present.
Exit status: 0 passed or skipped, 1 a check failed, 2 bad usage.
"""
import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--channels", type=int)
    ap.add_argument("--waves", type=int)
    ap.add_argument("--fs", type=float, help="sampling frequency, Hz")
    ap.add_argument("--c", type=float, help="sound speed, m/s")
    ap.add_argument("--require", action="store_true", help="fail instead of skipping without pyuff_ustb")
    a = ap.parse_args()
    try:
        import numpy as np
        import h5py
        import pyuff_ustb as pyuff
    except ImportError as e:
        print(f"SKIPPED: {e.name} is not importable (pip install pyuff-ustb)")
        return 1 if a.require else 0

    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    uff = pyuff.Uff(a.file)
    cd = uff.read("channel_data")
    check(type(cd).__name__ == "ChannelData", f"/channel_data read as {type(cd).__name__}, expected ChannelData")
    data = np.asarray(cd.data)
    with h5py.File(a.file, "r") as f:
        raw = f["channel_data/data"][()]
    # pyuff-ustb returns MATLAB's order: [time, channel, wave(, frame)].
    check(data.shape == raw.T.shape, f"data shape {data.shape}, raw HDF5 {raw.shape} transposed is {raw.T.shape}")
    if data.shape == raw.T.shape:
        check(np.array_equal(data, raw.T), "pyuff_ustb's data differ from the raw HDF5 dataset")
    check(bool(np.all(np.isfinite(data))), "data hold NaN or infinite samples")
    check(bool(np.any(data != 0)), "data are all zero")
    fs = float(cd.sampling_frequency)
    c = float(cd.sound_speed)
    n_el = int(cd.probe.N_elements)
    n_waves = len(cd.sequence) if isinstance(cd.sequence, list) else 1
    shape = data.shape
    if a.samples is not None:
        check(shape[0] == a.samples, f"{shape[0]} samples, expected {a.samples}")
    if a.channels is not None:
        check(shape[1] == a.channels and n_el == a.channels, f"{shape[1]} channels and {n_el} probe elements, expected {a.channels}")
    if a.waves is not None:
        got = shape[2] if len(shape) > 2 else 1
        check(got == a.waves and n_waves == a.waves, f"{got} waves of data and {n_waves} in the sequence, expected {a.waves}")
    if a.fs is not None:
        check(abs(fs - a.fs) <= 1e-6 * a.fs, f"sampling frequency {fs}, expected {a.fs}")
    if a.c is not None:
        check(abs(c - a.c) <= 1e-6 * a.c, f"sound speed {c}, expected {a.c}")
    check(float(cd.modulation_frequency) == 0.0, f"modulation frequency {cd.modulation_frequency}, expected 0 (RF)")
    if failures:
        for msg in failures:
            print(f"{a.file}: {msg}", file=sys.stderr)
        return 1
    print(f"pyuff_ustb {getattr(pyuff, '__version__', '')} read {a.file}: {shape} samples × channels × waves, fs {fs:g} Hz, c {c:g} m/s, {n_el} elements, {n_waves} waves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
