//! The real window under Xvfb: `sonoguide view` runs a few hundred frames
//! on a virtual X server, the root window is grabbed (through libX11, so no
//! screenshot tool is needed) while it runs, and the composite is found in
//! it. Skips with a message when Xvfb is not installed.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// The root window's pixels as [r, g, b] rows.
fn grab_root(display: &str, w: u32, h: u32) -> Vec<[u8; 3]> {
    let xlib = x11_dl::xlib::Xlib::open().expect("libX11 (apt-get install libx11-6)");
    let name = CString::new(display).unwrap();
    unsafe {
        let dpy = (xlib.XOpenDisplay)(name.as_ptr());
        assert!(!dpy.is_null(), "cannot open X display {display}");
        let root = (xlib.XDefaultRootWindow)(dpy);
        let img = (xlib.XGetImage)(dpy, root, 0, 0, w, h, !0, x11_dl::xlib::ZPixmap);
        assert!(!img.is_null(), "XGetImage failed");
        let im = &*img;
        assert_eq!(im.bits_per_pixel, 32, "expected a 24/32-bit visual");
        let shift = |m: u64| m.trailing_zeros();
        let (rs, gs, bs) = (
            shift(im.red_mask),
            shift(im.green_mask),
            shift(im.blue_mask),
        );
        let mut out = Vec::with_capacity((w * h) as usize);
        for y in 0..h as isize {
            for x in 0..w as isize {
                let p =
                    *(im.data.offset(y * im.bytes_per_line as isize + 4 * x) as *const u32) as u64;
                out.push([
                    ((p & im.red_mask) >> rs) as u8,
                    ((p & im.green_mask) >> gs) as u8,
                    ((p & im.blue_mask) >> bs) as u8,
                ]);
            }
        }
        (xlib.XDestroyImage)(img);
        (xlib.XCloseDisplay)(dpy);
        out
    }
}

/// A virtual X server on a display number of our own; killed when dropped.
struct Xvfb {
    display: String,
    _server: Kill,
}

