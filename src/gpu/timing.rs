//! GPU timestamp scopes, one per stage, that never stall the frame.
//!
//! [`GpuTimer::scope`] brackets whatever a closure records into the command
//! encoder with two timestamps, labelled with the stage name. The
//! timestamps are written by empty compute passes (`timestamp_writes` at
//! the end of the pass, which wgpu's Vulkan backend writes at
//! BOTTOM_OF_PIPE, i.e. once the work recorded before it has finished), so
//! only `TIMESTAMP_QUERY` is needed, not the "inside encoders/passes"
//! extensions, and stages recorded by code that knows nothing of timing
//! (`Demodulate::encode`, ...) can be bracketed from outside.
//!
//! [`GpuTimer::finish`] resolves the frame's queries into a buffer and
//! copies them to a host-mappable one taken from a small ring; after the
//! submission, [`GpuTimer::submitted`] starts mapping it, and
//! [`GpuTimer::poll`] returns the frames whose results have arrived,
//! without waiting, so a streaming loop reads frame N's timings while
//! frame N + 2 is being recorded. [`GpuTimer::wait`] does wait (benchmarks).
//!
//! On a CPU adapter each marker is followed by a second one, into a
//! scratch query: lavapipe (Mesa 22.3) takes a timestamp only when the
//! next command that flushes its pipeline runs, so a marker read the time
//! of whatever came after it. In the display's frame loop the `das`
//! scope then read 0.04–0.2 ms and the ~40 ms of its work fell between
//! two scopes; with the trailing marker each timestamp is taken right
//! after its own marker (das 41 ms, as the host clock has it).
//!
//! Without `TIMESTAMP_QUERY` the timer degrades quietly to wall time:
//! with [`Fallback::Stall`] each scope submits what was recorded before it,
//! waits, and times the scope's own submission (benchmarks, where a stall
//! is the price of a number); with [`Fallback::Skip`] scopes only record
//! (streaming, where a stall would change what is measured).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{GpuContext, GpuError};

/// Scopes per segment of the query set (two timestamps each). A frame
/// with more scopes reuses the set: each full segment is resolved into
/// its own part of the resolve buffer first (pass timestamp writes reset
/// their queries, so the indices may be written again after the resolve).
/// A simulation of many batches records hundreds of scopes; past the 32nd
/// they were once left untimed, and its phases summed a quarter of the run.
const MAX_SCOPES: u32 = 32;
/// Segments per frame: scopes past MAX_SCOPES × MAX_SEGMENTS are recorded
/// untimed, and counted ([`FrameTimings::untimed`]).
const MAX_SEGMENTS: u32 = 64;

/// What a timer does on an adapter without timestamp queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Submit and wait around every scope, timing it on the host clock.
    Stall,
    /// Record without timing.
    Skip,
}

/// Where a frame's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// GPU timestamps.
    Gpu,
    /// Host clock around blocking submissions.
    Wall,
}

impl TimeSource {
    pub fn name(self) -> &'static str {
        match self {
            TimeSource::Gpu => "gpu-timestamps",
            TimeSource::Wall => "wall-clock",
        }
    }
}

/// The timings of one frame, scopes in the order they were recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameTimings {
    /// The caller's frame number (see [`GpuTimer::begin_frame`]).
    pub frame: u64,
    pub source: TimeSource,
    /// (label, seconds).
    pub scopes: Vec<(String, f64)>,
    /// Scopes recorded untimed, past the timer's capacity: when not zero,
    /// the scopes above cover only part of the frame.
    pub untimed: usize,
}

impl FrameTimings {
    /// Seconds spent in scopes labelled `label` (summed when repeated).
    pub fn get(&self, label: &str) -> Option<f64> {
        let v: Vec<f64> = self
            .scopes
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, t)| *t)
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(v.iter().sum())
        }
    }
}

const MAP_PENDING: u8 = 0;
const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

struct Readback {
    buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
}

struct InFlight {
    frame: u64,
    labels: Vec<String>,
    untimed: usize,
    readback: Readback,
    mapping: bool,
}

struct Queries {
    set: wgpu::QuerySet,
    /// Follow each marker with one into the scratch query (`2 *
    /// MAX_SCOPES`): CPU adapters (see the module docs).
    trailing: bool,
    resolve: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
}

/// Per-stage timing of recorded frames; see the module docs.
pub struct GpuTimer {
    queries: Option<Queries>,
    fallback: Fallback,
    frame: u64,
    labels: Vec<String>,
    untimed: usize,
    wall: Vec<(String, f64)>,
    free: Vec<Readback>,
    in_flight: VecDeque<InFlight>,
    done: Vec<FrameTimings>,
}

