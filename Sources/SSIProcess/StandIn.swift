#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// The migrated side of a shipped descriptor: the agent's end of the
/// process's stand-in, relayed to the home channel (see HomeChannel).
public final class StandIn: @unchecked Sendable {
    public enum State: Sendable { case running, pausing, paused, closing }

    public let channelID: String
    public let home: UInt32
    public let kind: ShipKind
    /// The agent's end: a pipe's write end ("in"), its read end ("out"),
    /// the agent's socketpair end, or the pty master.
    public let fd: Int32
    /// CRIU's name of the process's end, which the next migration finds in
    /// the process: "pipe:[ino]", "socket:[ino]" or "tty[rdev:dev]".
    public let resource: String
    let state = Locked(State.running)
    /// Bytes from home not yet given to the process when paused.
    let carry = Locked<[UInt8]>([])
    private var connections: [String: SecureChannel] = [:]
    private let stopped = Locked<Set<String>>([])
    let log: @Sendable (String) -> Void
    /// A terminal's session keeper (see restoreWithKeeper): it goes when
    /// the process leaves or ends.
    var keeper: pid_t = 0
    /// A terminal's: whether its process sleeps in a read of it now (told
    /// home with each `read`, for the SIGTTIN of a background job).
    var waitingReader: (@Sendable () -> Bool)?

    init(channelID: String, home: UInt32, kind: ShipKind, fd: Int32, resource: String, log: @escaping @Sendable (String) -> Void) {
        self.channelID = channelID
        self.home = home
        self.kind = kind
        self.fd = fd
        self.resource = resource
        self.log = log
    }