impl Xvfb {
    /// Xvfb picks a free display itself (`-displayfd`) and names it once it
    /// accepts connections. Choosing one here and waiting for its socket
    /// was fooled by sockets that killed servers leave behind: the new
    /// server refused the taken number, the socket was there all the same,
    /// and the view found no X server.
    fn start((w, h): (u32, u32)) -> Option<Xvfb> {
        if !have("Xvfb") {
            eprintln!("SKIPPED: Xvfb is not installed (apt-get install xvfb)");
            return None;
        }
        let mut server = Kill(
            Command::new("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-screen",
                    "0",
                    &format!("{w}x{h}x24"),
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb"),
        );
        let out = server.0.stdout.take().expect("Xvfb's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("Xvfb did not name its display within 20 s");
        let n: u32 = line.trim().parse().unwrap_or_else(|_| {
            panic!("Xvfb -displayfd wrote {line:?}, expected a display number")
        });
        Some(Xvfb {
            display: format!(":{n}"),
            _server: server,
        })
    }

    /// `sonoguide view ARGS` in a window on this server, stdout piped.
    fn view(&self, args: &[&str]) -> Kill {
        Kill(
            Command::new(env!("CARGO_BIN_EXE_sonoguide"))
                .arg("view")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("DISPLAY", &self.display)
                .env_remove("WAYLAND_DISPLAY")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sonoguide view"),
        )
    }
}

/// Run the view to its end, grabbing the root window when a stdout line
/// starts with `grab_at`; returns the exit status, stdout and stderr
/// lines, and the grab.
fn run_view(
    x: &Xvfb,
    args: &[&str],
    grab_at: &str,
    screen: (u32, u32),
) -> (
    std::process::ExitStatus,
    Vec<String>,
    String,
    Option<Vec<[u8; 3]>>,
) {
    let mut app = x.view(args);
    let stderr = app.0.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut shot = None;
    let mut lines = Vec::new();
    for line in BufReader::new(app.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("{line}");
        if shot.is_none() && line.starts_with(grab_at) {
            shot = Some(grab_root(&x.display, screen.0, screen.1));
        }
        lines.push(line);
    }
    let status = app.0.wait().unwrap();
    let stderr = err.join().unwrap();
    eprint!("{stderr}");
    (status, lines, stderr, shot)
}

fn save_png(name: &str, px: &[[u8; 3]], (w, h): (u32, u32)) -> std::path::PathBuf {
    let _ = std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR"));
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let rgba: Vec<u32> = px
        .iter()
        .map(|p| p[0] as u32 | (p[1] as u32) << 8 | (p[2] as u32) << 16 | 0xff00_0000)
        .collect();
    let _ = sonoguide::io::png::write_rgba(&path, w as usize, h as usize, &rgba);
    path
}

const BACKGROUND: [u8; 3] = [18, 20, 26];

fn close(p: [u8; 3], q: [u8; 3]) -> bool {
    p.iter()
        .zip(q)
        .all(|(a, b)| (*a as i32 - b as i32).abs() <= 2)
}

#[test]
fn window_shows_the_composite_under_xvfb() {
    let (sw, sh) = (800u32, 480u32);
    let Some(x) = Xvfb::start((sw, sh)) else {
        return;
    };
    let frames = 300;
    let (status, lines, stderr, shot) = run_view(
        &x,
        &[
            "--size",
            "640x360",
            "--frames",
            &frames.to_string(),
            "--progress",
            "50",
        ],
        "frame 200 ",
        (sw, sh),
    );
    assert!(
        status.success(),
        "sonoguide view failed: {status}\n{}\n{stderr}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{frames} frames in"))),
        "no summary line:\n{}",
        lines.join("\n")
    );
    let px = shot.expect("the window reached frame 200");
    let path = save_png("window-root.png", &px, (sw, sh));

    // The window sits at the root's origin (no window manager). Find its
    // parts: the background, the divider between the views, the B-mode's
    // greys in the right half, the green target.
    let (w, h) = (640usize, 360usize);
    let at = |x: usize, y: usize| px[y * sw as usize + x];
    let background = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| close(at(x, y), BACKGROUND))
        .count();
    assert!(
        background > w * h / 5,
        "the display's background fills much of the window ({background} px); screenshot: {}",
        path.display()
    );
    let divider = (0..h)
        .filter(|&y| close(at(w / 2, y), [77, 77, 89]) || close(at(w / 2, y), [76, 76, 89]))
        .count();
    assert!(
        divider > h / 2,
        "the divider between the 3D and 2D views ({divider} px); screenshot: {}",
        path.display()
    );
    let greys = (0..h)
        .flat_map(|y| (w / 2 + 2..w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = at(x, y);
            p[0] == p[1] && p[1] == p[2] && p[0] > 40
        });
    assert!(
        greys.count() > 200,
        "B-mode speckle in the 2D view; screenshot: {}",
        path.display()
    );
    let green = (0..h)
        .flat_map(|y| (w / 2..w).map(move |x| (x, y)))
        .filter(|&(x, y)| close(at(x, y), [51, 255, 77]) || close(at(x, y), [51, 255, 76]))
        .count();
    assert!(
        green > 10,
        "the target marker in the 2D view; screenshot: {}",
        path.display()
    );
}

