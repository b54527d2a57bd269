#!/usr/bin/env python3
"""PyMUST and vbeam on the PWI_disk reference workload, for BENCHMARKS.md.

The workload is the one `sonoguide bench` runs and the `mach` project
reports (https://forest-neurotech.github.io/mach/benchmarks.html): PyMUST's
rotating-disk data PWI_disk.mat, 251 x 251 pixels (x -12.5..12.5 mm,
z 10..35 mm), all 128 receive elements, all 32 frames, linear
interpolation, F-number 1. Throughput is points per second with
points = pixels x channels x frames = 63 001 x 128 x 32 = 2.58e8.

Measured, each on the CPU of this machine:
  - PyMUST `dasmtx`: building the sparse DAS matrix, and applying it to the
    32 frames (a sparse x dense product), separately and together;
  - vbeam (JAX on the CPU), set up as mach's own vbeam benchmark sets it
    up (plane wave, rectangular receive apodization at F = 1, linear
    interpolation, no apodization-overlap compensation), jit-compiled and
    warmed up first.
Both take the IQ data from PyMUST's `rf2iq` (the data are bandpass sampled),
which is not timed, as mach does not time demodulation.

    pip install pymust vbeam jax   # into a virtual environment
    python3 scripts/bench_reference.py --data ../shared/data/must/PWI_disk.mat --json out.json

A part that cannot be installed or run is reported as skipped, with the
reason, and the rest still runs.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy.io

PIXELS = 251 * 251


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - a version is only a label here
        return "unknown"


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def load(path):
    import pymust

    if not os.path.exists(path):
        sys.exit(f"{path}: no such file (PWI_disk.mat from PyMUST's examples/data; pass --data)")
    mat = scipy.io.loadmat(path)
    if "RF" not in mat or "param" not in mat:
        sys.exit(f"{path}: expected variables RF and param (MUST's PWI_disk.mat)")
    rf = mat["RF"].astype(np.float64)  # samples x elements x frames
    p = mat["param"]
    param = pymust.utils.Param()
    for name in p.dtype.names:
        v = np.asarray(p[name][0, 0]).ravel().astype(np.float64)
        param[name] = float(v[0]) if v.size == 1 else v
    param.Nelements = int(param.Nelements)  # PyMUST sizes arrays with it
    param.TXdelay = np.asarray(param.TXdelay, dtype=np.float64).ravel()  # all 0: a 0-degree plane wave
    param.t0 = np.array([[param.t0]])  # PyMUST reshapes it (one t0 per transmit)
    param.fnumber = 1.0
    return rf, param


def grid():
    x = np.linspace(-12.5e-3, 12.5e-3, 251)
    z = np.linspace(10e-3, 35e-3, 251)
    xi, zi = np.meshgrid(x, z)  # rows z, columns x, as sonoguide's grid
    return x, z, xi, zi


def bench_pymust(iq, param, repeat):
    import pymust

    _, _, xi, zi = grid()
    n_s, n_e, n_f = iq.shape
    points = PIXELS * n_e * n_f
    t = time.perf_counter()
    m = pymust.dasmtx(1j * np.array([n_s, n_e]), xi, zi, param.TXdelay, param, "linear")
    build = time.perf_counter() - t
    frames = np.asfortranarray(iq.reshape(n_s * n_e, n_f, order="F"))
    apply_med, apply_min = median_time(lambda: m @ frames, repeat)
    image = np.asarray(m @ frames)  # (pixels in column-major grid order) x frames
    return image, {
        "dasmtx_build_s": build,
        "dasmtx_apply_s": apply_med,
        "dasmtx_apply_min_s": apply_min,
        "nonzeros": int(m.nnz),
        "points_per_s_apply": points / apply_med,
        "points_per_s_build_and_apply": points / (build + apply_med),
    }


def bench_vbeam(iq, param, repeat, reference):
    try:
        import jax
        import jax.numpy as jnp
        from spekk import Spec
        from vbeam.apodization import NoApodization, PlaneWaveReceiveApodization, Rectangular, TxRxApodization
        from vbeam.beamformers import get_das_beamformer
        from vbeam.core import ElementGeometry, WaveData
        from vbeam.data_importers import SignalForPointSetup
        from vbeam.interpolation import FastInterpLinspace
        from vbeam.scan import LinearScan
        from vbeam.wavefront import PlaneWavefront, ReflectedWavefront
    except Exception as e:  # noqa: BLE001 - any import failure is a reason to skip
        return {"skipped": f"vbeam/jax could not be imported: {e!r}"}

    device = jax.devices("cpu")[0]
    n_s, n_e, n_f = iq.shape
    points = PIXELS * n_e * n_f
    x, z, _, _ = grid()
    xe = (np.arange(n_e) - (n_e - 1) / 2) * float(param.pitch)
    positions = np.stack([xe, np.zeros(n_e), np.zeros(n_e)], axis=1).astype(np.float32)
    # vbeam's layout: frames x transmits x receivers x samples.
    signal = np.ascontiguousarray(np.transpose(iq, (2, 1, 0))[:, None, :, :]).astype(np.complex64)
    put = lambda a: jax.device_put(a, device=device)  # noqa: E731
    setup = SignalForPointSetup(
        sender=ElementGeometry(position=put(np.zeros(3, np.float32)), theta=put(np.zeros(1, np.float32)), phi=put(np.zeros(1, np.float32))),
        point_position=None,
        receiver=ElementGeometry(position=put(positions), theta=put(np.zeros(n_e, np.float32)), phi=put(np.zeros(n_e, np.float32))),
        signal=put(signal),
        transmitted_wavefront=PlaneWavefront(),
        reflected_wavefront=ReflectedWavefront(),
        speed_of_sound=float(param.c),
        wave_data=WaveData(
            azimuth=put(np.zeros(1, np.float32)),
            elevation=put(np.zeros(1, np.float32)),
            source=put(np.zeros((1, 3), np.float32)),
            t0=put(np.zeros(1, np.float32)),
        ),
        interpolate=FastInterpLinspace(min=float(np.ravel(param.t0)[0]), d=1.0 / float(param.fs), n=n_s),
        modulation_frequency=float(param.fc),
        apodization=TxRxApodization(transmit=NoApodization(), receive=PlaneWaveReceiveApodization(Rectangular(), f_number=1.0)),
        spec=Spec({"signal": ["frames", "transmits", "receivers", "signal_time"], "receiver": ["receivers"], "point_position": ["points"], "wave_data": ["transmits"]}),
        scan=LinearScan(x=put(x.astype(np.float32)), y=put(np.zeros(1, np.float32)), z=put(z.astype(np.float32))),
    )
    try:
        beamformer = jax.jit(get_das_beamformer(setup, compensate_for_apodization_overlap=False, log_compress=False, scan_convert=False))
        data = setup.data
        t = time.perf_counter()
        beamformer(**data).block_until_ready()
        first = time.perf_counter() - t
        med, mn = median_time(lambda: beamformer(**data).block_until_ready(), repeat)
        out = np.asarray(beamformer(**data))  # frames x nx x 1 x nz
    except Exception as e:  # noqa: BLE001 - report, do not crash the other numbers
        return {"skipped": f"vbeam failed to run: {e!r}"}
    # Same setup as PyMUST? Compare envelopes (PyMUST's grid is z x x, column-major).
    ours = np.abs(out.reshape(n_f, len(x), len(z))).transpose(0, 2, 1).reshape(n_f, -1)
    ref = np.abs(reference.T.reshape(n_f, len(x), len(z))).transpose(0, 2, 1).reshape(n_f, -1)
    corr = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    return {"vbeam": package_version("vbeam"), "jax": jax.__version__, "device": str(device), "first_call_s": first, "median_s": med, "min_s": mn, "points_per_s": points / med, "envelope_correlation_with_pymust": corr}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "must", "PWI_disk.mat"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--skip-vbeam", action="store_true")
    args = ap.parse_args()

    import pymust

    rf, param = load(args.data)
    iq = pymust.rf2iq(rf, param)
    out = {
        "workload": "PWI_disk 251x251 px, 128 channels, 32 frames, linear, F=1",
        "points": PIXELS * iq.shape[1] * iq.shape[2],
        "host": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pymust": package_version("pymust"),
    }
    image, pm = bench_pymust(iq, param, args.repeat)
    out["pymust"] = {"version": out.pop("pymust"), **pm}
    p = out["pymust"]
    print(f"PyMUST dasmtx: build {p['dasmtx_build_s']:.3f} s, apply to 32 frames {p['dasmtx_apply_s'] * 1e3:.1f} ms (median of {args.repeat})")
    print(f"  points/s: apply alone {p['points_per_s_apply']:.3e}, build + apply {p['points_per_s_build_and_apply']:.3e}")
    out["vbeam"] = {"skipped": "--skip-vbeam"} if args.skip_vbeam else bench_vbeam(iq, param, args.repeat, image)
    v = out["vbeam"]
    if "skipped" in v:
        print(f"vbeam: skipped ({v['skipped']})")
    else:
        print(f"vbeam {v['vbeam']} (JAX {v['jax']}, {v['device']}): median {v['median_s'] * 1e3:.1f} ms, first call (compile) {v['first_call_s']:.2f} s")
        print(f"  points/s: {v['points_per_s']:.3e}; envelope correlation with PyMUST {v['envelope_correlation_with_pymust']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
