//! `sonoguide hfr`: high-frame-rate streaming.
//!
//! Batches of frames (a file's frames looped, or the simulator's) go through
//! upload → demodulate → das → detect continuously. Up to `--buffers`
//! batches are in flight (2: double, 3: triple buffering): while the GPU
//! beamforms batch k, the host uploads batch k + 1. Nothing blocks on a
//! readback inside the loop; completion of a batch is signalled by
//! `Queue::on_submitted_work_done` (and, with `--readback`, by the mapping
//! of its B-mode into host memory), polled without waiting while there is
//! a free buffer.
//!
//! Latency is measured from the start of a batch's upload to the moment
//! its image is available (on the GPU, or in host memory with
//! `--readback`). Frames are dropped only when `--rate` emulates a scanner
//! that acquires on its own clock: the loop always takes the newest
//! complete batch, and the frames acquired in between, while every buffer
//! was busy, are counted as dropped. Without `--rate` the source waits for
//! a free buffer (offline replay), so nothing is dropped, and the report
//! says so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::measure::{label_medians, median};
use super::workload::{self, SynthShape, Workload};
use super::{parse_size, BenchError};
use crate::acquisition::{PixelGrid, Samples};
use crate::gpu::timing::{Fallback, GpuTimer};
use crate::gpu::GpuContext;
use crate::pipeline::das::DasPlan;
use crate::pipeline::demodulate::DemodPlan;
use crate::pipeline::{quantize_i16, Beamformer, DetectSettings, Encoding, GpuChannels};

#[derive(Args, Debug, Clone)]
pub struct HfrArgs {
    /// Channel data to loop (MUST .mat or UFF). Default: the simulator (a 0° plane wave).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Pixels NXxNZ (x −12.5…12.5 mm, z 10…35 mm).
    #[arg(long, default_value = "256x256")]
    pub size: String,
    /// Simulated receive channels (ignored with --data).
    #[arg(long, default_value_t = 128)]
    pub channels: usize,
    /// Simulated plane waves per frame (ignored with --data).
    #[arg(long, default_value_t = 1)]
    pub waves: usize,
    /// Frames per batch (one submission beamforms the batch in one dispatch).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Batches in flight: 2 = double, 3 = triple buffering.
    #[arg(long, default_value_t = 3)]
    pub buffers: usize,
    /// Stop after this many frames, rounded up to whole batches (default
    /// 256 when --seconds is not given).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Emulate a scanner producing frames at this rate (Hz); batches that find no free buffer
    /// are dropped. 0: replay as fast as the GPU takes them (nothing dropped).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Also read each B-mode back into host memory (latency then ends there).
    #[arg(long)]
    pub readback: bool,
    /// Beamform from f32 rows (default: f16 rows, half the bytes per tap;
    /// the B-mode within 1e-3 of its peak of f32's).
    #[arg(long)]
    pub f32_rows: bool,
    /// Stream the RF as int16, as scanners do: half the bytes of f32 per
    /// frame (the stream quantised once, its peak at 32 767; demodulation
    /// restores the scale).
    #[arg(long)]
    pub int16: bool,
    /// Before streaming, time every DAS tiling on one batch (`bench
    /// --tune`) and stream with the fastest correct one at the rows'
    /// precision.
    #[arg(long)]
    pub tune: bool,
    /// Also time each batch's stages (the copy from staging, demodulate,
    /// das, detect) with GPU timestamps where the adapter has them, and
    /// report their medians: where a batch's GPU time goes. Adds a few
    /// empty passes per batch, so the headline rate is best taken without.
    #[arg(long)]
    pub stages: bool,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HfrReport {
    pub adapter: String,
    pub backend: String,
    pub workload: String,
    pub pixels: usize,
    pub channels: usize,
    pub waves: usize,
    pub batch: usize,
    pub buffers: usize,
    pub frames: usize,
    pub frames_dropped: usize,
    pub dropped_reason: String,
    pub seconds: f64,
    pub sustained_fps: f64,
    /// Upload start → image available, per batch.
    pub latency_p50_s: f64,
    pub latency_p90_s: f64,
    pub latency_p99_s: f64,
    pub latency_max_s: f64,
    /// Acoustic time of the frames processed / elapsed time.
    pub mach_factor: f64,
    pub latency_to: String,
    pub rate_hz: f64,
    /// Precision of DAS's frame-contiguous rows: "f16" or "f32".
    pub rows: String,
    /// The DAS tiling streamed with (`k1 r4 w0 s1 f16`, see
    /// `bench::tune::label`), and whether `--tune` chose it.
    pub tiling: String,
    pub tuned: bool,
    /// Host time to write one batch's frames into its staging buffer
    /// (median), and the rate that makes: if it is near the batch's share
    /// of the wall time, the host, not the GPU, sets the frame rate.
    pub upload_host_p50_s: f64,
    pub upload_bytes_per_s: f64,
    /// How the channel data are streamed: "f32" or "int16" (`--int16`),
    /// and the bytes that makes per frame.
    pub samples: String,
    pub upload_bytes_per_frame: usize,
    /// `--stages`: each stage's median GPU time per batch (empty without
    /// it, or on an adapter without timestamps).
    pub stages: Vec<super::report::Stage>,
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

/// The stream's frames as uploaded: the workload's samples, or their
/// int16 quantisation (`--int16`).
enum Stream<'a> {
    Native(&'a Workload),
    I16 { ints: Vec<i16>, frames: usize },
}

/// The bytes of frame `f` of the stream, `[wave][channel][sample]`,
/// cycling through the workload's frames.
fn frame_bytes<'a>(s: &'a Stream, f: usize) -> &'a [u8] {
    match s {
        Stream::Native(w) => {
            let per = w.data.waves * w.data.channels * w.data.samples;
            let f = f % w.data.frames;
            match &w.data.data {
                Samples::Rf(v) => bytemuck::cast_slice(&v[f * per..(f + 1) * per]),
                Samples::Iq(v) => bytemuck::cast_slice(&v[f * per..(f + 1) * per]),
            }
        }
        Stream::I16 { ints, frames } => {
            let per = ints.len() / frames;
            let f = f % frames;
            bytemuck::cast_slice(&ints[f * per..(f + 1) * per])
        }
    }
}

