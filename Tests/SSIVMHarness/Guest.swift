// One qemu guest: its command line, the wrapper that bounds its life, its
// serial console (a log file to read, a socket to type into).

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A disk attached as virtio-blk (vda, vdb, ... in this order).
public struct Disk: Sendable {
    public var path: String
    /// Attached to several guests at once: `file.locking=off` on the drive,
    /// `share-rw=on` on the device.
    public var shared: Bool
    public var readOnly: Bool
    /// Writes go to a temporary overlay qemu throws away: one image can
    /// back several guests that each think they own it.
    public var snapshot: Bool
    public var format: String

    public init(_ path: String, shared: Bool = false, readOnly: Bool = false, snapshot: Bool = false,
                format: String = "raw") {
        self.path = path
        self.shared = shared
        self.readOnly = readOnly
        self.snapshot = snapshot
        self.format = format
    }
}

/// How to start a guest. Defaults boot the host's kernel under TCG with
/// 512 MB and one CPU, the console on ttyS0, no disks and no NICs.
public struct GuestConfig: Sendable {
    public var name: String
    public var kernel: String
    public var initrd: String?
    /// Appended to `baseKernelArguments`.
    public var kernelArguments: [String]

    /// Every guest's: the serial console, no reboot on panic, and
    /// `virtio_net.napi_tx=0`. With TX NAPI (the default), Debian 12's
    /// 6.1.192 guest under qemu 7.2's TCG stops transmitting for good
    /// ("NETDEV WATCHDOG: transmit queue 0 timed out", every 5 s): the CFS
    /// init node did so twice in CI while serving two PXE downloads, and a
    /// reproduction (3 parallel TFTP downloads of vmlinuz from the init
    /// node, in a loop) stalled it after 113 rounds; with napi_tx=0, 388
    /// rounds and no stall. A guest-driver matter, not ssi's: DESIGN-NOTES.md.
    public static let baseKernelArguments = ["console=ttyS0", "panic=-1", "virtio_net.napi_tx=0"]
    public var memoryMB: Int = 512
    public var cpus: Int = 1
    /// q35 and pc boot equally fast under TCG here; q35 is the modern one.
    public var machine: String = "q35"
    /// `max` gives the guest every feature TCG emulates (what CRIU and
    /// modern binaries expect); `qemu64` boots about 10 % faster.
    public var cpu: String = "max"
    public var disks: [Disk] = []
    public var nics: [NIC] = []
    /// Hard limit for the qemu process (`timeout -k 5 LIMIT`), whatever the
    /// test does.
    public var timeLimit: Duration = .seconds(300)
    /// Load the NICs' iPXE option ROM (needed only for network boot).
    public var nicBootROM: Bool = false
    /// Boot from the network like a diskless machine: no `-kernel`, the
    /// firmware's PXE (qemu's iPXE ROM on the first NIC) fetches kernel
    /// and image; SeaBIOS and iPXE print on the serial console.
    public var networkBoot: Bool = false
    /// Boot from the first disk like a machine with its own disk: no
    /// `-kernel`, SeaBIOS starts the disk's boot loader (GRUB); both print
    /// on the serial console.
    public var diskBoot: Bool = false
    /// No `-kernel`: the firmware finds what to boot.
    var firmwareBoots: Bool { networkBoot || diskBoot }
    public var extraQEMUArguments: [String] = []
    /// A TPM 2.0 for the guest: swtpm, its state in this directory (made
    /// if missing; the same directory is the same TPM at the next boot, a
    /// new one another TPM), started before qemu and ended with it.
    public var tpmState: String?

    public init(name: String, kernel: String? = nil, initrd: String? = nil, kernelArguments: [String] = []) {
        self.name = name
        self.kernel = kernel ?? VMHost.kernel?.path ?? "/boot/vmlinuz"
        self.initrd = initrd
        self.kernelArguments = kernelArguments
    }
}

/// Output of a command run in a guest's console shell.
public struct ShellResult: Sendable, CustomStringConvertible {
    public let command: String
    /// The lines between the start and end markers (kernel messages that
    /// landed in between are left out), joined with "\n".
    public let output: String
    public let status: Int32
    public var description: String { "$ \(command)\n\(output)\n(status \(status))" }
}