/// The graceful states, reached on demand by `view --fault`: a lost surface
/// is recreated and a resize followed, and the window keeps drawing; a lost
/// device or a surface that keeps failing ends the run with a message that
/// says what to do, a non-zero exit and no panic.
#[test]
fn window_recovers_from_surface_loss_resize_and_minimise_and_reports_device_loss() {
    let (sw, sh) = (800u32, 480u32);
    let Some(x) = Xvfb::start((sw, sh)) else {
        return;
    };
    let args = [
        "--size",
        "640x360",
        "--frames",
        "200",
        "--progress",
        "50",
        "--fault",
        "surface-lost@40",
        "--fault",
        "resize=400x240@80",
        "--fault",
        "surface-lost@120",
    ];
    let (status, lines, stderr, shot) = run_view(&x, &args, "frame 150 ", (sw, sh));
    assert!(
        status.success(),
        "sonoguide view failed: {status}\n{}\n{stderr}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.starts_with("200 frames in")),
        "drew every frame: {}",
        lines.join("\n")
    );
    assert_eq!(
        stderr.matches("surface was lost; recreated").count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The window now covers 400 × 240: the display fills it, divider in
    // the middle, and nothing of it is left outside.
    let px = shot.expect("the window reached frame 150");
    let path = save_png("window-resized-root.png", &px, (sw, sh));
    let at = |x: u32, y: u32| px[(y * sw + x) as usize];
    let inside = (0..240)
        .flat_map(|y| (0..400).map(move |x| (x, y)))
        .filter(|&(x, y)| close(at(x, y), BACKGROUND))
        .count();
    let outside = (0..sh)
        .flat_map(|y| (420..sw).map(move |x| (x, y)))
        .filter(|&(x, y)| close(at(x, y), BACKGROUND))
        .count();
    assert!(inside > 400 * 240 / 5 && outside == 0, "resized window: {inside} background px inside 400x240, {outside} right of it; screenshot: {}", path.display());
    let divider = (0..240)
        .filter(|&y| close(at(200, y), [77, 77, 89]) || close(at(200, y), [76, 76, 89]))
        .count();
    assert!(
        divider > 120,
        "the divider follows the new width ({divider} px); screenshot: {}",
        path.display()
    );

    for (fault, want) in [
        ("device-lost@20", "the GPU device was lost"),
        (
            "surface-broken@20",
            "the window surface failed 60 times in a row",
        ),
    ] {
        let (status, lines, stderr, _) = run_view(
            &x,
            &["--size", "320x180", "--frames", "200", "--fault", fault],
            "never",
            (sw, sh),
        );
        assert!(
            !status.success(),
            "{fault}: the run should fail\n{}",
            lines.join("\n")
        );
        assert!(
            stderr.contains(want) && stderr.to_lowercase().contains("restart sonoguide"),
            "{fault}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{fault}: {stderr}");
        assert!(
            !lines.iter().any(|l| l.contains("frames in")),
            "{fault}: no summary of a run that failed"
        );
    }

    // Minimised for 1.5 s at frame 60: nothing is drawn and the loop
    // sleeps (no redraw is even asked for), then the window comes back at
    // its size and draws the rest.
    let started = std::time::Instant::now();
    let (status, lines, stderr, shot) = run_view(
        &x,
        &[
            "--size",
            "640x360",
            "--frames",
            "160",
            "--progress",
            "40",
            "--fault",
            "minimize=1500@60",
        ],
        "frame 120 ",
        (sw, sh),
    );
    assert!(
        status.success(),
        "minimise: {status}\n{}\n{stderr}",
        lines.join("\n")
    );
    assert!(
        stderr.contains("restored to 640x360 after the minimise; 0 redraws while minimised"),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("160 frames in")),
        "{}",
        lines.join("\n")
    );
    assert!(
        started.elapsed().as_secs_f64() >= 1.5,
        "the run waited out the minimise"
    );
    let px = shot.expect("the window reached frame 120");
    let path = save_png("window-restored-root.png", &px, (sw, sh));
    let at = |x: u32, y: u32| px[(y * sw + x) as usize];
    let inside = (0..360)
        .flat_map(|y| (0..640).map(move |x| (x, y)))
        .filter(|&(x, y)| close(at(x, y), BACKGROUND))
        .count();
    assert!(
        inside > 640 * 360 / 5,
        "after the minimise the display fills 640x360 again ({inside} background px); screenshot: {}",
        path.display()
    );
}

#[test]
/// Run with no arguments from a directory with no scenes in it (the
/// default scene is built in), and no display.
fn without_a_display_view_says_so_and_renders_headless() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["view", "--size", "320x180"])
        .current_dir(dir.path())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no GPU adapter") && std::env::var("CI").is_err() {
        eprintln!("SKIPPED: no GPU adapter");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no display") && stderr.contains("sonoguide-view.png"),
        "should say there is no display and where the PNG goes: {stderr}"
    );
    assert!(dir.path().join("sonoguide-view.png").exists());
}

