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

    private var inParked = Locked(false), outParked = Locked(false)

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
                inParked.withLock { $0 = true }
                guard parkIfPaused() else { break }
                inParked.withLock { $0 = false }
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
                    do {
                        try ch.send(RelayMessage.read.encode())
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
                    if (try? ch.send(RelayMessage.read.encode())) == nil {
                        homeLost("in")
                        break
                    }
                    asked = true
                }
            }
            // Give it to the process, a slice at a time so that a pause
            // is noticed even when the process does not read.
            while !pending.isEmpty && state.current == .running {
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
        inParked.withLock { $0 = true }
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
                guard let (type, _) = try ch.receive(), type == Wire.ack else { return false }
                unacked -= 1
            }
            return true
        }
        do {
            while true {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = pollRetrying(&p, timeoutMs: unacked > 0 ? 0 : 200)
                if ready <= 0 {
                    // Nothing to read: everything sent is acknowledged
                    // first, then a pause can stop here, nothing is lost.
                    guard try settle(0) else { homeLost("out"); break }
                    if state.current != .running {
                        outParked.withLock { $0 = true }
                        guard parkIfPaused() else { break }
                        outParked.withLock { $0 = false }
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
        outParked.withLock { $0 = true }
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
        if kind.isSocket {
            shutdown(fd, direction == "in" ? Int32(SHUT_WR) : Int32(SHUT_RD))
            return
        }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { return }
        if dup2(null, fd) == fd { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        close(null)
    }

    /// Stops relaying (the process is frozen): output is sent home until
    /// the stand-in is empty; input already fetched is kept in `carry`.
    /// Returns within `timeout` seconds, or false.
    func pause(timeoutMs: Int = 15_000) -> Bool {
        state.withLock { $0 = .pausing }
        var waited = 0
        while waited < timeoutMs {
            let inDone = !connections.keys.contains("in") || inParked.current || stopped.current.contains("in")
            let outDone = !connections.keys.contains("out") || outParked.current || stopped.current.contains("out")
            if inDone && outDone {
                state.withLock { $0 = .paused }
                return true
            }
            Process.sleep(milliseconds: 20)
            waited += 20
        }
        return false
    }

    func resume() { state.withLock { $0 = .running } }

    var stoppedDirections: Set<String> { stopped.current }

    /// Lets go of home (the process moved on or ended).
    func finish() {
        if keeper > 0 { kill(keeper, SIGTERM) }
        state.withLock { $0 = .closing }
        for ch in connections.values { ch.shutdown() }
        close(fd)
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
