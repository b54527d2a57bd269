//! The display in a winit window: surface setup and the frame loop's
//! graceful states (resized or minimised, surface outdated or lost,
//! device lost). Every frame goes through [`Display::frame`], the same
//! call headless rendering makes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

use super::{Action, Display, Offscreen, Preset, Scripted};
use crate::gpu::GpuContext;

#[derive(Debug, Clone)]
pub struct WindowOptions {
    pub scene: PathBuf,
    pub preset: Preset,
    pub backend: Option<String>,
    pub size: (u32, u32),
    /// Quit after this many frames (tests, benchmarks).
    pub frames: Option<u64>,
    /// Print a progress line every this many frames (0: never).
    pub progress_every: u64,
    /// Start with the image frozen (after its first frame).
    pub frozen: bool,
    /// Poses from OpenIGTLink (`igtl://HOST:PORT` to a PLUS Server, or
    /// `igtl-server://HOST:PORT` to listen) instead of the scripted
    /// insertion, and the time after which a silent tool is lost (s).
    pub tracking: Option<String>,
    pub tracking_timeout: f64,
    /// Faults to inject, each at a frame: how the tests reach the graceful
    /// states a desktop rarely produces on demand.
    pub faults: Vec<(u64, Fault)>,
}

/// A fault the window can be told to suffer (`view --fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The GPU device goes away (`Device::destroy`, as a driver reset would).
    DeviceLost,
    /// The surface is reported lost: it is recreated on the same device.
    SurfaceLost,
    /// The window is asked to take this inner size.
    Resize(u32, u32),
    /// From this frame on, every surface acquisition fails (as when a
    /// driver stops presenting): the window must give up, not spin.
    SurfaceBroken,
    /// The window is minimised for this many milliseconds: the event the
    /// desktop sends (a 0 × 0 resize), then its size back. Xvfb has no
    /// window manager to iconify a window, so the event is delivered to
    /// the same handler winit's would reach.
    Minimize(u64),
}

impl Fault {
    /// `device-lost@N`, `surface-lost@N`, `surface-broken@N`,
    /// `resize=WxH@N` or `minimize=MS@N` (N: the frame).
    pub fn parse(s: &str) -> Result<(u64, Fault), String> {
        let bad = || {
            format!("--fault {s}: expected device-lost@FRAME, surface-lost@FRAME, surface-broken@FRAME, resize=WIDTHxHEIGHT@FRAME (64 to 8192 each) or minimize=MILLISECONDS@FRAME (1 to 60000)")
        };
        let (kind, frame) = s.rsplit_once('@').ok_or_else(bad)?;
        let frame = frame.parse::<u64>().map_err(|_| bad())?;
        let fault = match kind {
            "device-lost" => Fault::DeviceLost,
            "surface-lost" => Fault::SurfaceLost,
            "surface-broken" => Fault::SurfaceBroken,
            _ if kind.starts_with("minimize=") => {
                let ms = kind["minimize=".len()..]
                    .parse::<u64>()
                    .map_err(|_| bad())?;
                if !(1..=60_000).contains(&ms) {
                    return Err(bad());
                }
                Fault::Minimize(ms)
            }
            _ => {
                let size = kind
                    .strip_prefix("resize=")
                    .and_then(|v| v.split_once('x'))
                    .ok_or_else(bad)?;
                let (w, h) = (
                    size.0.parse::<u32>().map_err(|_| bad())?,
                    size.1.parse::<u32>().map_err(|_| bad())?,
                );
                if !(64..=8192).contains(&w) || !(64..=8192).contains(&h) {
                    return Err(bad());
                }
                Fault::Resize(w, h)
            }
        };
        Ok((frame, fault))
    }
}

/// Why the window could not run; `NoDisplay` means "fall back to headless".
#[derive(Debug)]
pub enum WindowError {
    NoDisplay(String),
    Failed(String),
}

/// What a window run measured.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub frames: u64,
    pub seconds: f64,
    /// B-mode images the chain delivered in that time, how many of them
    /// simulated their tissue (the rest only their needle), and the tissue
    /// renewals done behind them.
    pub images: u64,
    pub tissue_images: u64,
    pub renewals: u64,
    pub stage_times: Vec<(String, f64)>,
}