/// A part of a mapped buffer handed to a copy thread.
struct Part<'a>(wgpu::WriteOnly<'a, [u8]>);

// SAFETY: a `WriteOnly<[u8]>` is a unique pointer to bytes, as `&mut [u8]`
// is, and moving it to another thread moves only the right to write them.
// wgpu implements `Send` for `WriteOnly<T>` with `T: Send` but without
// `?Sized`, so its slices miss out; the parts come from `split_at` and do
// not overlap, and the scoped threads end before the mapping does.
unsafe impl Send for Part<'_> {}

impl<'a> Part<'a> {
    fn into_inner(self) -> wgpu::WriteOnly<'a, [u8]> {
        self.0
    }
}

/// Batches at least this large are copied by several threads.
const PARALLEL_COPY_BYTES: usize = 1 << 20;

/// Copy frames `start .. start + batch` into `dst` (a slot's mapped
/// staging buffer), the frames shared among up to `threads` threads: one
/// thread's memcpy moves about 10 GB/s, and 10 000 frames/s of the
/// simulated 128-channel stream is 5.7 GB/s of channel data.
fn fill_batch(
    w: &Stream,
    start: usize,
    batch: usize,
    dst: wgpu::WriteOnly<'_, [u8]>,
    threads: usize,
) {
    let frame_len = frame_bytes(w, 0).len();
    let copy = |mut dst: wgpu::WriteOnly<'_, [u8]>, first: usize, n: usize| {
        for f in first..first + n {
            let (mut one, rest) = dst.split_at(frame_len);
            one.copy_from_slice(frame_bytes(w, f));
            dst = rest;
        }
    };
    let threads = if batch * frame_len >= PARALLEL_COPY_BYTES {
        threads.clamp(1, batch)
    } else {
        1
    };
    if threads == 1 {
        copy(dst, start, batch);
        return;
    }
    let per = batch.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut dst = dst;
        let mut first = start;
        while first < start + batch {
            let n = per.min(start + batch - first);
            let (mine, rest) = dst.split_at(n * frame_len);
            dst = rest;
            let part = Part(mine);
            // A method call moves the whole `Part` in (a closure would
            // capture only its unsendable field).
            scope.spawn(move || copy(part.into_inner(), first, n));
            first += n;
        }
    });
}

