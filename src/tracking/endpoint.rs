//! The OpenIGTLink endpoint: a client of a PLUS Server (or any
//! OpenIGTLink server), or a server that OpenIGTLink clients such as 3D
//! Slicer connect to. Either way each connection is read by one thread
//! (TRANSFORM / POSITION / STATUS in, into the tools' [`ToolTrack`]s) and
//! written by another (IMAGE and TRANSFORM out, from a short per-peer
//! queue).
//!
//! Every fault a peer can cause ends in a log line and, at worst, that
//! connection closing: a malformed header or a body declared over its
//! type's limit closes it (the stream cannot be resynchronised); a wrong
//! CRC or a malformed body drops the one message; a message that stalls
//! half-way for longer than `stall` closes it; a slow reader loses the
//! oldest queued frames rather than growing a queue. Memory per
//! connection is bounded by the body limits and the queue length, and the
//! number of connections by `max_clients`. The client reconnects with a
//! back-off; the server keeps accepting. Nothing here blocks the caller:
//! [`Endpoint::publish`] only queues, and [`PoseSource::poses_at`] only
//! reads the tracks.

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::igtl::{self, Content, Header, Message, HEADER_SIZE};
use super::{PoseSource, Sample, ToolNames, ToolTrack, TrackedPoses, TrackingError};
use crate::scene::pose::Pose;

/// How the endpoint behaves; [`EndpointConfig::default`] is what the CLI
/// uses unless told otherwise.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub names: ToolNames,
    /// A tool whose newest valid sample is older than this is lost (s).
    pub timeout: f64,
    /// A message whose first byte arrived must be whole within this.
    pub stall: Duration,
    pub max_clients: usize,
    /// Outgoing messages queued per peer before the oldest is dropped.
    pub max_pending: usize,
    /// Header version sent before a peer has spoken (then: the peer's).
    pub send_version: u16,
    /// Samples kept per tool.
    pub history: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            names: ToolNames::default(),
            timeout: 0.5,
            stall: Duration::from_secs(2),
            max_clients: 8,
            max_pending: 8,
            send_version: 2,
            history: 256,
        }
    }
}

/// Client of `addr`, or server on `addr`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Client(String),
    Server(String),
}

impl Mode {
    /// `igtl://HOST:PORT` (client) or `igtl-server://HOST:PORT` (server).
    pub fn parse(url: &str) -> Option<Mode> {
        let (mode, rest): (fn(String) -> Mode, &str) = if let Some(r) = url.strip_prefix("igtl://")
        {
            (Mode::Client, r)
        } else if let Some(r) = url.strip_prefix("igtl-server://") {
            (Mode::Server, r)
        } else {
            return None;
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':')?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return None;
        }
        Some(mode(rest.to_string()))
    }
}

/// Counters for logs, tests and benchmarks.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    messages: AtomicU64,
    rejected: AtomicU64,
    dropped_out: AtomicU64,
    sent: AtomicU64,
    /// TRANSFORM / POSITION samples refused as not rigid or not unit.
    bad_poses: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections made or accepted so far.
    pub connections: u64,
    /// Messages read whole with a good CRC.
    pub messages: u64,
    /// Messages or connections refused (bad header, CRC, size, stall, body).
    pub rejected: u64,
    /// Outgoing messages dropped because a peer read too slowly.
    pub dropped_out: u64,
    pub sent: u64,
    pub peers: usize,
}

struct Peer {
    addr: SocketAddr,
    queue: Mutex<VecDeque<Arc<Message>>>,
    ready: Condvar,
    /// Header version of the peer's last message (0: not spoken yet).
    version: AtomicU16,
    closed: AtomicBool,
}

struct Tools {
    probe: ToolTrack,
    needle: ToolTrack,
    /// Device names already reported as ignored (bounded).
    ignored: HashSet<String>,
}

struct Shared {
    config: EndpointConfig,
    stop: AtomicBool,
    tools: Mutex<Tools>,
    peers: Mutex<Vec<Arc<Peer>>>,
    stats: Stats,
    message_id: AtomicU64,
}

