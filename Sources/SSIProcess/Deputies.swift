#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSIConfig

/// What the node a moved process runs on tells the process's home, where
/// its deputy is (PeerRequest.deputy).
enum DeputyEvent: Equatable, Sendable {
    /// It runs on `node` now (after a restore there).
    case at(node: UInt32)
    case exited(code: Int32)
    case killed(signal: Int32)
    case stopped(signal: Int32)
    case continued

    var name: String {
        switch self {
        case .at: "at"
        case .exited: "exited"
        case .killed: "killed"
        case .stopped: "stopped"
        case .continued: "continued"
        }
    }

    var value: UInt32 {
        switch self {
        case .at(let n): n
        case .exited(let c): UInt32(c)
        case .killed(let s), .stopped(let s): UInt32(s)
        case .continued: 0
        }
    }

    init?(name: String, value: UInt32) {
        switch name {
        case "at": guard value > 0 else { return nil }; self = .at(node: value)
        case "exited": guard value <= 255 else { return nil }; self = .exited(code: Int32(value))
        case "killed": guard (1...64).contains(value) else { return nil }; self = .killed(signal: Int32(value))
        case "stopped":
            guard [SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU].contains(Int32(value)) else { return nil }
            self = .stopped(signal: Int32(value))
        case "continued": guard value == 0 else { return nil }; self = .continued
        default: return nil
        }
    }

    /// The deputy's message for an end or a stop; nil for the others.
    var message: DeputyMessage? {
        switch self {
        case .exited(let c): .exit(c)
        case .killed(let s): .killed(s)
        case .stopped(let s): .stop(s)
        case .at, .continued: nil
        }
    }
}

/// A deputy on this node: the original of a process that moved away,
/// exec'd into ssi-deputy under its PID (DESIGN-NOTES "A deputy at home").
final class DeputyRecord: @unchecked Sendable {
    let pid: pid_t
    /// The process's owner: signals the deputy received are forwarded as
    /// theirs (whoever sent them passed the kernel's check here).
    let uid: uid_t
    /// The node the process runs on now.
    let node = Locked<UInt32>(0)
    /// The agent's end of the deputy's socket; -1 until the deputy runs.
    let fd = Locked<Int32>(-1)
    /// Events that came before the deputy ran (a process that ends at
    /// once on its target), given to it when it does.
    let early = Locked<[DeputyEvent]>([])
    /// The process ended: the deputy was told, and the record goes.
    let ended = Locked(false)
    /// We told the deputy to stop (mirroring the process), or forwarded a
    /// stop we saw it in: its stopped state is not a new SIGSTOP to forward.
    let stopKnown = Locked(false)
    /// The number of the last report acted on, by the node that sent it
    /// (PeerRequest.deputy's `seq`). A sender that lost an answer (a
    /// loaded node answers late) sends the report again: acted on twice,
    /// a stop would stop the deputy again after its shell's bg, with
    /// the first stop's signal. A report numbered at or below the last
    /// from the same node is answered and dropped.
    let lastReport = Locked<[UInt32: UInt64]>([:])

    init(pid: pid_t, uid: uid_t, node: UInt32) {
        self.pid = pid
        self.uid = uid
        self.node.withLock { $0 = node }
    }

    /// Whether report `seq` from `node` comes after the last one acted
    /// on from there (and is now the last).
    func isNew(report seq: UInt64, from node: UInt32) -> Bool {
        lastReport.withLock { last in
            if let l = last[node], seq <= l { return false }
            last[node] = seq
            return true
        }
    }
}

extension ProcAgent {
    // MARK: the home's side

    /// The deputy program's path as the moved process sees it: this
    /// binary in the agents' root (/run/ssi/root/...), or where the agent
    /// runs unchrooted, its own path; nil when the process cannot see it.
    func deputyProgram(for pid: pid_t) -> String? {
        guard let me = try? FileSystem.readLink("/proc/self/exe") else { return nil }
        for candidate in [AuthKey.runningRoot + me, me] where FileSystem.exists("/proc/\(pid)/root" + candidate) {
            return candidate
        }
        return nil
    }

    /// Registers the deputy-to-be before the restore is asked for, so that
    /// what the target reports at once is kept for it.
    func expectDeputy(pid: pid_t, uid: uid_t, node: UInt32) {
        deputies.withLock { $0[pid] = DeputyRecord(pid: pid, uid: uid, node: node) }
    }

    func forgetDeputy(_ pid: pid_t) {
        _ = deputies.withLock { $0.removeValue(forKey: pid) }
    }