struct Slot {
    rf: GpuChannels,
    /// Host-visible copy source of `rf`, kept mapped for writing between
    /// batches: the host writes a batch's frames straight into it, and the
    /// batch's commands copy it to `rf` first. (`Queue::write_buffer` took
    /// a fresh staging buffer per call and a copy from an assembled batch:
    /// on an H200 the simulated stream then fell from 8 739 frames/s at 16
    /// frames per batch to 2 939 at 32.)
    staging: wgpu::Buffer,
    /// `staging` is mapped and may be written.
    staged: Arc<AtomicBool>,
    /// The chain bound to `rf`, by the slot's first batch.
    chain: Option<SlotChain>,
    readback: Option<wgpu::Buffer>,
    done: Arc<AtomicBool>,
    mapped: Arc<AtomicBool>,
    busy: bool,
    started: Instant,
    submission: Option<wgpu::SubmissionIndex>,
}

/// A slot's stages bound to its buffers once: each batch then only writes
/// its channel data and records (no allocation, no bind group per batch).
struct SlotChain {
    demod: Option<crate::pipeline::demodulate::DemodTarget>,
    das: crate::pipeline::das::DasTarget,
    detect: crate::pipeline::detect::DetectTarget,
}

/// Block until the oldest batch in flight has finished (back-pressure when
/// every buffer is busy; the others stay in flight).
fn wait_oldest(ctx: &GpuContext, slots: &[Slot]) -> Result<(), BenchError> {
    let oldest = slots.iter().filter(|s| s.busy).min_by_key(|s| s.started);
    if let Some(idx) = oldest.and_then(|s| s.submission.clone()) {
        ctx.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: Some(Duration::from_secs(60)),
            })
            .map_err(|e| BenchError::gpu(format!("waiting for a batch: {e}")))?;
    }
    Ok(())
}