/// A running endpoint; dropping it stops its threads.
pub struct Endpoint {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Where the server listens (the bound port when 0 was asked).
    pub local_addr: Option<SocketAddr>,
    pub mode: Mode,
    fallback_probe: Pose,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Endpoint {
    /// Start the endpoint: a server binds now (and fails now if it
    /// cannot); a client connects in the background and keeps trying.
    /// `fallback_probe` is the probe pose used while the tracker has not
    /// sent one (the scene's default placement).
    pub fn start(
        mode: Mode,
        config: EndpointConfig,
        fallback_probe: Pose,
    ) -> Result<Endpoint, TrackingError> {
        let shared = Arc::new(Shared {
            tools: Mutex::new(Tools {
                probe: ToolTrack::new(config.history),
                needle: ToolTrack::new(config.history),
                ignored: HashSet::new(),
            }),
            config,
            stop: AtomicBool::new(false),
            peers: Mutex::new(Vec::new()),
            stats: Stats::default(),
            message_id: AtomicU64::new(0),
        });
        let mut local_addr = None;
        let thread = match &mode {
            Mode::Server(addr) => {
                let listener =
                    TcpListener::bind(addr.as_str()).map_err(|source| TrackingError::Bind {
                        addr: addr.clone(),
                        source,
                        flags: None,
                    })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| TrackingError::Bind {
                        addr: addr.clone(),
                        source,
                        flags: None,
                    })?;
                local_addr = listener.local_addr().ok();
                info!(
                    "OpenIGTLink server listening on {}",
                    local_addr
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| addr.clone())
                );
                let s = shared.clone();
                std::thread::Builder::new()
                    .name("igtl-accept".into())
                    .spawn(move || accept_loop(s, listener))
            }
            Mode::Client(addr) => {
                let (s, a) = (shared.clone(), addr.clone());
                std::thread::Builder::new()
                    .name("igtl-client".into())
                    .spawn(move || client_loop(s, a))
            }
        }
        .map_err(|e| TrackingError::Invalid(format!("cannot start the OpenIGTLink thread: {e}")))?;
        Ok(Endpoint {
            shared,
            threads: vec![thread],
            local_addr,
            mode,
            fallback_probe,
        })
    }

    /// Queue a message for every connected peer. Never blocks: a peer
    /// whose queue is full loses its oldest message.
    pub fn publish(&self, msg: Message) {
        publish(&self.shared, Arc::new(msg));
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            connections: s.connections.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            dropped_out: s.dropped_out.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            peers: self.shared.peers.lock().map(|p| p.len()).unwrap_or(0),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.shared.config
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(peers) = self.shared.peers.lock() {
            for p in peers.iter() {
                p.ready.notify_all();
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Endpoint {
    /// The endpoint's tracked tools as a [`PoseSource`]; the handle shares
    /// the tracks, so a display can own it while the frame loop publishes.
    pub fn source(&self) -> EndpointSource {
        EndpointSource {
            shared: self.shared.clone(),
            fallback_probe: self.fallback_probe,
            name: self.describe(),
        }
    }

    fn describe(&self) -> String {
        match &self.mode {
            Mode::Client(a) => format!("OpenIGTLink client of {a}"),
            Mode::Server(a) => format!(
                "OpenIGTLink server on {}",
                self.local_addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| a.clone())
            ),
        }
    }
}

/// See [`Endpoint::source`].
pub struct EndpointSource {
    shared: Arc<Shared>,
    fallback_probe: Pose,
    name: String,
}

impl PoseSource for EndpointSource {
    fn poses_at(&mut self, t: f64) -> TrackedPoses {
        let now = unix_now();
        let tools = self.shared.tools.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.shared.config.timeout;
        let tool = |tr: &ToolTrack, fallback: Pose| {
            // The sender's clock may differ from ours: the least delayed
            // sample bounds the offset (sender − local), and the query
            // moves onto the sender's clock by it.
            let offset = tr
                .samples()
                .map(|s| s.time - s.received)
                .fold(f64::NEG_INFINITY, f64::max);
            let offset = if offset.is_finite() { offset } else { 0.0 };
            let age = tr
                .last_valid()
                .map(|s| now - s.received)
                .unwrap_or(f64::INFINITY);
            tr.at(t + offset, age, timeout, fallback)
        };
        TrackedPoses {
            time: t,
            probe: tool(&tools.probe, self.fallback_probe),
            needle: tool(&tools.needle, Pose::IDENTITY),
        }
    }

    fn now(&self) -> f64 {
        unix_now()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

fn publish(shared: &Shared, msg: Arc<Message>) {
    let peers = shared.peers.lock().unwrap_or_else(|e| e.into_inner());
    for p in peers.iter().filter(|p| !p.closed.load(Ordering::Relaxed)) {
        let mut q = p.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= shared.config.max_pending {
            q.pop_front();
            let n = shared.stats.dropped_out.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!("OpenIGTLink peer {} reads too slowly: {n} outgoing message(s) dropped so far (queue of {})", p.addr, shared.config.max_pending);
            }
        }
        q.push_back(msg.clone());
        p.ready.notify_one();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, addr)) => {
                // The peer is registered here, under the same lock as the
                // count, not by its thread: a burst of connections is
                // accepted faster than threads start, and would all pass
                // a count that the threads had not raised yet.
                let peer = {
                    let mut peers = shared.peers.lock().unwrap_or_else(|e| e.into_inner());
                    let open = peers.len();
                    if open >= shared.config.max_clients {
                        drop(peers);
                        warn!(
                            "OpenIGTLink client {addr} refused: already {open} clients (the limit)"
                        );
                        shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                    let peer = Peer::new(addr);
                    peers.push(peer.clone());
                    peer
                };
                info!("OpenIGTLink client {addr} connected");
                let (s, p) = (shared.clone(), peer.clone());
                match std::thread::Builder::new()
                    .name("igtl-conn".into())
                    .spawn(move || serve_peer(s, stream, p))
                {
                    Ok(h) => handlers.push(h),
                    Err(e) => {
                        warn!("OpenIGTLink client {addr} dropped: cannot start its thread: {e}");
                        unregister(&shared, &peer);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                warn!("OpenIGTLink server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        handlers.retain(|h| !h.is_finished());
    }
    for h in handlers {
        let _ = h.join();
    }
}

fn client_loop(shared: Arc<Shared>, addr: String) {
    let mut backoff = Duration::from_millis(200);
    let mut failures = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let target = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        match target.map(|a| (a, TcpStream::connect_timeout(&a, Duration::from_secs(1)))) {
            Some((a, Ok(stream))) => {
                info!("connected to OpenIGTLink server {addr}");
                failures = 0;
                backoff = Duration::from_millis(200);
                connection(shared.clone(), stream, a);
                if !shared.stop.load(Ordering::Relaxed) {
                    warn!("OpenIGTLink server {addr} closed the connection; reconnecting");
                }
            }
            other => {
                failures += 1;
                let why = match other {
                    Some((_, Err(e))) => e.to_string(),
                    _ => "cannot resolve the address".into(),
                };
                // Loud on the first failure, then quiet: a server that is
                // not up yet is the normal case at start.
                if failures == 1 || failures.is_power_of_two() {
                    warn!("cannot connect to OpenIGTLink server {addr}: {why}; retrying every {:.1} s", backoff.as_secs_f64());
                }
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum ReadEnd {
    /// The peer closed the connection (at a message boundary when `clean`).
    Closed {
        clean: bool,
    },
    Stalled {
        got: usize,
        want: usize,
    },
    Stopped,
    Failed(std::io::Error),
}

/// Fill `buf`, waiting as long as needed while nothing of the message has
/// arrived (`started: None`), and at most `stall` after it started.
fn read_full(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut [u8],
    started: &mut Option<Instant>,
) -> Result<(), ReadEnd> {
    let mut got = 0;
    while got < buf.len() {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(ReadEnd::Stopped);
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ReadEnd::Closed {
                    clean: got == 0 && started.is_none(),
                })
            }
            Ok(n) => {
                got += n;
                started.get_or_insert_with(Instant::now);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadEnd::Failed(e)),
        }
        if let Some(t) = started {
            if t.elapsed() > shared.config.stall && got < buf.len() {
                return Err(ReadEnd::Stalled {
                    got,
                    want: buf.len(),
                });
            }
        }
    }
    Ok(())
}

impl Peer {
    fn new(addr: SocketAddr) -> Arc<Peer> {
        Arc::new(Peer {
            addr,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            version: AtomicU16::new(0),
            closed: AtomicBool::new(false),
        })
    }
}

fn unregister(shared: &Shared, peer: &Arc<Peer>) {
    shared
        .peers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| !Arc::ptr_eq(p, peer));
}

/// Serve one connection of the client until it ends.
fn connection(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let peer = Peer::new(addr);
    shared
        .peers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(peer.clone());
    serve_peer(shared, stream, peer);
}

/// Serve a registered peer's connection until it ends, then unregister
/// it; the writer runs in its own thread.
fn serve_peer(shared: Arc<Shared>, mut stream: TcpStream, peer: Arc<Peer>) {
    let addr = peer.addr;
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let writer = stream.try_clone().ok().and_then(|w| {
        let (s, p) = (shared.clone(), peer.clone());
        std::thread::Builder::new()
            .name("igtl-write".into())
            .spawn(move || write_loop(s, p, w))
            .ok()
    });
    let mut warnings = 0u64;
    let mut warn_peer = |msg: String| {
        shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
        warnings += 1;
        // A flood of bad messages gets a handful of lines, then one per
        // power of two, not one each.
        if warnings <= 5 || warnings.is_power_of_two() {
            warn!(
                "OpenIGTLink peer {addr}: {msg}{}",
                if warnings > 5 {
                    format!(" ({warnings} rejections from this peer)")
                } else {
                    String::new()
                }
            );
        }
    };
    let mut skip = vec![0u8; 64 << 10];
    loop {
        let mut hb = [0u8; HEADER_SIZE];
        let mut started = None;
        if let Err(end) = read_full(&shared, &mut stream, &mut hb, &mut started) {
            report_end(end, addr, &mut warn_peer);
            break;
        }
        let header = match Header::decode(&hb).and_then(|h| h.check_size().map(|_| h)) {
            Ok(h) => h,
            Err(e) => {
                warn_peer(format!("{e}"));
                break;
            }
        };
        let read = igtl::is_read(&header.kind) || header.kind == "IMAGE";
        let body = if read {
            let mut body = vec![0u8; header.body_size as usize];
            if let Err(end) = read_full(&shared, &mut stream, &mut body, &mut started) {
                report_end(end, addr, &mut warn_peer);
                break;
            }
            Some(body)
        } else {
            // Skip what we do not read, in bounded chunks.
            let mut left = header.body_size as usize;
            let mut end = None;
            while left > 0 {
                let n = left.min(skip.len());
                if let Err(e) = read_full(&shared, &mut stream, &mut skip[..n], &mut started) {
                    end = Some(e);
                    break;
                }
                left -= n;
            }
            if let Some(e) = end {
                report_end(e, addr, &mut warn_peer);
                break;
            }
            debug!(
                "OpenIGTLink peer {addr}: skipped {} `{}` ({} bytes)",
                header.kind, header.device, header.body_size
            );
            None
        };
        peer.version.store(header.version, Ordering::Relaxed);
        let Some(body) = body else { continue };
        let crc = igtl::crc64(&body);
        if crc != header.crc {
            warn_peer(format!(
                "{}",
                igtl::IgtlError::Crc {
                    kind: header.kind.clone(),
                    device: header.device.clone(),
                    got: crc,
                    want: header.crc
                }
            ));
            continue;
        }
        match Message::decode(&header, &body) {
            Ok(msg) => {
                shared.stats.messages.fetch_add(1, Ordering::Relaxed);
                handle(&shared, &peer, msg);
            }
            Err(e) => warn_peer(format!("{e}; message dropped")),
        }
    }
    peer.closed.store(true, Ordering::SeqCst);
    peer.ready.notify_all();
    let _ = stream.shutdown(Shutdown::Both);
    if let Some(w) = writer {
        let _ = w.join();
    }
    unregister(&shared, &peer);
    info!("OpenIGTLink peer {addr} disconnected");
}

fn report_end(end: ReadEnd, addr: SocketAddr, warn_peer: &mut impl FnMut(String)) {
    match end {
        ReadEnd::Closed { clean: true } | ReadEnd::Stopped => {}
        ReadEnd::Closed { clean: false } => warn_peer("closed the connection in the middle of a message".into()),
        ReadEnd::Stalled { got, want } => warn_peer(format!("stalled with {got} of {want} bytes of a message for longer than the stall timeout; closing the connection")),
        ReadEnd::Failed(e) => warn_peer(format!("read failed ({e}); closing the connection")),
    }
    debug!("OpenIGTLink peer {addr}: reader done");
}

/// A tool's validity from OpenIGTLink 3 metadata: PLUS sends
/// `TransformValid`, or `<Name>TransformStatus` as in its files.
fn reported_invalid(msg: &Message) -> bool {
    msg.metadata.iter().any(|(k, v)| {
        let v = v.trim().to_ascii_lowercase();
        (k == "TransformValid" && (v == "false" || v == "0"))
            || (k.ends_with("Status") && (v == "invalid" || v == "missing"))
    })
}

fn handle(shared: &Shared, peer: &Peer, msg: Message) {
    let now = unix_now();
    let time = if msg.timestamp > 0.0 {
        msg.timestamp
    } else {
        now
    };
    let names = &shared.config.names;
    // A tracker that keeps sending a bad pose gets a few lines, not one a
    // message.
    let bad_pose = |what: String| {
        let n = shared.stats.bad_poses.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 5 || n.is_power_of_two() {
            warn!(
                "OpenIGTLink peer {}: {} `{}`: {what}; sample marked invalid ({n} so far)",
                peer.addr, msg.kind, msg.device
            );
        }
    };
    let pose = match &msg.content {
        Content::Transform(m) => match Pose::from_matrix_mm(m) {
            Ok(p) if !reported_invalid(&msg) => Some(Some(p)),
            Ok(_) => Some(None),
            Err(e) => {
                bad_pose(e);
                Some(None)
            }
        },
        Content::Position {
            position,
            quaternion,
        } => {
            let q = quaternion.map(|q| glam::DQuat::from_xyzw(q[0], q[1], q[2], q[3]));
            match q.map(|q| q.length()) {
                Some(l) if !(l.is_finite() && (l - 1.0).abs() < 1e-2) => {
                    bad_pose(format!("quaternion has length {l:.4}, expected 1"));
                    Some(None)
                }
                _ if position.iter().any(|v| !v.is_finite()) => Some(None),
                _ => Some(Some(Pose {
                    translation: glam::DVec3::from_array(*position) * 1e-3,
                    rotation: q.map(|q| q.normalize()).unwrap_or(glam::DQuat::IDENTITY),
                })),
            }
        }
        Content::Status { code, .. } => {
            info!("OpenIGTLink peer {}: {}", peer.addr, msg.describe());
            // A tool reported not OK is not tracked from now on.
            (*code != igtl::STATUS_OK).then_some(None)
        }
        Content::Other if msg.kind == "GET_STATUS" => {
            let reply = Message {
                kind: "STATUS".into(),
                device: msg.device.clone(),
                timestamp: now,
                metadata: Vec::new(),
                content: Content::Status {
                    code: igtl::STATUS_OK,
                    subcode: 0,
                    error_name: String::new(),
                    message: "sonoguide running".into(),
                },
            };
            let mut q = peer.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.push_back(Arc::new(reply));
            peer.ready.notify_one();
            None
        }
        _ => None,
    };
    let Some(pose) = pose else { return };
    let mut tools = shared.tools.lock().unwrap_or_else(|e| e.into_inner());
    let sample = Sample {
        time,
        received: now,
        pose,
    };
    let track = if msg.device == names.probe {
        &mut tools.probe
    } else if msg.device == names.needle {
        &mut tools.needle
    } else {
        if tools.ignored.len() < 64 && tools.ignored.insert(msg.device.clone()) {
            info!(
                "OpenIGTLink: ignoring {} `{}`: not a configured tool (probe `{}`, needle `{}`)",
                msg.kind, msg.device, names.probe, names.needle
            );
        }
        return;
    };
    if !track.push(sample) {
        debug!(
            "OpenIGTLink: {} `{}` stamped {time:.6} is older than the newest sample; dropped",
            msg.kind, msg.device
        );
    }
}

fn write_loop(shared: Arc<Shared>, peer: Arc<Peer>, mut stream: TcpStream) {
    // A peer that stops reading must not hold the frame loop: writes time
    // out and the connection is closed.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    loop {
        let msg = {
            let mut q = peer.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if peer.closed.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(m) = q.pop_front() {
                    break m;
                }
                q = peer
                    .ready
                    .wait_timeout(q, Duration::from_millis(100))
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        let version = match peer.version.load(Ordering::Relaxed) {
            0 => shared.config.send_version,
            v => v,
        };
        let id = shared.message_id.fetch_add(1, Ordering::Relaxed) as u32;
        if let Err(e) = stream.write_all(&msg.encode(version, id)) {
            warn!(
                "OpenIGTLink peer {}: write failed ({e}); closing the connection",
                peer.addr
            );
            peer.closed.store(true, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        shared.stats.sent.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Mode::parse("igtl://127.0.0.1:18944"),
            Some(Mode::Client("127.0.0.1:18944".into()))
        );
        assert_eq!(
            Mode::parse("igtl-server://0.0.0.0:18944/"),
            Some(Mode::Server("0.0.0.0:18944".into()))
        );
        assert_eq!(Mode::parse("igtl://localhost"), None);
        assert_eq!(Mode::parse("http://x:1"), None);
    }
}
