#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// fd shipping. A descriptor that cannot move (a pipe, a socket, a tty, a
/// node-local object) stays on its home node in a `HomeChannel`: the home
/// agent's own copy of it (pidfd_getfd, or the descriptors onnode handed
/// over). Wherever the process runs, it holds a local stand-in (a pipe, a
/// socketpair end, a pty slave) whose other end a `StandIn` relays to the
/// home agent over a secure channel, one connection per direction:
///
/// - "in" (the process reads): the stand-in node pulls. It asks "read",
///   the home polls the real object for up to 200 ms and answers with
///   bytes, "nodata" or "eof". One read is on the way at a time (the
///   stand-in asks for the next while it gives the process the last
///   answer), and a pause for a migration collects its answer, so it
///   knows exactly what was fetched.
/// - "out" (the process writes): the stand-in node pushes a chunk, the
///   home writes all of it to the real object and acks.
///
/// Order is kept because each direction is one ordered connection, and
/// end of file is passed on both ways (a closed peer is seen as closed).
public final class HomeChannel: @unchecked Sendable {
    public let id: String
    public let kind: ShipKind
    /// The home agent's copy of the real object.
    let fd: Int32
    /// One attachment per direction at a time; a migrating process's new
    /// node waits for the old one to let go.
    let busy = Locked<Set<String>>([])
    /// Directions that ended (eof passed on).
    let ended = Locked<Set<String>>([])
    /// A tty's settings before it was made raw for shipping.
    var savedTermios: termios?
    /// Raw, as shipping set them, once the home makes the signals of the
    /// process's keys (`signalsAtHome`); nil: the stand-in makes them.
    var rawTermios: termios?
    /// Whether the process may take input now: a terminal's stand-in is
    /// given keys only while the process's group (its deputy's, here) is
    /// the terminal's foreground group, so that a stopped or background
    /// job does not take the keys typed to its shell. nil: always.
    var readable: (@Sendable () -> Bool)?
    /// Called when the process sleeps in a read of its terminal (the
    /// stand-in says `waiting`) while it may not read (`readable`): what
    /// the kernel does to a background job that reads, SIGTTIN to its
    /// group, is done to its deputy's group here.
    var onBackgroundRead: (@Sendable () -> Void)?
    /// A terminal's window size as last told to a stand-in (in `attached`
    /// or `winsize`). Both directions' threads use it: an attach tells the
    /// size of now, the `in` thread what changed since.
    let lastWindow = Locked(RelayMessage.Window(rows: 0, cols: 0))
    /// Called once both directions ended or the process let go: the
    /// registry drops and closes the channel.
    var onEnd: (@Sendable () -> Void)?
    /// Called when a direction was left (its stand-in's connection
    /// closed) without ending, and nobody attached again within
    /// `reattachSeconds`: the stand-in's node or agent died.
    var onAbandoned: (@Sendable () -> Void)?
    var log: (@Sendable (String) -> Void)?
    /// Attachments so far: a left direction is abandoned only if no new
    /// attachment came since.
    let attachments = Locked(0)

    /// How long a direction that was left without ending waits for its
    /// stand-in to attach again (a migration's new node attaches within
    /// moments of the old one letting go) before the channel is released:
    /// then readers at home see end of file and writers EPIPE, instead of
    /// the channel (and the onnode waiting for it) staying forever.
    static let reattachSeconds = 30

    /// Whether the end of the process's writing to a socket is passed on
    /// as a half-close (shutdown SHUT_WR) of home's socket. Yes for a
    /// moved process's own socket, whose only other holder went with it.
    /// No for onnode's stdio: onnode and whatever started it hold the same
    /// socket, and locally one holder's close sends nothing while others
    /// hold it; a shutdown broke their writes too (a systemd unit running
    /// `ssi cluster reboot` died of SIGPIPE when the `onnode ... systemctl
    /// reboot` it ran ended: home had shut down the unit's own stdout, the
    /// journal's socket). The peer sees the end once every holder closed.
    let passesHalfClose: Bool

    init(id: String, kind: ShipKind, fd: Int32, passesHalfClose: Bool = true) {
        self.id = id
        self.kind = kind
        self.fd = fd
        self.passesHalfClose = passesHalfClose
        if kind == .tty {
            var t = termios()
            if tcgetattr(fd, &t) == 0 {
                savedTermios = t
                // The stand-in's line discipline does the editing, echo
                // and signals; the home tty only carries bytes (a moved
                // process's makes its signals: `signalsAtHome`).
                var raw = t
                cfmakeraw(&raw)
                tcsetattr(fd, TCSANOW, &raw)
            }
            var ws = winsize()
            if ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0 { lastWindow.withLock { $0 = .init(rows: ws.ws_row, cols: ws.ws_col) } }
        }
        // Input read at home through a pipe: a larger pipe lets the writer
        // put more in before it blocks, so that one `read` answer carries
        // more (the pull has one answer on the way at a time). A node-local
        // file is not a pipe: the kernel refuses and nothing changes.
        if kind == .pipeIn { _ = ssi_set_pipe_size(fd, Int32(Self.readChunk)) }
    }