impl GpuTimer {
    /// Timestamps when the device has `TIMESTAMP_QUERY`, else `fallback`.
    pub fn new(ctx: &GpuContext, fallback: Fallback) -> GpuTimer {
        let queries = ctx.has_timestamps().then(|| Queries {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("sonoguide.timer"),
                ty: wgpu::QueryType::Timestamp,
                // The markers' and the scratch one.
                count: 2 * MAX_SCOPES + 1,
            }),
            trailing: ctx.info.device_type == wgpu::DeviceType::Cpu,
            resolve: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sonoguide.timer.resolve"),
                size: 16 * (MAX_SCOPES * MAX_SEGMENTS) as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period: ctx.queue.get_timestamp_period() as f64,
        });
        GpuTimer {
            queries,
            fallback,
            ..GpuTimer::off()
        }
    }

    /// A timer whose scopes only record their work: for callers that
    /// share a timed path but want no timing.
    pub fn off() -> GpuTimer {
        GpuTimer {
            queries: None,
            fallback: Fallback::Skip,
            frame: 0,
            labels: Vec::new(),
            untimed: 0,
            wall: Vec::new(),
            free: Vec::new(),
            in_flight: VecDeque::new(),
            done: Vec::new(),
        }
    }

    /// Host-clock timing ([`Fallback::Stall`]) even on an adapter with
    /// timestamps: each stage submitted and waited for alone, as the
    /// `--wall-clock` tables of a software adapter are measured.
    pub fn wall_clock() -> GpuTimer {
        GpuTimer {
            queries: None,
            fallback: Fallback::Stall,
            frame: 0,
            labels: Vec::new(),
            untimed: 0,
            wall: Vec::new(),
            free: Vec::new(),
            in_flight: VecDeque::new(),
            done: Vec::new(),
        }
    }

    /// Where this timer's numbers come from, or `None` when it records
    /// without timing ([`Fallback::Skip`] without timestamps).
    pub fn source(&self) -> Option<TimeSource> {
        match (&self.queries, self.fallback) {
            (Some(_), _) => Some(TimeSource::Gpu),
            (None, Fallback::Stall) => Some(TimeSource::Wall),
            (None, Fallback::Skip) => None,
        }
    }

    /// Start a frame; its timings will carry `frame`.
    pub fn begin_frame(&mut self, frame: u64) {
        self.frame = frame;
        self.labels.clear();
        self.untimed = 0;
        self.wall.clear();
    }

    fn marker(enc: &mut wgpu::CommandEncoder, q: &Queries, index: u32) {
        let indices = [Some(index), q.trailing.then_some(2 * MAX_SCOPES)];
        for i in indices.into_iter().flatten() {
            let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sonoguide.timer.mark"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &q.set,
                    beginning_of_pass_write_index: None,
                    end_of_pass_write_index: Some(i),
                }),
            });
            drop(pass);
        }
    }

    /// Record `f` as the stage `label`. Scopes past the timer's capacity
    /// (2 048 a frame; counted in [`FrameTimings::untimed`]), and scopes
    /// without timestamps under [`Fallback::Skip`], are recorded untimed.
    pub fn scope<R>(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        label: &str,
        f: impl FnOnce(&mut wgpu::CommandEncoder) -> R,
    ) -> R {
        if let Some(q) = &self.queries {
            let n = self.labels.len() as u32;
            if n >= MAX_SCOPES * MAX_SEGMENTS {
                self.untimed += 1;
                return f(enc);
            }
            let (segment, i) = (n / MAX_SCOPES, n % MAX_SCOPES);
            if i == 0 && segment > 0 {
                // The previous segment is full: keep its timestamps before
                // its queries are written again.
                let offset = 16 * ((segment - 1) * MAX_SCOPES) as u64;
                enc.resolve_query_set(&q.set, 0..2 * MAX_SCOPES, &q.resolve, offset);
            }
            Self::marker(enc, q, 2 * i);
            let r = f(enc);
            Self::marker(enc, q, 2 * i + 1);
            self.labels.push(label.to_string());
            return r;
        }
        if self.fallback == Fallback::Skip {
            return f(enc);
        }
        // Wall clock: flush what came before, then time this scope alone.
        // Errors of the waits surface in the caller's own readback.
        let new = || {
            ctx.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("sonoguide.timer.split"),
                })
        };
        let before = std::mem::replace(enc, new());
        ctx.queue.submit([before.finish()]);
        let _ = ctx.wait();
        let t = Instant::now();
        let r = f(enc);
        let work = std::mem::replace(enc, new());
        ctx.queue.submit([work.finish()]);
        let _ = ctx.wait();
        self.wall
            .push((label.to_string(), t.elapsed().as_secs_f64()));
        r
    }

    /// Resolve this frame's timestamps into a mappable buffer (recorded at
    /// the end of `enc`). Call [`GpuTimer::submitted`] after submitting it.
    pub fn finish(&mut self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder) {
        let Some(q) = &self.queries else {
            if !self.wall.is_empty() {
                self.done.push(FrameTimings {
                    frame: self.frame,
                    source: TimeSource::Wall,
                    scopes: std::mem::take(&mut self.wall),
                    untimed: 0,
                });
            }
            return;
        };
        let scopes = self.labels.len() as u32;
        if scopes == 0 {
            return;
        }
        let readback = self.free.pop().unwrap_or_else(|| Readback {
            buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sonoguide.timer.readback"),
                size: 16 * (MAX_SCOPES * MAX_SEGMENTS) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            state: Arc::new(AtomicU8::new(MAP_PENDING)),
        });
        // The last segment (the earlier ones were resolved as they filled).
        let segment = (scopes - 1) / MAX_SCOPES;
        let last = scopes - segment * MAX_SCOPES;
        let offset = 16 * (segment * MAX_SCOPES) as u64;
        enc.resolve_query_set(&q.set, 0..2 * last, &q.resolve, offset);
        enc.copy_buffer_to_buffer(&q.resolve, 0, &readback.buffer, 0, 16 * scopes as u64);
        self.in_flight.push_back(InFlight {
            frame: self.frame,
            labels: std::mem::take(&mut self.labels),
            untimed: std::mem::take(&mut self.untimed),
            readback,
            mapping: false,
        });
    }

    /// The frame(s) finished with [`GpuTimer::finish`] were submitted: start
    /// mapping their results (no wait).
    pub fn submitted(&mut self) {
        for f in self.in_flight.iter_mut().filter(|f| !f.mapping) {
            f.mapping = true;
            f.readback.state.store(MAP_PENDING, Ordering::SeqCst);
            let state = f.readback.state.clone();
            f.readback
                .buffer
                .slice(..)
                .map_async(wgpu::MapMode::Read, move |r| {
                    state.store(
                        if r.is_ok() { MAP_OK } else { MAP_FAILED },
                        Ordering::SeqCst,
                    );
                });
        }
    }

    /// Frames whose timings have arrived, oldest first, without waiting.
    pub fn poll(&mut self, ctx: &GpuContext) -> Result<Vec<FrameTimings>, GpuError> {
        ctx.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| GpuError::Readback {
                label: "timestamps".into(),
                message: e.to_string(),
            })?;
        self.collect()
    }

    /// Wait for every submitted frame's timings.
    pub fn wait(&mut self, ctx: &GpuContext) -> Result<Vec<FrameTimings>, GpuError> {
        if self.in_flight.iter().any(|f| f.mapping) {
            ctx.wait()?;
        }
        self.collect()
    }

    fn collect(&mut self) -> Result<Vec<FrameTimings>, GpuError> {
        let mut out = std::mem::take(&mut self.done);
        while let Some(f) = self.in_flight.front() {
            if !f.mapping {
                break;
            }
            match f.readback.state.load(Ordering::SeqCst) {
                MAP_PENDING => break,
                MAP_FAILED => {
                    self.in_flight.pop_front();
                    return Err(GpuError::Readback {
                        label: "timestamps".into(),
                        message: "mapping the timestamp buffer failed".into(),
                    });
                }
                _ => {}
            }
            let Some(f) = self.in_flight.pop_front() else {
                break;
            };
            let period = self.queries.as_ref().map(|q| q.period).unwrap_or(1.0);
            let n = 2 * f.labels.len();
            let ticks: Vec<u64> = {
                let view = f
                    .readback
                    .buffer
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| GpuError::Readback {
                        label: "timestamps".into(),
                        message: format!("{e:?}"),
                    })?;
                bytemuck::cast_slice::<u8, u64>(&view[..8 * n]).to_vec()
            };
            f.readback.buffer.unmap();
            let scopes: Vec<(String, f64)> = f
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    (
                        l.clone(),
                        ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period * 1e-9,
                    )
                })
                .collect();
            out.push(FrameTimings {
                frame: f.frame,
                source: TimeSource::Gpu,
                scopes,
                untimed: f.untimed,
            });
            self.free.push(f.readback);
        }
        Ok(out)
    }
}