/// `sonoguide hfr`.
pub fn hfr(args: &HfrArgs, backend: Option<&str>) -> Result<HfrReport, BenchError> {
    crate::io::output::check_outputs(
        &[("--data", args.data.as_deref())],
        &[("--json", args.json.as_deref())],
    )
    .map_err(BenchError::Output)?;
    let (nx, nz) = parse_size(&args.size, "--size")?;
    if args.batch == 0 || args.buffers == 0 || args.buffers > 16 {
        return Err(BenchError::Input(format!(
            "--batch {} --buffers {}: expected a batch of 1 frame or more and 1 to 16 buffers",
            args.batch, args.buffers
        )));
    }
    if args.frames == Some(0) {
        return Err(BenchError::Input(
            "--frames 0: expected at least one frame (or leave it out: 256, or --seconds)".into(),
        ));
    }
    // The beamformer's limits, checked before the synthetic data are made
    // (100 000 channels once grew to 24 GB before anything said no).
    let (max_ch, max_waves) = (
        crate::pipeline::das::MAX_ELEMENTS,
        crate::pipeline::das::MAX_WAVES,
    );
    if args.data.is_none() && !(1..=max_ch).contains(&args.channels) {
        return Err(BenchError::Input(format!(
            "--channels {}: expected 1 to {max_ch} receive channels",
            args.channels
        )));
    }
    if args.data.is_none() && !(1..=max_waves).contains(&args.waves) {
        return Err(BenchError::Input(format!(
            "--waves {}: expected 1 to {max_waves} plane waves",
            args.waves
        )));
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(BenchError::Input(format!(
            "--rate {}: expected a frame rate in Hz (0: as fast as possible)",
            args.rate
        )));
    }
    if let Some(s) = args.seconds {
        if !(s.is_finite() && s > 0.0) {
            return Err(BenchError::Input(format!(
                "--seconds {s}: expected a positive duration"
            )));
        }
    }
    let grid = PixelGrid::Cartesian {
        x: (-12.5e-3, 12.5e-3),
        z: (10e-3, 35e-3),
        nx,
        nz,
    };
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    let max_pixels = crate::pipeline::das::max_pixels(&ctx);
    if nx * nz > max_pixels {
        return Err(BenchError::Input(format!(
            "--size {}: {} pixels, more than one dispatch holds on this adapter ({max_pixels}); give a smaller --size",
            args.size,
            nx * nz
        )));
    }
    let w = match &args.data {
        Some(path) => {
            let data = crate::cli::load(path).map_err(|e| BenchError::Input(e.0))?;
            workload::from_file(data, path, grid)
        }
        None => {
            let mut w = workload::synthetic(SynthShape {
                nx,
                nz,
                channels: args.channels,
                waves: args.waves,
                frames: args.batch.max(1),
            })?;
            w.grid = grid;
            w
        }
    };
    w.data
        .validate()
        .map_err(|e| BenchError::Input(format!("{}: {e}", w.source)))?;
    let (stream, encoding) =
        match (&w.data.data, args.int16) {
            (_, false) => (Stream::Native(&w), Encoding::F32),
            (Samples::Rf(rf), true) if w.demod.is_some() => {
                let (ints, scale) = quantize_i16(rf);
                let frames = w.data.frames;
                (Stream::I16 { ints, frames }, Encoding::I16 { scale })
            }
            _ => {
                return Err(BenchError::Input(format!(
                "--int16: {} holds {}; int16 streaming is for RF that is demodulated on the GPU",
                w.source,
                if w.data.is_iq() { "IQ data" } else { "RF beamformed without demodulation" }
            )))
            }
        };
    let target_frames = match (args.frames, args.seconds) {
        (Some(n), _) => n,
        (None, Some(_)) => usize::MAX,
        (None, None) => 256,
    };
    let limit = args.seconds.map(Duration::from_secs_f64);
    if let Some(n) = args.frames.filter(|n| n % args.batch != 0) {
        // Batches are dispatched whole.
        eprintln!(
            "hfr: --frames {n} is not a whole number of batches of {}: streaming {}",
            args.batch,
            n.next_multiple_of(args.batch)
        );
    }

    let bf = Beamformer::new(&ctx);
    let batch = args.batch;
    if args.tune {
        // On one batch of f32 samples, whatever the stream's encoding:
        // int16 changes what demodulation reads, not how it is best cut up.
        let one = w.looped(batch);
        let p = super::measure::prepare(&ctx, &bf, &one)?;
        super::tune::tune_and_apply(&ctx, &bf, &p, &one, 2, 10, !args.f32_rows, "hfr")?;
    } else {
        bf.das.set_f16_rows(!args.f32_rows);
    }
    let acq = w.data.acquisition.clone();
    let shape = |buffer: wgpu::Buffer| GpuChannels {
        buffer,
        iq: w.data.is_iq(),
        encoding,
        frames: batch,
        waves: w.data.waves,
        channels: w.data.channels,
        samples: w.data.samples,
    };
    // Copies move whole words: an odd count of int16 samples is padded.
    let bytes_per_batch = ((frame_bytes(&stream, 0).len() * batch) as u64).next_multiple_of(4);
    let copy_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);

    // The geometry is the same for every batch: prepared once.
    let demod = match (&w.demod, w.data.is_iq()) {
        (Some(s), false) => Some(DemodPlan::new(&acq, s)?),
        _ => None,
    };
    let f_mod = demod.as_ref().map(|d| d.fc).unwrap_or(if w.data.is_iq() {
        acq.modulation_frequency
    } else {
        0.0
    });
    let pixels = w.grid.positions_f32();
    let plan = DasPlan::new(&acq, &w.das, f_mod, pixels.len(), batch)?;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let geom = bf.das.prepare(
        &ctx,
        &mut enc,
        &plan,
        &pixels,
        w.data.samples,
        batch,
        demod.is_some() || w.data.is_iq(),
    )?;
    ctx.queue.submit([enc.finish()]);
    let n_img = pixels.len() * batch;
    let detect = DetectSettings::default();

    let mut slots: Vec<Slot> = (0..args.buffers)
        .map(|_| -> Result<Slot, BenchError> {
            Ok(Slot {
                rf: shape(ctx.storage("sonoguide.hfr.channels", bytes_per_batch)?),
                staging: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("sonoguide.hfr.staging"),
                    size: bytes_per_batch,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                }),
                staged: Arc::new(AtomicBool::new(true)),
                chain: None,
                readback: if args.readback {
                    Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("sonoguide.hfr.readback"),
                        size: (n_img * 4) as u64,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }))
                } else {
                    None
                },
                done: Arc::new(AtomicBool::new(false)),
                mapped: Arc::new(AtomicBool::new(false)),
                busy: false,
                started: Instant::now(),
                submission: None,
            })
        })
        .collect::<Result<_, _>>()?;

    let upload_times = std::cell::RefCell::new(Vec::new());
    // `--stages`: timestamps around each stage of a batch, read back
    // without waiting (a stall would change what is measured).
    let timer = std::cell::RefCell::new(if args.stages {
        GpuTimer::new(&ctx, Fallback::Skip)
    } else {
        GpuTimer::off()
    });
    // Each timed batch's scopes.
    let mut batch_stages: Vec<Vec<(String, f64)>> = Vec::new();
    // One untimed batch compiles every pipeline (lavapipe compiles at the first dispatch).
    let record = |ctx: &GpuContext,
                  slot: &mut Slot,
                  start: usize|
     -> Result<wgpu::CommandBuffer, BenchError> {
        let t_upload = Instant::now();
        {
            let mut view = slot
                .staging
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| BenchError::gpu(format!("staging buffer not mapped: {e}")))?;
            fill_batch(&stream, start, batch, view.slice(..), copy_threads);
        }
        slot.staging.unmap();
        slot.staged.store(false, Ordering::SeqCst);
        upload_times
            .borrow_mut()
            .push(t_upload.elapsed().as_secs_f64());
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.hfr.batch"),
            });
        if slot.chain.is_none() {
            let demod = demod
                .as_ref()
                .map(|d| bf.demodulate.bind(ctx, &slot.rf, d))
                .transpose()?;
            let channels = match &demod {
                Some(t) => t.iq.clone(),
                None => slot.rf.clone(),
            };
            let das = bf.das.target(ctx, &geom, &channels)?;
            let detect = bf.detect.bind(ctx, &das.image, n_img, &detect)?;
            slot.chain = Some(SlotChain { demod, das, detect });
        }
        let chain = slot.chain.as_ref().expect("bound above");
        let mut timer = timer.borrow_mut();
        timer.begin_frame(start as u64);
        timer.scope(ctx, &mut enc, "copy", |enc| {
            enc.copy_buffer_to_buffer(&slot.staging, 0, &slot.rf.buffer, 0, bytes_per_batch)
        });
        if let Some(t) = &chain.demod {
            timer.scope(ctx, &mut enc, "demodulate", |enc| {
                bf.demodulate.record(enc, t)
            });
        }
        timer.scope(ctx, &mut enc, "das", |enc| {
            bf.das.record(ctx, enc, &geom, &chain.das)
        })?;
        timer.scope(ctx, &mut enc, "detect", |enc| {
            bf.detect.record(enc, &chain.detect)
        });
        if let Some(rb) = &slot.readback {
            enc.copy_buffer_to_buffer(&chain.detect.out.grey, 0, rb, 0, (n_img * 4) as u64);
        }
        timer.finish(ctx, &mut enc);
        Ok(enc.finish())
    };
    // Map a slot's staging buffer again once its batch is done with it.
    let remap = |slot: &Slot| {
        let staged = slot.staged.clone();
        slot.staging
            .slice(..)
            .map_async(wgpu::MapMode::Write, move |r| {
                staged.store(r.is_ok(), Ordering::SeqCst)
            });
    };
    let warm = record(&ctx, &mut slots[0], 0)?;
    ctx.queue.submit([warm]);
    timer.borrow_mut().submitted();
    remap(&slots[0]);
    ctx.wait()?;
    ctx.take_error("hfr: warm-up")?;
    upload_times.borrow_mut().clear();
    // The warm-up's timings (pipelines compiling) are not the stream's.
    let _ = timer.borrow_mut().wait(&ctx)?;

    let mut latencies = Vec::new();
    let mut frames_done = 0usize;
    let mut frames_dropped = 0usize;
    let mut next_frame = 0usize;
    let start = Instant::now();
    let frame_period = if args.rate > 0.0 {
        Some(1.0 / args.rate)
    } else {
        None
    };
    loop {
        // Retire finished batches (no waiting).
        ctx.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| BenchError::gpu(e.to_string()))?;
        batch_stages.extend(timer.borrow_mut().poll(&ctx)?.into_iter().map(|f| f.scopes));
        for s in slots.iter_mut().filter(|s| s.busy) {
            let ready = s.done.load(Ordering::SeqCst)
                && (s.readback.is_none() || s.mapped.load(Ordering::SeqCst));
            if ready {
                latencies.push(s.started.elapsed().as_secs_f64());
                if let Some(rb) = &s.readback {
                    rb.unmap();
                }
                remap(s);
                frames_done += batch;
                s.busy = false;
            }
        }
        let elapsed = start.elapsed();
        let out_of_time = limit.map(|l| elapsed >= l).unwrap_or(false);
        if (next_frame >= target_frames || out_of_time) && slots.iter().all(|s| !s.busy) {
            break;
        }
        if next_frame >= target_frames || out_of_time {
            wait_oldest(&ctx, &slots)?;
            continue;
        }
        // With a scanner clock, frames arrive on their own: take the newest
        // complete batch, and count every frame skipped to reach it as
        // dropped (a scanner overwrites what was not taken in time).
        if let Some(period) = frame_period {
            let acquired = (elapsed.as_secs_f64() / period) as usize;
            let newest = (acquired / batch) * batch;
            if newest < next_frame + batch {
                let ready_at = Duration::from_secs_f64(period * (next_frame + batch) as f64);
                std::thread::sleep(
                    ready_at
                        .saturating_sub(elapsed)
                        .min(Duration::from_micros(200)),
                );
                continue;
            }
            if slots.iter().all(|s| s.busy) {
                wait_oldest(&ctx, &slots)?;
                continue;
            }
            let start_of_newest = newest - batch;
            frames_dropped += start_of_newest - next_frame;
            next_frame = start_of_newest;
            if next_frame >= target_frames {
                continue;
            }
        }
        // A free slot whose staging buffer is mapped again (the mapping
        // lands at a poll shortly after its batch is done).
        let Some(slot) = slots
            .iter_mut()
            .find(|s| !s.busy && s.staged.load(Ordering::SeqCst))
        else {
            if slots.iter().all(|s| s.busy) {
                wait_oldest(&ctx, &slots)?;
            }
            continue;
        };
        slot.started = Instant::now();
        slot.done.store(false, Ordering::SeqCst);
        slot.mapped.store(false, Ordering::SeqCst);
        let cmd = record(&ctx, slot, next_frame)?;
        slot.submission = Some(ctx.queue.submit([cmd]));
        timer.borrow_mut().submitted();
        let done = slot.done.clone();
        ctx.queue
            .on_submitted_work_done(move || done.store(true, Ordering::SeqCst));
        if let Some(rb) = &slot.readback {
            let mapped = slot.mapped.clone();
            rb.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                mapped.store(r.is_ok(), Ordering::SeqCst)
            });
        }
        slot.busy = true;
        next_frame += batch;
    }
    let seconds = start.elapsed().as_secs_f64();
    ctx.take_error("hfr")?;
    batch_stages.extend(timer.borrow_mut().wait(&ctx)?.into_iter().map(|f| f.scopes));
    let acoustic = w.acoustic_time_s() / w.data.frames as f64 * frames_done as f64;
    let report = HfrReport {
        adapter: ctx.info.name.clone(),
        backend: format!("{:?}", ctx.info.backend).to_lowercase(),
        workload: w.describe(),
        pixels: pixels.len(),
        channels: w.data.channels,
        waves: w.data.waves,
        batch,
        buffers: args.buffers,
        frames: frames_done,
        frames_dropped,
        dropped_reason: if frame_period.is_some() {
            format!("scanner clock {} Hz: frames acquired while all {} buffers were busy are skipped (the newest complete batch is taken)", args.rate, args.buffers)
        } else {
            "none can be: without --rate the source waits for a free buffer (offline replay)".into()
        },
        seconds,
        sustained_fps: frames_done as f64 / seconds,
        latency_p50_s: median(&latencies),
        latency_p90_s: percentile(&latencies, 0.9),
        latency_p99_s: percentile(&latencies, 0.99),
        latency_max_s: latencies.iter().copied().fold(f64::NAN, f64::max),
        mach_factor: acoustic / seconds,
        latency_to: if args.readback {
            "B-mode in host memory".into()
        } else {
            "B-mode on the GPU (queue work done)".into()
        },
        rate_hz: args.rate,
        rows: if geom.tiling.f16_rows { "f16" } else { "f32" }.into(),
        tiling: super::tune::label(&geom.tiling),
        tuned: args.tune,
        upload_host_p50_s: median(&upload_times.borrow()),
        upload_bytes_per_s: bytes_per_batch as f64 / median(&upload_times.borrow()),
        samples: match encoding {
            Encoding::F32 => "f32",
            Encoding::I16 { .. } => "int16",
        }
        .into(),
        upload_bytes_per_frame: frame_bytes(&stream, 0).len(),
        stages: label_medians(&batch_stages)
            .into_iter()
            .map(|(stage, median_s)| super::report::Stage { stage, median_s })
            .collect(),
    };
    println!(
        "hfr: {} frames in {:.2} s = {:.0} frames/s sustained ({} frames per batch, {} buffers, das {}{}), Mach {:.3}\n     latency upload → {}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n     frames dropped: {} ({})\n     host upload: p50 {:.3} ms per batch of {:.1} MB of {} samples ({:.1} GB/s, {} threads)",
        report.frames,
        report.seconds,
        report.sustained_fps,
        batch,
        args.buffers,
        report.tiling,
        if report.tuned { ", tuned" } else { "" },
        report.mach_factor,
        report.latency_to,
        report.latency_p50_s * 1e3,
        report.latency_p90_s * 1e3,
        report.latency_p99_s * 1e3,
        report.latency_max_s * 1e3,
        report.frames_dropped,
        report.dropped_reason,
        report.upload_host_p50_s * 1e3,
        bytes_per_batch as f64 / 1e6,
        report.samples,
        report.upload_bytes_per_s / 1e9,
        copy_threads
    );
    if args.stages {
        let n = batch_stages.len();
        let line: Vec<String> = report
            .stages
            .iter()
            .map(|s| format!("{} {:.3} ms", s.stage, s.median_s * 1e3))
            .collect();
        if line.is_empty() {
            println!("     GPU per batch: not timed (the adapter has no timestamp queries)");
        } else {
            println!(
                "     GPU per batch (timestamps, median of {n}): {}",
                line.join(", ")
            );
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report)
}