public final class Guest: Sendable {
    public let name: String
    public let config: GuestConfig
    /// The pid of the wrapper (`timeout`); qemu is its child.
    public let pid: pid_t
    public let serialLogPath: String
    public let serialSocketPath: String
    public let pidFilePath: String
    /// qemu's (and the wrapper's) stdout and stderr.
    public let qemuOutputPath: String
    /// The full wrapper + qemu command line, for messages.
    public let commandLine: String
    public let startedAt: ContinuousClock.Instant

    /// Lines that end any wait at once: the guest is not going anywhere.
    public static let defaultFailOn: [LineMatch] = ["Kernel panic - not syncing"]

    private struct State {
        var log: SerialLog
        var cursor = 0
        var exitStatus: Int32?
        var connection: SerialConnection?
        var nonce = 0
    }
    private let state: Mutex<State>

    private init(config: GuestConfig, pid: pid_t, files: (log: String, socket: String, pid: String, out: String),
                 commandLine: String) {
        self.name = config.name
        self.config = config
        self.pid = pid
        self.serialLogPath = files.log
        self.serialSocketPath = files.socket
        self.pidFilePath = files.pid
        self.qemuOutputPath = files.out
        self.commandLine = commandLine
        self.startedAt = .now
        self.state = Mutex(State(log: SerialLog(path: files.log)))
    }

    deinit { kill() }

    /// Starts qemu for `config`, its files (NAME.serial.log, NAME.sock,
    /// NAME.pid, NAME.qemu.log) in `directory`, wrapped as
    /// `setpriv --pdeathsig KILL timeout -k 5 LIMIT setpriv --pdeathsig KILL
    /// [ip netns exec NS] qemu-system-x86_64 ...` so that it dies with the
    /// test process and within its time limit.
    public static func start(_ config: GuestConfig, in directory: String) throws -> Guest {
        guard let qemu = VMHost.qemu else { throw HarnessError("qemu-system-x86_64 not found") }
        guard let setpriv = Command.find("setpriv"), let timeout = Command.find("timeout") else {
            throw HarnessError("setpriv and timeout are needed to bound qemu (util-linux, coreutils)")
        }
        guard config.firmwareBoots || FileManager.default.fileExists(atPath: config.kernel) else {
            throw HarnessError("guest \(config.name): kernel \(config.kernel) not found")
        }
        let base = directory + "/" + config.name
        let files = (log: base + ".serial.log", socket: base + ".sock", pid: base + ".pid", out: base + ".qemu.log")
        guard files.socket.utf8.count < 100 else {
            throw HarnessError("serial socket path too long for AF_UNIX (set a shorter TMPDIR): \(files.socket)")
        }
        let namespaces = Set(config.nics.map(\.namespace))
        guard namespaces.count <= 1 else {
            throw HarnessError("guest \(config.name): NICs in several namespaces: \(namespaces.sorted())")
        }

        var wrapper = [setpriv, "--pdeathsig", "KILL",
                       timeout, "-k", "5", "\(Int(config.timeLimit.components.seconds))s",
                       setpriv, "--pdeathsig", "KILL"]
        if let ns = namespaces.first {
            guard let ip = Command.find("ip") else { throw HarnessError("ip not found (iproute2)") }
            wrapper += [ip, "netns", "exec", ns]
        }
        var tpmSocket: String?
        if let state = config.tpmState {
            tpmSocket = try startTPM(state: state, base: base, wrapper: Array(wrapper.prefix(10)))
        }
        let argv = wrapper + [qemu] + qemuArguments(config, files: files, tpmSocket: tpmSocket)
        let line = Command.commandLine(argv)
        try? (line + "\n").write(toFile: files.out, atomically: false, encoding: .utf8)
        let pid = try Command.spawn(argv, stdout: files.out, stderr: files.out)
        let guest = Guest(config: config, pid: pid, files: files, commandLine: line)
        // qemu waits for this connection before it runs the guest.
        do {
            let connection = try SerialConnection.connect(path: files.socket, logPath: files.log, timeout: .seconds(60),
                                                          alive: { guest.isRunning })
            guest.state.withLock { $0.connection = connection }
        } catch {
            guest.kill()
            let output = (try? String(contentsOfFile: files.out, encoding: .utf8)) ?? ""
            throw HarnessError("guest \(config.name): \(error)\nqemu's output (\(files.out)):\n\(output.suffix(2000))")
        }
        return guest
    }