struct State {
    window: Arc<Window>,
    ctx: GpuContext,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
    display: Display,
    cursor: (f64, f64),
    dragging: bool,
    minimized: bool,
    occluded: bool,
    lost: Arc<Mutex<Option<String>>>,
    /// Frames in a row whose surface texture could not be had.
    surface_failures: u32,
    /// Injected: every acquisition fails ([`Fault::SurfaceBroken`]).
    broken: bool,
    /// Injected minimise: when to restore, and the size to restore.
    restore: Option<(Instant, winit::dpi::PhysicalSize<u32>)>,
    /// Redraws asked for while minimised (none: the loop sleeps).
    redraws_minimized: u64,
    /// The OpenIGTLink endpoint feeding the display, kept alive with it.
    _tracking: Option<crate::tracking::endpoint::Endpoint>,
}

/// Consecutive failed surface acquisitions before the window gives up.
const SURFACE_RETRIES: u32 = 60;

struct App {
    opts: WindowOptions,
    state: Option<State>,
    error: Option<String>,
    frames: u64,
    started: Option<Instant>,
    summary: RunSummary,
    /// The previous frame's end, and the longest frame since the last
    /// progress line: the stall a user sees, which an average hides.
    last: Option<Instant>,
    longest: f64,
}

/// Surface settings, chosen on purpose: a non-sRGB format (grey level g is
/// shown as g: the B-mode's grey map is already perceptual), Mailbox when
/// the driver has it (no tearing through the needle, and the newest frame
/// shown without waiting for vblank), else Fifo (always there, paced by
/// the display). Immediate, which lavapipe lists first, tears.
fn surface_config(
    surface: &wgpu::Surface,
    adapter: &wgpu::Adapter,
    size: (u32, u32),
) -> Result<wgpu::SurfaceConfiguration, String> {
    let caps = surface.get_capabilities(adapter);
    let format = caps
        .formats
        .iter()
        .copied()
        .find(|f| !f.is_srgb())
        .or_else(|| caps.formats.first().copied())
        .ok_or("the window surface offers no colour format")?;
    let present_mode = if caps.present_modes.contains(&wgpu::PresentMode::Mailbox) {
        wgpu::PresentMode::Mailbox
    } else {
        wgpu::PresentMode::Fifo
    };
    Ok(wgpu::SurfaceConfiguration {
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        format,
        width: size.0.max(1),
        height: size.1.max(1),
        present_mode,
        desired_maximum_frame_latency: 2,
        alpha_mode: caps
            .alpha_modes
            .first()
            .copied()
            .unwrap_or(wgpu::CompositeAlphaMode::Auto),
        view_formats: vec![],
        color_space: wgpu::SurfaceColorSpace::Auto,
    })
}

fn key_action(key: &Key) -> Option<Action> {
    Some(match key {
        Key::Named(NamedKey::ArrowUp) => Action::Gain(3.0),
        Key::Named(NamedKey::ArrowDown) => Action::Gain(-3.0),
        Key::Named(NamedKey::ArrowLeft) => Action::Range(-5.0),
        Key::Named(NamedKey::ArrowRight) => Action::Range(5.0),
        Key::Named(NamedKey::PageUp) => Action::Depth(-1.0),
        Key::Named(NamedKey::PageDown) => Action::Depth(1.0),
        Key::Named(NamedKey::Tab) => Action::SwitchApproach,
        Key::Named(NamedKey::Space) => Action::Pause,
        Key::Named(NamedKey::Escape) => Action::Quit,
        Key::Named(NamedKey::F1) => Action::Help,
        Key::Character(c) => match c.to_lowercase().as_str() {
            "1" | "2" | "3" | "4" => Action::TgcBand(c.parse::<usize>().unwrap_or(1) - 1),
            "+" | "=" => Action::Tgc(3.0),
            "-" => Action::Tgc(-3.0),
            "f" => Action::Freeze,
            "n" => Action::Step,
            "r" => Action::ResetCamera,
            "a" => Action::Anatomy,
            "s" => Action::Screenshot,
            "h" => Action::Help,
            "q" => Action::Quit,
            _ => return None,
        },
        _ => return None,
    })
}