#[test]
fn view_rejects_bad_arguments_with_the_fix() {
    for (args, want) in [
        (vec!["view", "--preset", "best"], "expected `auto`"),
        (vec!["view", "--size", "big"], "WIDTHxHEIGHT"),
        (
            vec!["view", "--tissue-tolerance", "-0.5", "--headless", "x.png"],
            "--tissue-tolerance -0.5: expected a distance in mm",
        ),
        (
            vec!["view", "--tissue-tolerance", "NaN", "--headless", "x.png"],
            "--tissue-tolerance NaN",
        ),
        (
            vec!["view", "nope.toml", "--headless", "x.png"],
            "no such scene file",
        ),
        // A frame larger than the adapter reads back (lavapipe's storage
        // bindings stop at 128 MiB), refused before the chain runs.
        (
            vec!["view", "--size", "8192x8192", "--headless", "x.png"],
            "give a smaller --size",
        ),
        (
            vec!["view", "--headless", "no-such-dir/x.png"],
            "does not exist",
        ),
        (
            vec!["view", "--tracking", "tcp://127.0.0.1:18944"],
            "expected igtl://HOST:PORT",
        ),
        (
            vec![
                "view",
                "--tracking",
                "igtl://127.0.0.1:18944",
                "--tracking-timeout",
                "0",
            ],
            "positive number of seconds",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("no GPU adapter") && std::env::var("CI").is_err() {
            eprintln!("SKIPPED {args:?}: no GPU adapter");
            continue;
        }
        assert!(
            !out.status.success() && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

/// The frame loop without a window (`--headless --frames`), as a GPU
/// machine with no display server measures it: it runs the frames, prints
/// the progress and summary lines, writes the last frame, and refuses
/// --wall-clock with it.
#[test]
fn headless_frame_loop_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("loop.png");
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args([
            "view",
            "--headless",
            png.to_str().unwrap(),
            "--size",
            "320x180",
            "--frames",
            "30",
            "--progress",
            "10",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no GPU adapter") && std::env::var("CI").is_err() {
        eprintln!("SKIPPED: no GPU adapter");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    for n in [10, 20, 30] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("frame {n} "))
                && l.contains(" fps ")
                && l.contains("composite=")),
            "progress line for frame {n}:\n{stdout}"
        );
    }
    // "N frames in S s: F frames/s, I B-mode images (...": the frames run
    // and the images drawn.
    let summary = |stdout: &str| -> (u64, u64) {
        let l = stdout
            .lines()
            .find(|l| l.contains(" frames in ") && l.contains(" B-mode images"))
            .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
        let frames = l.split(' ').next().unwrap().parse().unwrap();
        let images = l.split(", ").nth(1).unwrap().split(' ').next().unwrap();
        (frames, images.parse().unwrap())
    };
    let (frames, images) = summary(&stdout);
    assert!(frames >= 30 && images >= 1, "{stdout}");
    let img = image_size(&png);
    assert_eq!(img, (320, 180), "the last frame, at the asked size");
    // Too few frames for the first image: the loop runs on until it is
    // drawn, and says so, rather than writing a PNG with no B-mode.
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["view", "--headless", png.to_str().unwrap()])
        .args(["--size", "320x180", "--frames", "2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no B-mode image yet after 2 frames"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (frames, images) = summary(&stdout);
    assert!(frames > 2 && images == 1, "{stdout}");
    let refused = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args([
            "view",
            "--headless",
            png.to_str().unwrap(),
            "--frames",
            "3",
            "--wall-clock",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr)
                .contains("--wall-clock times the stages of one frame")
    );
    // One frame with --wall-clock: the stages of an image that simulates
    // its tissue, of one that keeps it, and of one that keeps it while a
    // renewal (its `renew` share) runs behind; with a tolerance of -1, the
    // first only, and with --renew-frames 0, the first two.
    let timed = |extra: &[&str]| -> String {
        let mut args = vec![
            "view",
            "--headless",
            png.to_str().unwrap(),
            "--size",
            "320x180",
            "--wall-clock",
        ];
        args.extend(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let image_line = |out: &str, what: &str| {
        out.lines().any(|l| {
            l.starts_with(&format!("  image, tissue {what} (wall-clock): "))
                && l.contains(" simulate ")
                && l.contains(" das ")
                && l.contains(" composite ")
        })
    };
    let renewing = |out: &str| {
        image_line(out, "renewing")
            && out
                .lines()
                .any(|l| l.starts_with("  image, tissue renewing") && l.contains(" renew "))
    };
    let all = timed(&[]);
    assert!(
        image_line(&all, "simulated") && image_line(&all, "kept") && renewing(&all),
        "{all}"
    );
    let two = timed(&["--renew-frames", "0"]);
    assert!(
        image_line(&two, "simulated") && image_line(&two, "kept") && !renewing(&two),
        "{two}"
    );
    let one = timed(&["--tissue-tolerance", "-1"]);
    assert!(
        image_line(&one, "simulated") && !image_line(&one, "kept") && !renewing(&one),
        "{one}"
    );
}

/// Width and height from a PNG's IHDR.
fn image_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    (be(16), be(20))
}