    /// swtpm for a guest, bound like qemu (`wrapper`: setpriv, timeout)
    /// and ending when qemu closes its control socket; returns the socket
    /// once it exists.
    static func startTPM(state: String, base: String, wrapper: [String]) throws -> String {
        guard let swtpm = Command.find("swtpm") else { throw HarnessError("swtpm not found (scripts/setup installs it)") }
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let socket = base + ".tpm"
        try? FileManager.default.removeItem(atPath: socket)
        _ = try Command.spawn(wrapper + [swtpm, "socket", "--tpm2", "--tpmstate", "dir=" + state,
                                         "--ctrl", "type=unixio,path=" + socket, "--terminate"],
                              stdout: base + ".tpm.log", stderr: base + ".tpm.log")
        let deadline = ContinuousClock.now + .seconds(10)
        while !FileManager.default.fileExists(atPath: socket) {
            guard ContinuousClock.now < deadline else { throw HarnessError("swtpm made no socket \(socket) in 10 s (\(base).tpm.log)") }
            usleep(20_000)
        }
        return socket
    }

    public static func qemuArguments(_ c: GuestConfig, files: (log: String, socket: String, pid: String, out: String),
                                     tpmSocket: String? = nil) -> [String] {
        func esc(_ s: String) -> String { s.replacingOccurrences(of: ",", with: ",,") }
        var a = ["-name", c.name,
                 "-machine", c.machine, "-accel", "tcg", "-cpu", c.cpu,
                 "-m", "\(c.memoryMB)", "-smp", "\(c.cpus)",
                 "-nodefaults", "-no-reboot", "-display", "none"]
        if c.firmwareBoots {
            // graphics=off: SeaBIOS prints on the serial console.
            a[a.firstIndex(of: c.machine)!] = c.machine + ",graphics=off"
            a += ["-boot", c.networkBoot ? "n" : "c"]
        } else {
            a += ["-kernel", c.kernel]
            if let initrd = c.initrd { a += ["-initrd", initrd] }
            a += ["-append", (GuestConfig.baseKernelArguments + c.kernelArguments).joined(separator: " ")]
        }
        for (i, d) in c.disks.enumerated() {
            // cache=unsafe: a guest's flush is not passed on as the host's
            // fdatasync. The images live in the host's page cache, which
            // every qemu sharing one shares, and they outlive any guest a
            // test kills, so no test can tell the difference; the host
            // itself never crashes under a test. It was taken against a
            // GFS2 guest's 25 s stall while it flushed a new journal, and
            // did not cure it (the stall came back the same way:
            // VMTest.gfs2TokenTimeoutMs); it stays because flushes of a
            // shared 2 GB image on this runner's one disk buy a test
            // nothing.
            var drive = "file=\(esc(d.path)),format=\(d.format),if=none,id=disk\(i),cache=unsafe"
            if d.shared { drive += ",file.locking=off" }
            if d.readOnly { drive += ",readonly=on" }
            if d.snapshot { drive += ",snapshot=on" }
            a += ["-drive", drive, "-device", "virtio-blk-pci,drive=disk\(i)" + (d.shared ? ",share-rw=on" : "")]
        }
        a += ["-chardev", "socket,id=ser0,path=\(esc(files.socket)),server=on,wait=on",
              "-serial", "chardev:ser0"]
        for (i, n) in c.nics.enumerated() {
            a += ["-netdev", "tap,id=net\(i),ifname=\(n.tap),script=no,downscript=no",
                  "-device", "virtio-net-pci,netdev=net\(i),mac=\(n.mac)" + (c.nicBootROM || (c.networkBoot && i == 0) ? "" : ",romfile=")]
        }
        if let tpmSocket {
            a += ["-chardev", "socket,id=tpm0,path=\(esc(tpmSocket))", "-tpmdev", "emulator,id=tpm0,chardev=tpm0",
                  "-device", "tpm-tis,tpmdev=tpm0"]
        }
        a += ["-pidfile", files.pid]
        return a + c.extraQEMUArguments
    }