    /// A moved process's terminal: home's terminal makes the signals of
    /// its keys itself (raw, with ISIG and the process's VINTR, VQUIT and
    /// VSUSP, as the stand-in tells them: `keys`), for its foreground
    /// group, whose deputy forwards them; there the process's group is
    /// orphaned and need not be its pty's foreground group. (onnode's
    /// terminal keeps its signals on the command's node, where the
    /// command leads its own session.)
    func signalsAtHome() {
        guard kind == .tty, let saved = savedTermios else { return }
        var raw = saved
        cfmakeraw(&raw)
        raw = RelayMessage.SignalKeys(saved).applied(to: raw)
        rawTermios = raw
        tcsetattr(fd, TCSANOW, &raw)
    }

    /// The most one answer to `read` carries (a `data` frame's payload is
    /// at most SecureChannel.maxPayload).
    static let readChunk = 512 * 1024
    /// After the first bytes of an answer, how long home waits for more
    /// (each time, up to `gatherPolls` times) before it answers: a writer
    /// that refills the pipe at once fills the answer; one that stopped
    /// costs a millisecond or a few.
    static let gatherMs: Int32 = 1
    static let gatherPolls = 8

    func release() {
        if kind == .tty, var t = savedTermios { tcsetattr(fd, TCSANOW, &t) }
        close(fd)
    }

    /// Serves one attached direction until the remote side ends it.
    func serve(direction: String, on ch: SecureChannel) {
        let claimed = busy.withLock { b -> Bool in
            if b.contains(direction) { return false }
            b.insert(direction)
            return true
        }
        // A second node attaching while the first still holds this
        // direction: wait (bounded) for the first to let go.
        if !claimed {
            var waited = 0
            while waited < 300 {
                Process.sleep(milliseconds: 100)
                waited += 1
                if busy.withLock({ b -> Bool in
                    if b.contains(direction) { return false }
                    b.insert(direction)
                    return true
                }) { break }
            }
            if waited >= 300 { try? ch.send(PeerReply.error("channel \(id) \(direction) is still attached elsewhere").encode()); return }
        }
        let generation = attachments.withLock { n -> Int in n += 1; return n }
        defer {
            busy.withLock { _ = $0.remove(direction) }
            if !ended.current.contains(direction) { watchForReattach(direction, generation: generation) }
        }
        do {
            // A terminal's size as it is now, not as last told: it may have
            // changed while no stand-in was there to ask (during a move,
            // before the first attach), and the one told before may never
            // have reached a process (applied on the node a move left).
            var window: RelayMessage.Window? = nil
            if kind == .tty {
                let now = currentWindow()
                lastWindow.withLock { $0 = now }
                window = now
            }
            try ch.send(RelayMessage.attached(window: window).encode())
            if direction == "in" { try serveIn(ch) } else { try serveOut(ch) }
        } catch {
            // The remote side went away: it reattaches (from the same or
            // a new node) or, after reattachSeconds, the channel goes.
        }
    }

    private func watchForReattach(_ direction: String, generation: Int) {
        startThread { [self] in
            Process.sleep(milliseconds: Self.reattachSeconds * 1000)
            guard attachments.current == generation, !busy.current.contains(direction),
                  !ended.current.contains(direction) else { return }
            log?("channel \(id) \(direction): its stand-in did not come back in \(Self.reattachSeconds) s; released")
            onAbandoned?()
        }
    }

