//! Device choice, buffers and readback.
//!
//! A hardware adapter is preferred; a software one (Mesa's lavapipe on
//! Vulkan, llvmpipe on GL) is the fallback so that every machine, CI
//! included, runs the same shaders. `--backend` or `WGPU_BACKEND` restricts
//! the backends searched.

pub mod shaders;
pub mod timing;

use std::sync::{Arc, Mutex};

use thiserror::Error;
use wgpu::util::DeviceExt;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found (backends searched: {backends}).\n\
         On a machine without a GPU install Mesa's software drivers:\n    \
         apt-get install mesa-vulkan-drivers libvulkan1   (Vulkan, lavapipe)\n\
         or libgl1-mesa-dri libegl1 for OpenGL, then run with WGPU_BACKEND=vulkan or gl."
    )]
    NoAdapter { backends: String },
    #[error("unknown backend `{0}`: expected vulkan, gl, metal, dx12 or a comma list of these")]
    UnknownBackend(String),
    #[error("WGPU_BACKEND={0}: expected vulkan, gl, metal, dx12 or a comma list of these (unset it to search them all)")]
    UnknownBackendEnv(String),
    #[error("the adapter `{adapter}` refused a device: {source}")]
    Device {
        adapter: String,
        source: wgpu::RequestDeviceError,
    },
    #[error("GPU validation error in {stage}: {message}")]
    Validation { stage: String, message: String },
    #[error("reading back `{label}` failed: {message}")]
    Readback { label: String, message: String },
    #[error("cannot create a window surface: {0}. Run headless instead (sonoguide view --headless out.png).")]
    Surface(String),
    #[error("{what} needs a {bytes}-byte buffer; this adapter allows at most {limit} bytes per storage binding. Make the job smaller: fewer pixels, frames (--frames) or waves, or fewer samples (a shallower depth).")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
}

/// The backends to search: `--backend` when given, else `WGPU_BACKEND`,
/// else all of them.
pub fn backends_to_search(backend: Option<&str>) -> Result<wgpu::Backends, GpuError> {
    match backend {
        Some(s) => parse_backends(s),
        None => match std::env::var("WGPU_BACKEND") {
            Ok(s) if !s.trim().is_empty() => {
                parse_backends(&s).map_err(|_| GpuError::UnknownBackendEnv(s))
            }
            _ => Ok(wgpu::Backends::all()),
        },
    }
}

/// Parse a backend list the way `WGPU_BACKEND` is read, but reject typos
/// instead of silently ignoring them.
pub fn parse_backends(s: &str) -> Result<wgpu::Backends, GpuError> {
    let mut b = wgpu::Backends::empty();
    for part in s.split(',') {
        b |= match part.trim().to_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "any" | "all" | "primary" => wgpu::Backends::all(),
            other => return Err(GpuError::UnknownBackend(other.to_string())),
        };
    }
    Ok(b)
}

pub struct GpuContext {
    /// Kept so that a window can recreate a lost surface.
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Uncaptured errors land here (one place) instead of panicking.
    errors: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    /// `backend`: the CLI's `--backend`; when `None`, `WGPU_BACKEND` decides,
    /// else every backend is searched.
    pub fn new(backend: Option<&str>) -> Result<GpuContext, GpuError> {
        Self::build(
            backend,
            wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
            None,
        )
        .map(|(ctx, _)| ctx)
    }