    // MARK: - Reading the console

    /// The serial log so far (carriage returns dropped).
    public var log: String {
        state.withLock { s in
            s.log.refresh()
            return s.log.text
        }
    }

    /// The serial log so far, as lines.
    public var lines: [String] {
        state.withLock { s in
            s.log.refresh()
            return s.log.lines + (s.log.partialLine.map { [$0] } ?? [])
        }
    }

    /// Time since qemu was started.
    public var elapsed: Duration { ContinuousClock.now - startedAt }

    /// Waits for a line matching `match` after the previous match (each wait
    /// moves a cursor past the line it returns, so consecutive waits check
    /// the order of the lines) and returns it. Throws, with the tail of the
    /// serial log, on timeout, when the guest exits first, or at once when
    /// a line matches one of `failOn` (and not `match`).
    @discardableResult
    public func waitFor(_ match: LineMatch, timeout: Duration = .seconds(90),
                        failOn: [LineMatch] = Guest.defaultFailOn) async throws -> String {
        try await waitForLine(match, timeout: timeout, failOn: failOn).line
    }

    /// Waits for `match` as long as the guest makes progress: a new
    /// console line or traffic on its NICs (a diskless node loading its
    /// units over NFS prints nothing for minutes on a slow machine, but
    /// reads all the while). `stalled` without either fails at once, with
    /// what it was waiting for and the last line it printed; `limit`
    /// bounds the whole wait however busy the guest is.
    @discardableResult
    public func waitFor(_ match: LineMatch, stalled: Duration, limit: Duration,
                        failOn: [LineMatch] = Guest.defaultFailOn) async throws -> String {
        try await waitForLine(match, timeout: limit, failOn: failOn, stalled: stalled).line
    }