    /// Whether `pid` here is a deputy (not the process: where_pid and ps
    /// look for it where it runs).
    func isDeputy(_ pid: pid_t) -> Bool {
        deputies.withLock { $0[pid] }.map { $0.fd.current >= 0 } ?? false
    }

    /// The stopped original becomes the deputy: nil, or why not (then the
    /// caller kills it, as a move did before deputies).
    func becomeDeputy(_ pid: pid_t, moveID: String, shippedTTY: Bool) -> String? {
        guard let record = deputies.withLock({ $0[pid] }) else { return "no deputy was expected for \(pid)" }
        guard let path = deputyProgram(for: pid) else { return "the process's root has no \(AuthKey.runningRoot) with ssi in it" }
        let started = Process.now()
        let command = ProcessInspector.arguments(pid)
        let comm = ((try? FileSystem.readText("/proc/\(pid)/comm")) ?? "").trimmingCharacters(in: "\n")
        let name = "ssi-deputy-\(moveID)"
        var argv = DeputyImage.arguments(command: command)
        var image: DeputyImage?
        while image == nil && !argv.isEmpty {
            image = DeputyImage.make(socketName: name, path: path, argv: argv,
                                     environment: ["SSI_DEPUTY_COMM=" + String(comm.prefix(15)), "SSI_DEPUTY_TTY=" + (shippedTTY ? "1" : "0")])
            if image == nil { argv.removeLast() }
        }
        guard let image else { return "its deputy's arguments do not fit a page" }
        let listener: Int32
        do throws(SSIError) { listener = try abstractListener(name) } catch { return error.message }
        defer { close(listener) }
        var step: UnsafePointer<CChar>? = nil
        let relocs = image.relocations.map { Int($0) }
        // Frozen in the move's cgroup (TreeFreezer): the injection thaws it
        // under ptrace. Otherwise the dump left it stopped.
        let freezer = freezers.withLock { $0[moveID] }
        let freezeFile = freezer?.openFreezeFile() ?? -1
        if freezer != nil && freezeFile < 0 { let e = errno; return "its freezer cgroup: \(errnoDescription(e))" }
        defer { if freezeFile >= 0 { close(freezeFile) } }
        let injected = image.blob.withUnsafeBufferPointer { b in
            relocs.withUnsafeBufferPointer { r in
                ssi_inject_deputy(pid, name, Deputy.channel, b.baseAddress, b.count, r.baseAddress, r.count,
                                  image.pathOffset, image.argvOffset, image.envpOffset, freezeFile, &step)
            }
        }
        guard injected == 0 else {
            let e = errno
            return "\(step.map { String(cString: $0) } ?? "?"): \(errnoDescription(e))"
        }
        // Left stopped by the dump: it runs the deputy now (its mask
        // leaves SIGCONT to its default, so this one is not queued). A
        // frozen one runs already and was never stopped: no SIGCONT, which
        // its parent would see as a continue.
        if freezer == nil { kill(pid, SIGCONT) }
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard pollRetrying(&p, timeoutMs: 5000) > 0 else { return "the deputy did not connect" }
        let fd = ssi_accept(listener)
        guard fd >= 0 else { let e = errno; return "accept: \(errnoDescription(e))" }
        trace("process \(pid) left a deputy here in \(Int((Process.now() - started) * 1000)) ms (\(path)); it runs on node \(record.node.current)")
        // Under the early events' lock, as `deputyEvent` delivers: an event
        // that comes now waits for those, never overtakes them.
        record.early.withLock { e in
            record.fd.withLock { $0 = fd }
            for event in e { deliver(event, to: record) }
            e = []
        }
        startThread { [self] in serveDeputy(record) }
        return nil
    }

    /// An event from the node the process runs on (PeerRequest.deputy).
    func deputyEvent(_ pid: pid_t, _ event: DeputyEvent, seq: UInt64, from node: UInt32) -> String? {
        guard let record = deputies.withLock({ $0[pid] }) else { return "no deputy of \(pid) on node \(localNode)" }
        guard record.isNew(report: seq, from: node) else {
            trace("\(event.name) of \(pid) from node \(node) again (report \(seq)): acted on once already")
            return nil
        }
        record.early.withLock { e in
            if record.fd.current < 0 { e.append(event) } else { deliver(event, to: record) }
        }
        return nil
    }