    private func serveIn(_ ch: SecureChannel) throws(SSIError) {
        var buf = [UInt8](repeating: 0, count: Self.readChunk)
        while let (type, payload) = try ch.receive() {
            guard type == Wire.fields else { return }
            // Anything but `read` or `close` (of this version) ends the direction.
            let message = (try? Fields.decode(payload)).flatMap { try? RelayMessage.decode($0) }
            if message == .close {
                // The process closed its end of an input stream.
                let both = ended.withLock { e -> Bool in e.insert("in"); return e.contains("out") }
                try ch.send(Wire.ack, [])
                if !kind.isSocket && kind != .tty || both { onEnd?() }
                return
            }
            if message == .size {
                // A terminal's stand-in that holds keys its process has not
                // taken asks for the size alone: no keys are read for it.
                try sendWindowIfChanged(ch)
                try ch.send(Wire.nodata, [])
                continue
            }
            guard case .read(let waiting)? = message else { return }
            // A resize while the process waits for input reaches it now.
            try sendWindowIfChanged(ch)
            if ended.current.contains("in") { try ch.send(Wire.eof, []); continue }
            if let readable, !readable() {
                // A background job that reads its terminal: the kernel
                // would stop its group with SIGTTIN; home does it.
                if waiting { onBackgroundRead?() }
                Process.sleep(milliseconds: 200)
                try ch.send(Wire.nodata, [])
                continue
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = pollRetrying(&p, timeoutMs: 200)
            if ready <= 0 {
                // A resize during the wait goes with this answer, not with
                // the next read's (which may be long in coming).
                try sendWindowIfChanged(ch)
                try ch.send(Wire.nodata, [])
                continue
            }
            // n: bytes read, 0 at the end (or EIO: a tty whose other side
            // hung up), -1 when nothing was there after all.
            var n: Int
            switch attempt({ buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) } }) {
            case .done(let k): n = k
            case .wouldBlock: n = -1
            case .failed: n = 0
            }
            if n > 0 && kind != .tty {
                // More of a stream that is being written: gathered into this
                // answer (a terminal's line goes as it is typed).
                for _ in 0..<Self.gatherPolls where n < buf.count {
                    var more = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard pollRetrying(&more, timeoutMs: Self.gatherMs) > 0, more.revents & Int16(POLLIN) != 0 else { break }
                    guard case .done(let got) = attempt({ buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + n, $0.count - n) } }),
                          got > 0 else { break }
                    n += got
                }
            }
            // And a resize made before these bytes were typed (or during
            // the wait) reaches it before this answer, as on a local
            // terminal: checked only before the poll, a resize during it
            // came after the line, and a shell that runs its WINCH trap
            // when `read` returns waited for one more line.
            try sendWindowIfChanged(ch)
            if n > 0 {
                try ch.send(Wire.data, Array(buf[0..<n]))
            } else if n == 0 {
                ended.withLock { _ = $0.insert("in") }
                try ch.send(Wire.eof, [])
            } else {
                try ch.send(Wire.nodata, [])
            }
        }
    }

    /// The home terminal's window size now (the last one told when it
    /// cannot be read).
    private func currentWindow() -> RelayMessage.Window {
        var ws = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0 else { return lastWindow.current }
        return .init(rows: ws.ws_row, cols: ws.ws_col)
    }

    /// A terminal's window size, sent ahead of an answer (to `read` or
    /// `size`) when it changed since it was last told (the stand-in
    /// applies it, and its kernel signals SIGWINCH there).
    private func sendWindowIfChanged(_ ch: SecureChannel) throws(SSIError) {
        guard kind == .tty else { return }
        let now = currentWindow()
        let changed = lastWindow.withLock { last -> Bool in
            if last == now { return false }
            last = now
            return true
        }
        guard changed else { return }
        log?("channel \(id): window \(now.rows)x\(now.cols) sent")
        try ch.send(RelayMessage.winsize(now).encode())
    }

    private func serveOut(_ ch: SecureChannel) throws(SSIError) {
        while let (type, payload) = try ch.receive() {
            switch type {
            case Wire.data:
                if (try? writeAll(fd, payload, name: "relay")) == nil {
                    // The reader is gone (EPIPE): tell the process's side.
                    try ch.send(Wire.eof, [])
                    return
                }
                try ch.send(Wire.ack, [])
            case Wire.eof:
                let both = ended.withLock { e -> Bool in e.insert("out"); return e.contains("in") }
                if kind.isSocket && passesHalfClose { shutdown(fd, Int32(SHUT_WR)) }
                try ch.send(Wire.ack, [])
                // A pipe's writer closed: closing our copy lets the readers
                // at home see end of file.
                if !kind.isSocket || both { onEnd?() }
            case Wire.fields:
                // The stand-in's signal keys: home's terminal makes those
                // signals (the rest of its modes stay raw). Anything else
                // of this version is acked and left.
                if kind == .tty, let base = rawTermios, let f = try? Fields.decode(payload),
                   case .keys(let keys)? = try? RelayMessage.decode(f) {
                    var t = keys.applied(to: base)
                    tcsetattr(fd, TCSANOW, &t)
                }
                try ch.send(Wire.ack, [])
            default:
                return
            }
        }
    }
}

/// The home channels of this node, by id.
public final class HomeRegistry: @unchecked Sendable {
    private let channels = Locked<[String: HomeChannel]>([:])
    var log: (@Sendable (String) -> Void)?
    public init() {}

    /// A channel released because its stand-in never came back (see
    /// HomeChannel.onAbandoned), after it is released.
    var onAbandoned: (@Sendable (String) -> Void)?

    public func add(_ c: HomeChannel) {
        c.onEnd = { [weak self, id = c.id] in self?.release(id) }
        c.onAbandoned = { [weak self, id = c.id] in
            guard let self, self.get(id) != nil else { return }
            self.release(id)
            self.onAbandoned?(id)
        }
        c.log = log
        channels.withLock { $0[c.id] = c }
    }
    /// Whether any channel's id starts with `prefix`.
    func contains(prefix: String) -> Bool { channels.withLock { $0.keys.contains { $0.hasPrefix(prefix) } } }
    public func get(_ id: String) -> HomeChannel? { channels.withLock { $0[id] } }
    public func release(_ id: String) {
        if let c = channels.withLock({ $0.removeValue(forKey: id) }) { c.release() }
    }
    public var count: Int { channels.withLock { $0.count } }
}