    /// Bytes the guest's NICs received and sent so far (their taps' counters,
    /// read inside the test namespace), or nil without NICs.
    public func networkBytes() -> UInt64? {
        guard !config.nics.isEmpty else { return nil }
        var total: UInt64 = 0
        for n in config.nics {
            for dir in ["rx_bytes", "tx_bytes"] {
                let out = try? Command.run(["ip", "netns", "exec", n.namespace, "cat", "/sys/class/net/\(n.tap)/statistics/\(dir)"],
                                           timeout: .seconds(10), check: false)
                total &+= UInt64(out?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            }
        }
        return total
    }

    /// Waits for the first line that matches any of `matches`; returns which
    /// one and the line.
    public func waitFor(anyOf matches: [LineMatch], timeout: Duration = .seconds(90),
                        failOn: [LineMatch] = Guest.defaultFailOn) async throws -> (index: Int, line: String) {
        let any = LineMatch(description: matches.map(\.description).joined(separator: " or ")) { line in
            matches.contains { $0.matches(line) }
        }
        let line = try await waitForLine(any, timeout: timeout, failOn: failOn).line
        return (matches.firstIndex { $0.matches(line) }!, line)
    }

    /// Moves the wait cursor back to the first line (or to the end).
    public func rewind(toEnd: Bool = false) {
        state.withLock { s in
            s.log.refresh()
            s.cursor = toEnd ? s.log.lines.count : 0
        }
    }

    private func waitForLine(_ match: LineMatch, timeout: Duration, failOn: [LineMatch],
                             stalled: Duration? = nil) async throws -> (index: Int, line: String) {
        let deadline = ContinuousClock.now + timeout
        var next = state.withLock { $0.cursor }
        var progress = stalled.map { ProgressWatch(stalled: $0, bytes: networkBytes()) }
        var lastProbe = ContinuousClock.now
        var partialWatch = PartialLineWatch()
        while true {
            let exit = exitStatus()        // before reading: then the log is complete
            let (fresh, partial, count) = state.withLock { s in
                s.log.refresh()
                return (Array(s.log.lines[min(next, s.log.lines.count)...]), s.log.partialLine, s.log.lines.count)
            }
            for (offset, line) in fresh.enumerated() {
                if match.matches(line) {
                    let index = next + offset
                    state.withLock { $0.cursor = index + 1 }
                    return (index, line)
                }
                if let bad = failOn.first(where: { $0.matches(line) }) {
                    throw failure("printed \"\(line)\" (\(bad)) while waiting for \(match)")
                }
            }
            progress?.console(lines: count, partial: partial)
            next = count
            if let partial, match.matches(partial), partialWatch.settled(partial, exited: exit != nil) {
                state.withLock { $0.cursor = count }
                return (count, partial)
            } else if partial.map(match.matches) != true {
                partialWatch = PartialLineWatch()
            }
            if let exit {
                throw failure("exited (\(Self.describe(exit: exit, limit: config.timeLimit))) "
                              + "while waiting for \(match)")
            }
            if ContinuousClock.now >= deadline {
                throw failure("timed out after \(timeout) waiting for \(match)")
            }
            if var watch = progress, ContinuousClock.now - lastProbe >= .seconds(5) {
                lastProbe = ContinuousClock.now
                watch.network(bytes: networkBytes())
                progress = watch
                if watch.isStuck() {
                    let last = lines.last { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? "nothing"
                    throw failure("stuck: no console output and no network traffic for \(watch.stalled) while waiting for \(match); "
                                  + "the last line: \(last)")
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: - Typing into the console

    /// Stops copying the console to the log for `duration` (the guest's
    /// output waits meanwhile): for the harness's test that a busy host,
    /// which leaves the copy unscheduled, loses and doubles no byte.
    public func holdConsole(for duration: Duration) {
        state.withLock { $0.connection }?.hold(for: duration)
    }

    /// Writes `text` to the serial port.
    public func send(_ text: String) throws {
        guard let connection = state.withLock({ $0.connection }) else {
            throw failure("the serial connection is closed (the guest was stopped)")
        }
        try connection.write(Array(text.utf8))
    }

    /// Waits until `text` has appeared anywhere in the console log (not
    /// only after the read cursor): for lines whose order against another
    /// marker is not fixed, like the login banner and a unit's marker.
    public func waitForAnywhere(_ text: String, timeout: Duration = .seconds(120)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !log.contains(text) {
            if ContinuousClock.now >= deadline {
                throw failure("no \"\(text)\" on the console after \(timeout)")
            }
            if !isRunning { throw failure("the guest stopped before printing \"\(text)\"") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Types `command` (one line) into the shell on the console, framed by
    /// markers, and returns what it printed and its exit status. The shell
    /// must already be running (wait for its marker first). With
    /// `expectStatus` set (the default 0), another status throws.
    @discardableResult
    public func run(_ command: String, timeout: Duration = .seconds(30),
                    expectStatus: Int32? = 0) async throws -> ShellResult {
        precondition(!command.contains("\n"), "run() takes one line")
        let nonce = state.withLock { s -> String in
            s.nonce += 1
            return "\(getpid())x\(s.nonce)x\(UInt32.random(in: 0...UInt32.max))"
        }
        let start = "__S_\(nonce)", end = "__E_\(nonce) "
        let began = ContinuousClock.now
        // A command that took long says so in the test log, with the time
        // of day: where a scenario's minutes go, read off any CI run.
        defer {
            let took = ContinuousClock.now - began
            if took >= .seconds(20) {
                let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
                FileHandle.standardError.write(Data(("[vm \(VMHost.timeOfDay())] \(name): \(String(format: "%.0f", seconds)) s: "
                                                     + "`\(command.prefix(120))`\n").utf8))
            }
        }
        // The typed line is echoed; quoting keeps the markers out of the echo.
        try send("echo \"__S_\"'\(nonce)'; \(command); echo \"__E_\"'\(nonce)' $?\n")
        let deadline = ContinuousClock.now + timeout
        // The marker's line may carry a kernel message printed before its
        // newline ("__S_…[  163.01] dlm: …", seen in CI): a prefix match.
        let startLine = LineMatch(description: "the line \"\(start)\"") {
            LineMatch.startsWithMarker(Substring($0.trimmingCharacters(in: .whitespaces)), start)
        }
        let first = try await waitForLine(startLine, timeout: timeout, failOn: Self.defaultFailOn)
        // The end marker may follow output that has no final newline; one
        // doubled byte in it is allowed, as in the start marker.
        @Sendable func endMarker(_ line: String) -> Range<String.Index>? {
            guard let at = line.range(of: "__E_", options: .backwards),
                  LineMatch.startsWithMarker(line[at.lowerBound...], end) else { return nil }
            let rest = line[at.lowerBound...]
            let close = rest.firstIndex(of: " ").map { rest.index(after: $0) } ?? rest.endIndex
            return at.lowerBound..<close
        }
        let last = try await waitForLine(LineMatch(description: "the end marker of `\(command)`") { endMarker($0) != nil },
                                         timeout: max(deadline - .now, .seconds(1)), failOn: Self.defaultFailOn)
        let all = lines
        var output = all[(first.index + 1)..<last.index].filter { !SerialLog.isKernelMessage($0) && !SerialLog.isDaemonConsoleLine($0) }
        guard let marker = endMarker(last.line) else { throw failure("the end marker of `\(command)` went from its line") }
        let before = String(last.line[..<marker.lowerBound])
        if !before.isEmpty { output.append(before) }    // output without a final newline
        let statusText = last.line[marker.upperBound...].prefix { $0.isNumber }
        let result = ShellResult(command: command, output: output.joined(separator: "\n"),
                                 status: Int32(statusText) ?? -1)
        if let expectStatus, result.status != expectStatus {
            throw failure("`\(command)` exited with status \(result.status), not \(expectStatus); output:\n\(result.output)")
        }
        return result
    }

    /// Runs `command` again, once a second, until `done` accepts its
    /// result or `timeout` passes; returns the last result. For what a
    /// node sees only after a bounded delay (a cached tree's change within
    /// [root] cache_seconds), so a slow machine is not failed early and a
    /// stuck one is not waited on for long.
    public func runUntil(_ command: String, timeout: Duration, _ done: (ShellResult) -> Bool) async throws -> ShellResult {
        let deadline = ContinuousClock.now + timeout
        while true {
            // Each try may take what is left of the whole bound (at least
            // 30 s, run's default): a guest that stalls for half a minute
            // (CI, GFS2) is waited for within the caller's bound.
            let result = try await run(command, timeout: max(deadline - .now, .seconds(30)), expectStatus: nil)
            if done(result) || ContinuousClock.now >= deadline { return result }
            try await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: - Lifetime

    /// The wrapper's exit status once it has exited (124: the time limit
    /// hit), else nil.
    public func exitStatus() -> Int32? {
        let (status, connection) = state.withLock { s in
            if s.exitStatus == nil { s.exitStatus = Command.reap(pid: pid) }
            return (s.exitStatus, s.connection)
        }
        // Once qemu has exited, the log is complete when the serial
        // connection's thread has copied its last bytes (a power-off's
        // lines): callers read the log after this says "exited".
        if status != nil { connection?.waitForEnd(timeout: .seconds(3)) }
        return status
    }

    public var isRunning: Bool { exitStatus() == nil }

    /// Waits for qemu to exit (a guest that powers off or reboots) and
    /// returns its status (0 after a power-off).
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = exitStatus() { return status }
            if ContinuousClock.now >= deadline {
                throw failure("still running after \(timeout) (waiting for it to exit)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Stops qemu: SIGTERM through the wrapper, SIGKILL if that takes more
    /// than 3 s. Safe to call more than once; returns promptly.
    public func kill() {
        if exitStatus() == nil {
            Glibc.kill(pid, SIGTERM)
            if !waitSync(.seconds(3)) {
                Glibc.kill(pid, SIGKILL)
                if let text = try? String(contentsOfFile: pidFilePath, encoding: .utf8),
                   let qemuPID = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), qemuPID > 1 {
                    Glibc.kill(qemuPID, SIGKILL)
                }
                _ = waitSync(.seconds(5))
            }
        }
        // After qemu: what it sent before it stopped goes to the log.
        let connection = state.withLock { s -> SerialConnection? in
            defer { s.connection = nil }
            return s.connection
        }
        connection?.waitForEnd(timeout: .seconds(1))
        connection?.close()
    }

    private func waitSync(_ timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if exitStatus() != nil { return true }
            usleep(20_000)
        }
        return exitStatus() != nil
    }

    // MARK: - Diagnostics

    /// The last `lines` lines of the serial log, with its path, and qemu's
    /// own output when it said more than its command line.
    public func diagnostics(lines count: Int = 60) -> String {
        let tail = state.withLock { s -> [String] in
            s.log.refresh()
            return s.log.tail(count)
        }
        var text = "guest \(name): serial log \(serialLogPath) (last \(tail.count) lines):\n"
        text += tail.map { "  | " + $0 }.joined(separator: "\n")
        if let out = try? String(contentsOfFile: qemuOutputPath, encoding: .utf8) {
            let extra = out.split(separator: "\n").dropFirst()     // line 1 is the command line
            if !extra.isEmpty {
                text += "\nqemu output (\(qemuOutputPath)):\n" + extra.suffix(20).map { "  ! " + $0 }.joined(separator: "\n")
            }
        }
        return text
    }

    private func failure(_ what: String) -> HarnessError {
        var text = "guest \(name) \(what) [after \(Self.seconds(elapsed))]\n\(diagnostics())"
        if isRunning {
            // Its processes as the host sees them (HostView): the one
            // trace a guest stalled from outside leaves.
            let base = String(serialLogPath.dropLast(".serial.log".count)) + "."
            text += "\nhost view of \(name)'s processes:\n" + HostView.describe(processesMentioning: base)
        }
        return HarnessError(text)
    }

    static func describe(exit status: Int32, limit: Duration) -> String {
        switch status {
        case 0: "status 0"
        case 124: "status 124: its time limit of \(limit) was hit"
        case 137: "status 137: killed"
        default: "status \(status)"
        }
    }

    /// A kernel printk line ("[    1.234567] ...").
    public static func isKernelMessage(_ line: String) -> Bool { SerialLog.isKernelMessage(line) }
    public static func isDaemonConsoleLine(_ line: String) -> Bool { SerialLog.isDaemonConsoleLine(line) }

    /// "12.3 s"
    public static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return String(format: "%.1f s", Double(ms) / 1000)
    }
}

/// Whether a console line still without its newline may be taken as a
/// match. A line still being printed may match before its end has arrived
/// (the landing CI once returned a refusal cut off before the words the
/// test looked for), so a partial line counts only once it has stopped
/// growing for `settle`: a prompt, which never gets its newline. A line
/// still growing is seen whole at a later poll. A guest that has exited
/// prints no more: its partial line counts at once.
public struct PartialLineWatch {
    private var seen: (text: String, since: ContinuousClock.Instant)?
    public let settle: Duration

    public init(settle: Duration = .seconds(1)) { self.settle = settle }

    public mutating func settled(_ line: String, exited: Bool, now: ContinuousClock.Instant = .now) -> Bool {
        if exited { return true }
        if let seen, seen.text == line { return now - seen.since >= settle }
        seen = (line, now)
        return false
    }
}

/// Whether a guest still makes progress: a new console line (or a longer
/// unfinished one) or more bytes on its NICs since the last look.
public struct ProgressWatch: Sendable {
    public let stalled: Duration
    private var lines = -1
    private var partial: String?
    private var bytes: UInt64?
    private var lastProgress: ContinuousClock.Instant

    public init(stalled: Duration, bytes: UInt64?, now: ContinuousClock.Instant = .now) {
        self.stalled = stalled
        self.bytes = bytes
        lastProgress = now
    }

    public mutating func console(lines count: Int, partial line: String?, now: ContinuousClock.Instant = .now) {
        if count != lines || line != partial { lastProgress = now }
        lines = count
        partial = line
    }

    public mutating func network(bytes now: UInt64?, at instant: ContinuousClock.Instant = .now) {
        if now != bytes { lastProgress = instant }
        bytes = now
    }

    public func isStuck(now: ContinuousClock.Instant = .now) -> Bool { now - lastProgress >= stalled }
}