impl App {
    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<State, String> {
        let attrs = Window::default_attributes()
            .with_title("sonoguide")
            .with_inner_size(winit::dpi::PhysicalSize::new(
                self.opts.size.0,
                self.opts.size.1,
            ));
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .map_err(|e| format!("cannot open a window: {e}"))?,
        );
        let (ctx, surface) = GpuContext::with_surface(self.opts.backend.as_deref(), window.clone())
            .map_err(|e| e.to_string())?;
        eprintln!("sonoguide: {}", ctx.describe());
        let size = window.inner_size();
        let config = surface_config(&surface, &ctx.adapter, (size.width, size.height))?;
        surface.configure(&ctx.device, &config);
        eprintln!(
            "sonoguide: surface {:?}, {:?}",
            config.format, config.present_mode
        );
        let lost = Arc::new(Mutex::new(None));
        let sink = lost.clone();
        ctx.device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = sink.lock() {
                *l = Some(if message.is_empty() {
                    format!("{reason:?}")
                } else {
                    format!("{reason:?}: {message}")
                });
            }
        });
        let (source, tracking) = pose_source(&self.opts)?;
        let mut display = Display::new(
            &ctx,
            &self.opts.scene,
            self.opts.preset,
            config.format,
            source,
        )?;
        display.controls.frozen = self.opts.frozen;
        Ok(State {
            window,
            ctx,
            surface,
            config,
            display,
            cursor: (0.0, 0.0),
            dragging: false,
            minimized: size.width == 0 || size.height == 0,
            occluded: false,
            lost,
            surface_failures: 0,
            broken: false,
            restore: None,
            redraws_minimized: 0,
            _tracking: tracking,
        })
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, message: String) {
        self.error = Some(message);
        event_loop.exit();
    }

    fn redraw(&mut self, event_loop: &ActiveEventLoop) {
        let Some(s) = self.state.as_mut() else { return };
        s.redraws_minimized += s.minimized as u64;
        let mut surface_lost = false;
        let due: Vec<Fault> = self
            .opts
            .faults
            .iter()
            .filter(|(at, _)| *at == self.frames)
            .map(|(_, f)| *f)
            .collect();
        self.opts.faults.retain(|(at, _)| *at != self.frames);
        for fault in &due {
            eprintln!("sonoguide: frame {}: injecting {fault:?}", self.frames);
            match fault {
                Fault::DeviceLost => s.ctx.device.destroy(),
                Fault::SurfaceLost => surface_lost = true,
                Fault::SurfaceBroken => s.broken = true,
                Fault::Resize(w, h) => {
                    let _ = s
                        .window
                        .request_inner_size(winit::dpi::PhysicalSize::new(*w, *h));
                }
                Fault::Minimize(ms) => {
                    let size = winit::dpi::PhysicalSize::new(s.config.width, s.config.height);
                    s.restore = Some((Instant::now() + Duration::from_millis(*ms), size));
                    s.redraws_minimized = 0;
                    resized(s, winit::dpi::PhysicalSize::new(0, 0));
                }
            }
        }
        // A non-blocking poll each frame: wgpu reports a lost device from
        // its maintenance, and a frame whose surface keeps failing never
        // reaches a submit that would run it.
        let _ = s.ctx.device.poll(wgpu::PollType::Poll);
        if let Some(reason) = s.lost.lock().ok().and_then(|l| l.clone()) {
            let msg = format!("the GPU device was lost ({reason}); the display cannot continue. Restart sonoguide; if it happens again, try another backend (--backend gl) or the headless mode (sonoguide view --headless out.png).");
            return self.fail(event_loop, msg);
        }
        if s.minimized || s.occluded {
            return;
        }
        let current = if surface_lost {
            wgpu::CurrentSurfaceTexture::Lost
        } else if s.broken {
            wgpu::CurrentSurfaceTexture::Validation
        } else {
            s.surface.get_current_texture()
        };
        let texture = match current {
            wgpu::CurrentSurfaceTexture::Success(t) => t,
            wgpu::CurrentSurfaceTexture::Suboptimal(t) => {
                s.display.set_notice("surface suboptimal: reconfigured");
                let r = t;
                s.surface.configure(&s.ctx.device, &s.config);
                r
            }
            wgpu::CurrentSurfaceTexture::Timeout | wgpu::CurrentSurfaceTexture::Occluded => return,
            wgpu::CurrentSurfaceTexture::Outdated => {
                s.surface.configure(&s.ctx.device, &s.config);
                return;
            }
            wgpu::CurrentSurfaceTexture::Lost => {
                // Recreate the surface on the same instance and device.
                match s.ctx.instance.create_surface(s.window.clone()) {
                    Ok(surface) => {
                        surface.configure(&s.ctx.device, &s.config);
                        s.surface = surface;
                        eprintln!("sonoguide: the window surface was lost; recreated");
                        s.display.set_notice("surface lost: recreated");
                    }
                    Err(e) => {
                        return self.fail(
                            event_loop,
                            format!("the window surface was lost and cannot be recreated: {e}"),
                        )
                    }
                }
                return;
            }
            other => {
                // A surface that keeps failing (a validation error, a
                // driver that gave up) would spin here for ever: give up
                // after a second's worth of tries, saying what it was.
                s.surface_failures += 1;
                if s.surface_failures == 1 {
                    log::warn!("surface: {other:?}");
                }
                if s.surface_failures >= SURFACE_RETRIES {
                    let e = s
                        .ctx
                        .take_error("surface")
                        .err()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    return self.fail(event_loop, format!("the window surface failed {SURFACE_RETRIES} times in a row ({other:?}{e}); restart sonoguide, or try another backend (--backend gl) or the headless mode (sonoguide view --headless out.png)"));
                }
                return;
            }
        };
        s.surface_failures = 0;
        let view = texture.texture.create_view(&Default::default());
        let size = (s.config.width, s.config.height);
        match s.display.frame(&s.ctx, &view, size) {
            Ok(cmd) => {
                s.ctx.queue.submit([cmd]);
                s.window.pre_present_notify();
                s.ctx.queue.present(texture);
                s.display.submitted(&s.ctx);
            }
            Err(e) => {
                // Per-frame failures are reported, not fatal.
                log::error!("frame: {e}");
                s.display.set_notice(format!("frame failed: {e}"));
            }
        }
        if let Err(e) = s.ctx.take_error("display") {
            s.display.set_notice(e.to_string());
        }
        if std::mem::take(&mut s.display.screenshot) {
            let path = PathBuf::from(format!("sonoguide-screenshot-{:05}.png", self.frames));
            let shot = Offscreen::new(&s.ctx, size, s.display.format());
            let r = s.display.frame(&s.ctx, &shot.view, size).and_then(|cmd| {
                s.ctx.queue.submit([cmd]);
                s.display.submitted(&s.ctx);
                let px = shot.read(&s.ctx)?;
                crate::io::png::write_rgba(&path, size.0 as usize, size.1 as usize, &px)
                    .map_err(|e| e.to_string())
            });
            s.display.set_notice(match r {
                Ok(()) => format!("screenshot saved to {}", path.display()),
                Err(e) => format!("screenshot failed: {e}"),
            });
        }
        self.frames += 1;
        let now = Instant::now();
        if let Some(last) = self.last.replace(now) {
            self.longest = self.longest.max(now.duration_since(last).as_secs_f64());
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.opts.progress_every > 0 && self.frames.is_multiple_of(self.opts.progress_every) {
            println!(
                "{}",
                s.display
                    .progress_line(self.frames, std::mem::take(&mut self.longest))
            );
        }
        self.summary = RunSummary {
            frames: self.frames,
            seconds: started.elapsed().as_secs_f64(),
            images: s.display.images,
            tissue_images: s.display.tissue_images,
            renewals: s.display.renewals,
            stage_times: s.display.stage_times.clone(),
        };
        if s.display.quit || self.opts.frames.is_some_and(|n| self.frames >= n) {
            event_loop.exit();
        }
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.is_some() {
            return;
        }
        match self.start(event_loop) {
            Ok(s) => {
                s.window.request_redraw();
                self.state = Some(s);
            }
            Err(e) => self.fail(event_loop, e),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::RedrawRequested => self.redraw(event_loop),
            WindowEvent::Resized(size) => {
                if let Some(s) = self.state.as_mut() {
                    resized(s, size);
                }
            }
            WindowEvent::Occluded(hidden) => {
                if let Some(s) = self.state.as_mut() {
                    s.occluded = hidden;
                }
            }
            WindowEvent::KeyboardInput { event, .. } if event.state == ElementState::Pressed => {
                let Some(s) = self.state.as_mut() else { return };
                if let Some(a) = key_action(&event.logical_key) {
                    if let Err(e) = s.display.apply(&s.ctx, a) {
                        s.display.set_notice(e);
                    }
                }
            }
            WindowEvent::MouseInput {
                state,
                button: MouseButton::Left,
                ..
            } => {
                if let Some(s) = self.state.as_mut() {
                    s.dragging = state == ElementState::Pressed;
                }
            }
            WindowEvent::CursorMoved { position, .. } => {
                if let Some(s) = self.state.as_mut() {
                    let (dx, dy) = (position.x - s.cursor.0, position.y - s.cursor.1);
                    s.cursor = (position.x, position.y);
                    if s.dragging {
                        s.display.camera.drag(dx, dy);
                    }
                }
            }
            WindowEvent::MouseWheel { delta, .. } => {
                if let Some(s) = self.state.as_mut() {
                    s.display.camera.zoom(match delta {
                        MouseScrollDelta::LineDelta(_, y) => y as f64,
                        MouseScrollDelta::PixelDelta(p) => p.y / 40.0,
                    });
                }
            }
            _ => {}
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        // Continuous redraw: the insertion plays and the image chain runs;
        // minimised or hidden, sleep until something happens instead.
        if let Some(s) = self.state.as_mut() {
            if let Some((at, size)) = s.restore {
                if Instant::now() < at {
                    event_loop.set_control_flow(ControlFlow::WaitUntil(at));
                    return;
                }
                s.restore = None;
                resized(s, size);
                eprintln!(
                    "sonoguide: restored to {}x{} after the minimise; {} redraws while minimised",
                    size.width, size.height, s.redraws_minimized
                );
            }
            if s.minimized || s.occluded {
                event_loop.set_control_flow(ControlFlow::Wait);
            } else {
                event_loop.set_control_flow(ControlFlow::Poll);
                s.window.request_redraw();
            }
        }
    }
}

/// A new window size: 0 × 0 is how desktops say "minimised" (the surface
/// cannot be configured at that size, and nothing is drawn until it grows).
fn resized(s: &mut State, size: winit::dpi::PhysicalSize<u32>) {
    s.minimized = size.width == 0 || size.height == 0;
    if !s.minimized {
        s.config.width = size.width;
        s.config.height = size.height;
        s.surface.configure(&s.ctx.device, &s.config);
    }
}

/// Whether this process can reach a display server at all.
pub fn have_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Open the window and run until it is closed (or `opts.frames`).
pub fn run(opts: WindowOptions) -> Result<RunSummary, WindowError> {
    if !have_display() {
        return Err(WindowError::NoDisplay(
            "no DISPLAY or WAYLAND_DISPLAY is set".into(),
        ));
    }
    let event_loop = EventLoop::new().map_err(|e| {
        // winit's text names its own source file ("os error at
        // .../linux/mod.rs:788: Failed to open ..."): keep what it says.
        let text = e.to_string();
        let what = match text.strip_prefix("os error at ") {
            Some(rest) => rest.rsplit_once(": ").map_or(rest, |(_, m)| m).to_string(),
            None => text,
        };
        let display = std::env::var("DISPLAY").unwrap_or_default();
        WindowError::NoDisplay(format!("cannot connect to the display `{display}`: {what}"))
    })?;
    event_loop.set_control_flow(ControlFlow::Poll);
    let mut app = App {
        opts,
        state: None,
        error: None,
        frames: 0,
        started: None,
        summary: RunSummary::default(),
        last: None,
        longest: 0.0,
    };
    event_loop
        .run_app(&mut app)
        .map_err(|e| WindowError::Failed(e.to_string()))?;
    match app.error {
        Some(e) if app.frames == 0 && e.starts_with("cannot open a window") => {
            Err(WindowError::NoDisplay(e))
        }
        Some(e) => Err(WindowError::Failed(e)),
        None => Ok(app.summary),
    }
}

/// The display's pose source: the scene's scripted insertion, or an
/// OpenIGTLink endpoint (started here, before the first frame, so that a
/// port already in use is an error, not a silent scripted run).
fn pose_source(
    opts: &WindowOptions,
) -> Result<
    (
        Box<dyn super::PoseSource>,
        Option<crate::tracking::endpoint::Endpoint>,
    ),
    String,
> {
    use crate::tracking::endpoint::{Endpoint, EndpointConfig, Mode};
    let Some(url) = &opts.tracking else {
        return Ok((Box::new(Scripted), None));
    };
    let mode = Mode::parse(url).ok_or_else(|| format!("--tracking {url}: expected igtl://HOST:PORT (a PLUS Server) or igtl-server://HOST:PORT (listen)"))?;
    let scene = crate::scene::Scene::load(&opts.scene).map_err(|e| e.to_string())?;
    let config = EndpointConfig {
        timeout: opts.tracking_timeout,
        ..Default::default()
    };
    let endpoint =
        Endpoint::start(mode, config, scene.probe_to_reference).map_err(|e| e.to_string())?;
    eprintln!("sonoguide: poses from {url}");
    Ok((
        Box::new(super::Tracked(Box::new(endpoint.source()))),
        Some(endpoint),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(Fault::parse("device-lost@20"), Ok((20, Fault::DeviceLost)));
        assert_eq!(
            Fault::parse("resize=400x240@80"),
            Ok((80, Fault::Resize(400, 240)))
        );
        assert_eq!(
            Fault::parse("minimize=1500@60"),
            Ok((60, Fault::Minimize(1500)))
        );
        for bad in [
            "minimize=0@5",
            "minimize=x@5",
            "minimize=1500",
            "resize=10x10@1",
            "melt@3",
        ] {
            let e = Fault::parse(bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("minimize=MILLISECONDS@FRAME"),
                "{e}"
            );
        }
    }
}