    /// As [`GpuContext::new`], for a window: the instance knows the
    /// window's display (GL needs it), the surface is created on it, and
    /// only adapters that can present to it are considered.
    pub fn with_surface<W>(
        backend: Option<&str>,
        window: W,
    ) -> Result<(GpuContext, wgpu::Surface<'static>), GpuError>
    where
        W: wgpu::WindowHandle + wgpu::rwh::HasDisplayHandle + std::fmt::Debug + Clone + 'static,
    {
        let desc =
            wgpu::InstanceDescriptor::new_with_display_handle_from_env(Box::new(window.clone()));
        let (ctx, surface) = Self::build(backend, desc, Some(wgpu::SurfaceTarget::from(window)))?;
        Ok((
            ctx,
            surface.ok_or_else(|| GpuError::Surface("no surface was created".into()))?,
        ))
    }

    fn build(
        backend: Option<&str>,
        mut desc: wgpu::InstanceDescriptor,
        window: Option<wgpu::SurfaceTarget<'static>>,
    ) -> Result<(GpuContext, Option<wgpu::Surface<'static>>), GpuError> {
        let backends = backends_to_search(backend)?;
        desc.backends = backends;
        // Validation costs and Debian's layers are too old for naga's SPIR-V.
        if std::env::var("WGPU_DEBUG")
            .map(|v| v == "1")
            .unwrap_or(false)
        {
            desc.flags |= wgpu::InstanceFlags::VALIDATION | wgpu::InstanceFlags::DEBUG;
        } else {
            desc.flags &= !(wgpu::InstanceFlags::VALIDATION | wgpu::InstanceFlags::DEBUG);
        }
        let instance = wgpu::Instance::new(desc);
        let surface = window
            .map(|w| instance.create_surface(w))
            .transpose()
            .map_err(|e| GpuError::Surface(e.to_string()))?;
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        // Hardware first (discrete, then integrated, virtual), software last.
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let adapter = adapters
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .filter(|a| surface.as_ref().is_none_or(|s| a.is_surface_supported(s)))
            .min_by_key(|a| {
                let i = a.get_info();
                (
                    rank(i.device_type),
                    if i.backend == wgpu::Backend::Vulkan {
                        0
                    } else {
                        1
                    },
                )
            })
            .ok_or_else(|| GpuError::NoAdapter {
                backends: format!("{backends:?}"),
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sonoguide"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|source| GpuError::Device {
            adapter: info.name.clone(),
            source,
        })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::debug!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Ok((
            GpuContext {
                instance,
                adapter,
                device,
                queue,
                info,
                errors,
            },
            surface,
        ))
    }

    /// One line for the user: which adapter runs the shaders.
    pub fn describe(&self) -> String {
        let kind = match self.info.device_type {
            wgpu::DeviceType::Cpu => "software",
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Other => "other",
        };
        format!(
            "{} ({:?}, {kind}, driver {} {})",
            self.info.name, self.info.backend, self.info.driver, self.info.driver_info
        )
    }

    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Errors raised since the last call, attributed to `stage`.
    pub fn take_error(&self, stage: &str) -> Result<(), GpuError> {
        let mut v = self.errors.lock().map_err(|_| GpuError::Validation {
            stage: stage.into(),
            message: "error sink poisoned".into(),
        })?;
        if v.is_empty() {
            return Ok(());
        }
        let message = v.join("; ");
        v.clear();
        Err(GpuError::Validation {
            stage: stage.into(),
            message,
        })
    }

    pub fn max_binding(&self) -> u64 {
        let l = self.device.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// The largest buffer: one bound a region at a time may exceed a
    /// binding ([`GpuContext::storage_regions`]).
    pub fn max_buffer(&self) -> u64 {
        self.device.limits().max_buffer_size
    }

    fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        self.check_size_against(what, bytes, self.max_binding())
    }

    fn check_size_against(&self, what: &str, bytes: u64, limit: u64) -> Result<(), GpuError> {
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: what.into(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// A storage buffer initialised with `data` (at least 4 bytes: wgpu
    /// rejects empty bindings).
    pub fn storage_from<T: bytemuck::Pod>(
        &self,
        label: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_size(label, bytes.len() as u64)?;
        let contents: Vec<u8> = if bytes.len() < 4 {
            vec![0; 4]
        } else {
            bytes.to_vec()
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// An uninitialised storage buffer of `bytes` that can be read back.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(label, bytes)?;
        Ok(self.storage_unchecked(label, bytes))
    }

    /// A storage buffer that is bound a region at a time, each region
    /// within a binding's size: the whole may be as large as a buffer.
    pub fn storage_regions(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_size_against(label, bytes, self.max_buffer())?;
        Ok(self.storage_unchecked(label, bytes))
    }

    fn storage_unchecked(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copy `count` elements of `buffer` to the host. This waits for the GPU:
    /// call it at the end of a frame, never between stages.
    pub fn read_buffer<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<T>, GpuError> {
        let label = "readback";
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sonoguide.readback"),
            size: bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.readback"),
            });
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes.next_multiple_of(4));
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback {
                label: label.into(),
                message: e.to_string(),
            })?;
        rx.recv()
            .map_err(|e| GpuError::Readback {
                label: label.into(),
                message: e.to_string(),
            })?
            .map_err(|e| GpuError::Readback {
                label: label.into(),
                message: e.to_string(),
            })?;
        let view = slice.get_mapped_range().map_err(|e| GpuError::Readback {
            label: label.into(),
            message: format!("{e:?}"),
        })?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Wait for all submitted work (benchmarks and tests only).
    pub fn wait(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Readback {
                label: "poll".into(),
                message: e.to_string(),
            })
    }
}

/// Workgroup counts for `n` invocations of size `wg`, folded into 2-D when
/// `n` exceeds the per-dimension limit (65535 on most adapters).
pub fn dispatch_size(n: u32, wg: u32) -> (u32, u32) {
    let groups = n.div_ceil(wg).max(1);
    if groups <= 65535 {
        (groups, 1)
    } else {
        let y = groups.div_ceil(65535);
        (groups.div_ceil(y), y)
    }
}