    func deliver(_ event: DeputyEvent, to record: DeputyRecord) {
        let fd = record.fd.current
        switch event {
        case .at(let node):
            record.node.withLock { $0 = node }
            trace("process \(record.pid) (deputy here) runs on node \(node) now")
        case .continued:
            // Continued there (by a SIGCONT sent to it there): the deputy
            // too, if it is stopped (its own SIGCONT, forwarded back, is
            // harmless: the process runs already).
            record.stopKnown.withLock { $0 = false }
            if Self.isStopped(record.pid) { kill(record.pid, SIGCONT) }
        case .stopped(let sig) where (sig == SIGTTIN || sig == SIGTTOU) && ProcessInspector.isForeground(record.pid):
            // Stopped there for reading the terminal in the background,
            // but its job is in the foreground by now (the shell's fg came
            // while the SIGTTIN went there, seconds at TCG speed): the stop
            // is stale. At home the reader would have read; so it goes on
            // there, and the deputy stays as the shell left it.
            trace("process \(record.pid) stopped on node \(record.node.current) by \(sig) after its job came to the foreground: continued")
            startThread { [self] in forwardSignal(SIGCONT, of: record) }
        case .stopped(let sig):
            record.stopKnown.withLock { $0 = true }
            trace("process \(record.pid) stopped on node \(record.node.current) by \(sig): its deputy here too")
            if !Self.isStopped(record.pid), let m = event.message { writeAll(fd, m.line) }
        case .exited, .killed:
            record.ended.withLock { $0 = true }
            forgetDeputy(record.pid)
            if let m = event.message { writeAll(fd, m.line) }
            trace("process \(record.pid) ended on node \(record.node.current) (\(event.name) \(event.value)); its deputy here too")
        }
    }

    static func isStopped(_ pid: pid_t) -> Bool {
        guard let stat = try? FileSystem.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
        return state == "T" || state == "t"
    }

