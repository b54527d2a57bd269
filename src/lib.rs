//! sonoguide: a GPU ultrasound imaging engine.
//!
//! Channel data (read from UFF or MUST files, later simulated or streamed)
//! go through WGSL compute shaders, one per stage, left to right with no
//! trip back to the CPU between stages:
//!
//! ```text
//! channel data ─► demodulate ─► das ─► detect ─► scan_convert ─► PNG / display
//! ```
//!
//! - [`acquisition`]: probes, waves, channel data, pixel grids (and the one
//!   place where MUST's time zero is mapped onto UFF's).
//! - [`gpu`]: adapter choice, buffers, readback, the embedded shaders.
//! - [`pipeline`]: one module per stage; [`pipeline::Beamformer`] records a
//!   whole frame.
//! - [`reference`]: the CPU twin of every stage.
//! - [`io`]: UFF, MAT, NPY, PNG.
//! - [`scene`]: scene files (hip anatomy, probe, needle, approach, poses)
//!   and the renderer of scripted insertions.
//! - [`bench`]: `sonoguide bench` and `sonoguide hfr`, the benchmark harness.
//! - [`render`]: the real-time display (3D + 2D composite), window and
//!   headless.
//! - [`tracking`]: pose sources (scripted, recorded, OpenIGTLink) and the
//!   OpenIGTLink endpoint that takes tracked poses in and sends images out.
//! - [`cli`]: the `sonoguide` command.

pub mod acquisition;
pub mod bench;
pub mod cli;
pub mod gpu;
pub mod io;
pub mod metrics;
pub mod pipeline;
pub mod reference;
pub mod render;
pub mod scene;
pub mod sim;
pub mod tracking;