    /// Attaches each direction to the home channel and starts relaying.
    /// What is in `carry` (bytes from the previous node) goes to the
    /// process before anything new from home.
    func start(connect: (UInt32) throws(SSIError) -> SecureChannel) throws(SSIError) {
        // What home sends goes into the process's pipe, socket or pty
        // without blocking: poll says "writable" when a page is free, and a
        // blocking write of an answer (up to 512 KiB) then waited for the
        // process to read, so that neither a pause (a move) nor a window
        // size got through. The relays poll, then write what fits.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        for dir in kind.directions {
            guard let direction = PeerRequest.Direction(rawValue: dir) else { continue }
            let ch = try connect(home)
            try ch.send(PeerRequest.attach(channel: channelID, direction: direction).encode())
            let reply = try ch.expectFields("the home agent's attach reply")
            let window: RelayMessage.Window?
            do throws(ProcMessageError) {
                guard case .attached(let w) = try RelayMessage.decode(reply) else { throw ProcMessageError.unknownOp(reply.op) }
                window = w
            } catch {
                ch.close()
                var why = error.description
                if case .error(let m)? = try? PeerReply.decode(reply) { why = m }
                throw SSIError("proc", "node \(home) refused channel \(channelID): \(why)")
            }
            if kind == .tty, let window, window.rows > 0 {
                var ws = winsize(ws_row: window.rows, ws_col: window.cols, ws_xpixel: 0, ws_ypixel: 0)
                _ = ioctl(fd, UInt(TIOCSWINSZ), &ws)
            }
            connections[dir] = ch
        }
        if kind == .tty { tellWindow() }
        for (dir, ch) in connections {
            startThread { [self] in
                if dir == "in" { self.relayIn(ch) } else { self.relayOut(ch) }
                self.stopped.withLock { _ = $0.insert(dir) }
            }
        }
    }

    /// SIGWINCH to the terminal's foreground process group, once the size
    /// home has now is set: a process that moved may have missed a resize
    /// made while it was frozen (the kernel signalled the frozen original,
    /// or the old node's stand-in applied it after the dump), and setting
    /// the size here signals nothing when the restore already gave the pty
    /// that size. A terminal emulator does the same when a session is
    /// reattached; a process that did not miss anything asks for the same
    /// size again, and one that has no handler ignores it (SIGWINCH's
    /// default). No foreground group (a pty nobody has as its terminal):
    /// nothing to tell.
    private func tellWindow() {
        var fg: pid_t = 0
        guard ioctl(fd, UInt(TIOCGPGRP), &fg) == 0, fg > 0 else { return }
        kill(-fg, SIGWINCH)
        log("stand-in \(channelID): SIGWINCH to foreground group \(fg) (attached)")
    }

    /// Waits until a thread sees the state is no longer running.
    private func parkIfPaused() -> Bool {
        while true {
            switch state.current {
            case .running: return true
            case .closing: return false
            case .pausing, .paused: Process.sleep(milliseconds: 20)
            }
        }
    }

    /// Where a relay is: a pause waits until both are parked (or ended),
    /// and one that runs out names where each was waiting.
    private enum Place: CustomStringConvertible {
        case starting, running, asking, waitingForAnswer, giving(bytes: Int)
        case waitingForOutput, waitingForAcks(chunks: Int), parked, ended

        var settled: Bool {
            switch self {
            case .parked, .ended: return true
            default: return false
            }
        }

        var description: String {
            switch self {
            case .starting: return "starting"
            case .running: return "running"
            case .asking: return "asking home for input"
            case .waitingForAnswer: return "waiting for home's answer to a read"
            case .giving(let n): return "giving the process \(n) bytes"
            case .waitingForOutput: return "waiting for the process's output"
            case .waitingForAcks(let n): return "waiting for home's ack of \(n) chunks"
            case .parked: return "parked"
            case .ended: return "ended"
            }
        }
    }
    private let inAt = Locked(Place.starting), outAt = Locked(Place.starting)

    /// One answer to a `read`: window sizes (a terminal's) applied as they
    /// come ahead of it, then its bytes, nothing yet, or the end.
    private enum Answer { case data([UInt8]), nodata, eof, lost }

    private func answer(_ ch: SecureChannel) -> Answer {
        do {
            // Window sizes come ahead of the read's answer (before the
            // poll at home, and again before the bytes), each applied
            // before anything that follows it.
            var reply = try ch.receive()
            while let (type, payload) = reply, type == Wire.fields {
                guard let f = try? Fields.decode(payload), case .winsize(let w)? = try? RelayMessage.decode(f) else {
                    log("stand-in \(channelID) in: an answer to read that is not a window size")
                    return .lost
                }
                var ws = winsize(ws_row: w.rows, ws_col: w.cols, ws_xpixel: 0, ws_ypixel: 0)
                let rc = ioctl(fd, UInt(TIOCSWINSZ), &ws)   // the kernel signals SIGWINCH
                var fg: pid_t = 0
                _ = ioctl(fd, UInt(TIOCGPGRP), &fg)
                log("stand-in \(channelID): window \(w.rows)x\(w.cols) (rc \(rc), foreground group \(fg))")
                reply = try ch.receive()
            }
            switch reply?.0 {
            case Wire.data?: return .data(reply!.1)
            case Wire.nodata?: return .nodata
            case Wire.eof?: return .eof
            default: return .lost
            }
        } catch {
            log("stand-in \(channelID) in: \(error.description)")
            return .lost
        }
    }

    /// Input: pulled from home a `read` at a time. While the process is
    /// given one answer's bytes, the next `read` is already on its way
    /// (not for a terminal, whose keys stay home until the program asks),
    /// so a round trip overlaps the process's reading. A pause collects
    /// that answer too: what was fetched is in `carry`, nothing is in
    /// flight. One read is on its way at a time, and at most two answers'
    /// bytes are held (2 x HomeChannel.readChunk), well under what a move
    /// may carry (ProcAgent.maxCarryBytes).
    private func relayIn(_ ch: SecureChannel) {
        // Bytes carried over from the previous node come first.
        var pending: [UInt8] = carry.withLock { c in defer { c = [] }; return c }
        var asked = false
        let readAhead = kind != .tty
        /// The answer to the `read` on its way, if one is.
        func collect() -> Answer? {
            guard asked else { return nil }
            asked = false
            inAt.withLock { $0 = .waitingForAnswer }
            return answer(ch)
        }
        /// The process closed its reading end: tell home (after the
        /// answer on its way, which nobody will read).
        func tellHomeClosed() {
            _ = collect()
            try? ch.send(RelayMessage.close.encode())
            _ = try? ch.receive()
        }
        loop: while true {
            if state.current != .running {
                switch collect() {
                case .data(let bytes)?: pending += bytes
                case .lost?: homeLost("in"); break loop
                // End of file stays home's to tell the next node.
                case .eof?, .nodata?, nil: break
                }
                carry.withLock { $0 += pending }
                pending = []
                inAt.withLock { $0 = .parked }
                guard parkIfPaused() else { break }
                inAt.withLock { $0 = .running }
                pending = carry.withLock { c in defer { c = [] }; return c }
            }
            if pending.isEmpty {
                // The process closed its reading end: tell home.
                var p = pollfd(fd: fd, events: 0, revents: 0)
                if kind == .pipeIn, pollRetrying(&p, timeoutMs: 0) > 0, p.revents & Int16(POLLERR) != 0 {
                    tellHomeClosed()
                    break
                }
                if !asked {
                    inAt.withLock { $0 = .asking }
                    do {
                        try ch.send(RelayMessage.read(waiting: kind == .tty && waitingReader?() == true).encode())
                    } catch {
                        log("stand-in \(channelID) in: \(error.description)")
                        homeLost("in")
                        break
                    }
                    asked = true
                }
                switch collect() {
                case .data(let bytes)?: pending = bytes
                case .nodata?, nil: continue loop
                case .eof?:
                    endProcessSide("in")
                    break loop
                case .lost?:
                    homeLost("in")
                    break loop
                }
                if readAhead {
                    if (try? ch.send(RelayMessage.read(waiting: false).encode())) == nil {
                        homeLost("in")
                        break
                    }
                    asked = true
                }
            }
            // Give it to the process, a slice at a time so that a pause
            // is noticed even when the process does not read.
            while !pending.isEmpty && state.current == .running {
                inAt.withLock { $0 = .giving(bytes: pending.count) }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                guard pollRetrying(&p, timeoutMs: 200) > 0 else {
                    // A terminal whose process leaves its keys unread (a
                    // full-screen program busy drawing, a stopped job)
                    // still hears of a resize: each time the wait runs
                    // out, home is asked for the size alone.
                    if kind == .tty && !asked {
                        if (try? ch.send(RelayMessage.size.encode())) == nil { homeLost("in"); break loop }
                        asked = true
                        switch collect() {
                        case .data(let more)?: pending += more    // not sent for `size`; kept if it were
                        case .eof?: endProcessSide("in"); break loop
                        case .lost?: homeLost("in"); break loop
                        case .nodata?, nil: break
                        }
                    }
                    continue
                }
                if p.revents & Int16(POLLERR | POLLHUP) != 0 && p.revents & Int16(POLLOUT) == 0 {
                    pending = []
                    if kind == .pipeIn && p.revents & Int16(POLLERR) != 0 { tellHomeClosed() }
                    break loop
                }
                switch attempt({ pending.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) } }) {
                case .done(let n): pending.removeFirst(n)
                case .wouldBlock: continue
                case .failed: break loop
                }
            }
        }
        inAt.withLock { $0 = .ended }
    }

    /// Chunks of output sent home and not yet acknowledged, at most: a
    /// window, so that throughput is not one chunk per round trip.
    static let outWindow = 8

    private func relayOut(_ ch: SecureChannel) {
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        var unacked = 0
        // Waits for acks until at most `limit` chunks are unacknowledged;
        // false when home answered something else (its reader is gone).
        func settle(_ limit: Int) throws(SSIError) -> Bool {
            while unacked > limit {
                outAt.withLock { $0 = .waitingForAcks(chunks: unacked) }
                guard let (type, _) = try ch.receive(), type == Wire.ack else { return false }
                unacked -= 1
            }
            return true
        }
        // A terminal's signal keys as home last heard of them.
        var keysTold: RelayMessage.SignalKeys?
        do {
            while true {
                if kind == .tty, state.current == .running {
                    var t = termios()
                    if tcgetattr(fd, &t) == 0, keysTold != RelayMessage.SignalKeys(t) {
                        keysTold = RelayMessage.SignalKeys(t)
                        try ch.send(RelayMessage.keys(RelayMessage.SignalKeys(t)).encode())
                        unacked += 1
                    }
                }
                outAt.withLock { $0 = .waitingForOutput }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = pollRetrying(&p, timeoutMs: unacked > 0 ? 0 : 200)
                if ready <= 0 {
                    // Nothing to read: everything sent is acknowledged
                    // first, then a pause can stop here, nothing is lost.
                    guard try settle(0) else { homeLost("out"); break }
                    if state.current != .running {
                        outAt.withLock { $0 = .parked }
                        guard parkIfPaused() else { break }
                        outAt.withLock { $0 = .running }
                    }
                    continue
                }
                let n: Int
                switch attempt({ buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) } }) {
                case .done(let k): n = k
                case .wouldBlock: continue
                case .failed: n = 0
                }
                if n <= 0 {
                    // The process closed its end (EIO: a pty's last slave).
                    guard try settle(0) else { break }
                    try ch.send(Wire.eof, [])
                    _ = try ch.receive()
                    if keeper > 0 { kill(keeper, SIGTERM) }
                    break
                }
                try ch.send(Wire.data, Array(buf[0..<n]))
                unacked += 1
                guard try settle(Self.outWindow - 1) else { homeLost("out"); break }
            }
        } catch {
            log("stand-in \(channelID) out: \(error.description)")
            homeLost("out")
        }
        outAt.withLock { $0 = .ended }
    }

    /// The home side of a direction is gone (its node or its agent died,
    /// or the real object's reader went away) while the process still
    /// uses the stand-in: closed, not resumed, so the process sees what it
    /// would see at home: end of file on input, EPIPE on output, a hangup
    /// on a terminal. Never while the agent itself is letting go (a move
    /// or the end of the process: `finish`).
    func homeLost(_ direction: String) {
        guard state.current != .closing else { return }
        log("stand-in \(channelID) \(direction): home (node \(home)) is gone; the process's side is closed")
        endProcessSide(direction)
    }

    /// Ends one direction for the process without closing `fd` (finish
    /// closes it, once): a socket is shut down that way; a pipe's or a
    /// terminal's end is replaced by /dev/null, which closes the pipe end
    /// (EOF, EPIPE) or the pty master (hangup) under the same number.
    func endProcessSide(_ direction: String) {
        // Under `fdClosed`'s lock: `finish` may close `fd` at the same
        // time, and a dup2 onto a closed number would take whatever the
        // process (the agent, or a test beside it) opened there since.
        fdClosed.withLock { closed in
            guard !closed else { return }
            if kind.isSocket {
                shutdown(fd, direction == "in" ? Int32(SHUT_WR) : Int32(SHUT_RD))
                return
            }
            let null = open("/dev/null", O_RDWR | O_CLOEXEC)
            guard null >= 0 else { return }
            if dup2(null, fd) == fd { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            close(null)
        }
    }

    /// Whether `finish` has closed `fd` (see endProcessSide).
    private let fdClosed = Locked(false)

    /// Stops relaying (the process is frozen): output is sent home until
    /// the stand-in is empty; input already fetched is kept in `carry`.
    /// Returns within `timeout` seconds, or false.
    func pause(timeoutMs: Int = 15_000) -> Bool {
        state.withLock { $0 = .pausing }
        var waited = 0
        while waited < timeoutMs {
            let inDone = !connections.keys.contains("in") || inAt.current.settled || stopped.current.contains("in")
            let outDone = !connections.keys.contains("out") || outAt.current.settled || stopped.current.contains("out")
            if inDone && outDone {
                state.withLock { $0 = .paused }
                return true
            }
            Process.sleep(milliseconds: 20)
            waited += 20
        }
        func at(_ d: String, _ place: Locked<Place>) -> String { connections.keys.contains(d) ? place.current.description : "not relayed" }
        log("stand-in \(channelID): the pause ran out after \(timeoutMs) ms: in \(at("in", inAt)), out \(at("out", outAt))")
        return false
    }

    func resume() { state.withLock { $0 = .running } }

    var stoppedDirections: Set<String> { stopped.current }

    /// Lets go of home (the process moved on or ended).
    func finish() {
        if keeper > 0 { kill(keeper, SIGTERM) }
        state.withLock { $0 = .closing }
        for ch in connections.values { ch.shutdown() }
        // The relays stop before `fd` is closed: one between its poll and
        // its write would otherwise write to whatever took the number.
        // Paused (a move), they are parked and see `closing` within 20 ms;
        // running, within a poll's 200 ms. Bounded all the same.
        var waited = 0
        while stopped.current.count < connections.count && waited < 1000 {
            Process.sleep(milliseconds: 10)
            waited += 10
        }
        fdClosed.withLock { closed in
            guard !closed else { return }
            closed = true
            close(fd)
        }
    }
}

/// The stand-ins on this node, by the process-side resource name.
public final class StandInRegistry: @unchecked Sendable {
    private let items = Locked<[String: StandIn]>([:])
    public init() {}
    func add(_ s: StandIn) { items.withLock { $0[s.resource] = s } }
    func get(_ resource: String) -> StandIn? { items.withLock { $0[resource] } }
    func remove(_ resource: String) { items.withLock { _ = $0.removeValue(forKey: resource) } }
}