    /// One thread per deputy: what it received goes to the process; a
    /// stop no one told it of (SIGSTOP, which it cannot catch) too; its
    /// death or its process's node leaving ends the other.
    func serveDeputy(_ record: DeputyRecord) {
        let fd = record.fd.current
        defer { close(fd) }
        var buffer: [UInt8] = []
        var lastMembershipCheck = Process.now()
        var downSince: Double?
        while !record.ended.current {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = pollRetrying(&p, timeoutMs: 200)
            if ready > 0 {
                var chunk = [UInt8](repeating: 0, count: 256)
                let got = attempt { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
                if got == .wouldBlock { continue }
                if case .done(let n) = got, n > 0 {
                    buffer += chunk[0..<n]
                    guard let messages = DeputyMessage.take(&buffer) else {
                        trace("deputy \(record.pid): a line that is not a signal; its socket is closed")
                        break
                    }
                    for case .signal(let sig) in messages {
                        // The kernel discards these three for an orphaned
                        // group (unless caught, which a deputy does): as it
                        // would have for the process here.
                        if [SIGTSTP, SIGTTIN, SIGTTOU].contains(sig), let g = ProcessInspector.group(of: record.pid),
                           ProcessInspector.isOrphaned(group: g) {
                            trace("deputy \(record.pid): signal \(sig) not forwarded: its group \(g) is orphaned here")
                            continue
                        }
                        // Continued (its shell's bg or fg): a stop seen
                        // from now on is a new one. Cleared here, not when
                        // the loop finds it running: that look can fall
                        // between `deliver` marking a stop and the deputy
                        // stopping, and the stop would go back as SIGSTOP.
                        if sig == SIGCONT { record.stopKnown.withLock { $0 = false } }
                        forwardSignal(sig, of: record)
                    }
                    continue
                }
                // The deputy is gone without being told to go: killed here
                // (SIGKILL, which it cannot catch). So is the process.
                if !record.ended.current {
                    forgetDeputy(record.pid)
                    trace("deputy \(record.pid) died here: SIGKILL to the process on node \(record.node.current)")
                    forwardSignal(SIGKILL, of: record)
                }
                return
            }
            // A SIGSTOP sent to the deputy stops it without a word.
            if Self.isStopped(record.pid), !record.stopKnown.withLock({ k in defer { k = true }; return k }) {
                forwardSignal(SIGSTOP, of: record)
            }
            if Process.now() - lastMembershipCheck > 1 {
                lastMembershipCheck = Process.now()
                let node = record.node.current
                // Gone for the departure grace: a moment's view (a
                // membership re-forming around a stalled node) does not
                // end it.
                if peerDeparted(node, downSince: &downSince) && !record.ended.current {
                    // Its node left: the process is lost with it (no copy
                    // is kept elsewhere); the parent sees it killed.
                    record.ended.withLock { $0 = true }
                    forgetDeputy(record.pid)
                    trace("node \(node) left with process \(record.pid): its deputy here ends as killed")
                    writeAll(fd, DeputyMessage.killed(SIGKILL).line)
                }
            }
        }
    }

    func forwardSignal(_ sig: Int32, of record: DeputyRecord) {
        let node = record.node.current
        do throws(SSIError) {
            let c = try connect(node, timeoutSeconds: 5)
            defer { c.close() }
            try c.send(PeerRequest.kill(pid: record.pid, signal: sig, uid: record.uid).encode())
            let r = try c.expectFields("node \(node)'s answer")
            if case .error(let message)? = try? PeerReply.decode(r) { trace("signal \(sig) for \(record.pid) on node \(node): \(message)") }
        } catch {
            trace("signal \(sig) for \(record.pid) on node \(node): \(error.description)")
        }
    }

    // MARK: the running node's side

    /// A restored process whose deputy is at `home`.
    func adoptDeputyHome(_ pid: pid_t, home: UInt32) {
        deputyHomes.withLock { $0[pid] = home }
        report(.at(node: localNode), of: pid)
    }

    /// A stop or continue of a child (the reaper's), for its deputy. A
    /// stop signal converted to SIGSTOP (see `signalHere`) is reported as
    /// the signal it was.
    func jobControl(_ pid: pid_t, stopped sig: Int32?) {
        guard deputyHomes.withLock({ $0[pid] }) != nil, !departed.current.contains(pid) else { return }
        if let sig {
            let was = convertedStops.withLock { $0.removeValue(forKey: pid) } ?? sig
            report(.stopped(signal: was), of: pid)
        } else {
            // A conversion that found it stopped already made no stop of
            // its own: forgotten, or a later SIGSTOP would be reported as
            // that signal.
            _ = convertedStops.withLock { $0.removeValue(forKey: pid) }
            report(.continued, of: pid)
        }
    }

    /// Queued in order (one sender thread), each on its own connection,
    /// numbered: one sent again after its answer was lost (three tries)
    /// is dropped at home (DeputyRecord.lastReport).
    func report(_ event: DeputyEvent, of pid: pid_t) {
        guard let home = deputyHomes.withLock({ $0[pid] }) else { return }
        switch event {
        case .exited, .killed: _ = deputyHomes.withLock { $0.removeValue(forKey: pid) }
        default: break
        }
        let seq = deputyReportNumber.withLock { n in n += 1; return n }
        deputyReports.withLock { $0.append((pid, home, event, seq)) }
        deputyReportsReady.signal()
    }

    func startDeputyReporter() {
        startThread { [self] in
            while true {
                deputyReportsReady.wait()
                while let (pid, home, event, seq) = deputyReports.withLock({ q in q.isEmpty ? nil : q.removeFirst() }) {
                    var sent = false
                    for attempt in 0..<3 where !sent {
                        if attempt > 0 { Process.sleep(milliseconds: 1000) }
                        do throws(SSIError) {
                            let c = try connect(home, timeoutSeconds: 5)
                            defer { c.close() }
                            try c.send(PeerRequest.deputy(pid: pid, event: event, seq: seq).encode())
                            let r = try c.expectFields("node \(home)'s answer")
                            if case .error(let message)? = try? PeerReply.decode(r) { trace("\(event.name) of \(pid) for its home, node \(home): \(message)") }
                            sent = true
                        } catch {
                            trace("\(event.name) of \(pid) not told to its home, node \(home): \(error.description)")
                            // A home that left is not waited for: the
                            // process runs on, without a deputy.
                            if peers()[home]?.up != true { break }
                        }
                    }
                }
            }
        }
    }
}

/// A unix socket listening on abstract name `name` (one connection: an
/// injected process's), for the injections' connect.
func abstractListener(_ name: String) throws(SSIError) -> Int32 {
    let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard listener >= 0 else { let e = errno; throw SSIError("migrate", "socket: \(errnoDescription(e))") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(name.utf8.prefix(100))
    withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i + 1] = b } }
    let len = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
    guard rc == 0, listen(listener, 1) == 0 else {
        let e = errno
        close(listener)
        throw SSIError("migrate", "bind @\(name): \(errnoDescription(e))")
    }
    return listener
}

/// The reporter thread's wake-up: a POSIX semaphore.
final class Wakeup: @unchecked Sendable {
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(sem, 0, 0) }
    func signal() { sem_post(sem) }
    func wait() { _ = attempt { sem_wait(sem) } }
}

