#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// What a deputy and its home agent say to each other on their unix
/// socket (DESIGN-NOTES "A deputy at home"): one line each, ASCII.
/// The agent tells the deputy how the moved process ended or stopped;
/// the deputy tells the agent each signal it received. One codec for both
/// ends; `decode` bounds everything (the socket is the agent's, but a line
/// is still input).
enum DeputyMessage: Equatable, Sendable {
    /// The process exited with `code` (0...255): the deputy exits so.
    case exit(Int32)
    /// A signal ended the process: the deputy ends by it.
    case killed(Int32)
    /// The process stopped on `signal`: the deputy stops on it too, so
    /// that its parent's waitpid(WUNTRACED) sees the stop.
    case stop(Int32)
    /// From the deputy: it received `signal`, for the process.
    case signal(Int32)

    static let maxLine = 32

    var line: String {
        switch self {
        case .exit(let c): return "exit \(c)\n"
        case .killed(let s): return "killed \(s)\n"
        case .stop(let s): return "stop \(s)\n"
        case .signal(let s): return "signal \(s)\n"
        }
    }

    /// One line without its newline; nil for anything else.
    static func decode(_ bytes: ArraySlice<UInt8>) -> DeputyMessage? {
        guard bytes.count <= maxLine, let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let words = text.split(separator: " ", omittingEmptySubsequences: false)
        guard words.count == 2, words[1].utf8.allSatisfy({ (48...57).contains($0) }), !words[1].isEmpty, words[1].count <= 3,
              let n = Int32(words[1]) else { return nil }
        switch words[0] {
        case "exit": return (0...255).contains(n) ? .exit(n) : nil
        case "killed": return (1...64).contains(n) ? .killed(n) : nil
        case "stop": return [SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU].contains(n) ? .stop(n) : nil
        case "signal": return (1...64).contains(n) ? .signal(n) : nil
        default: return nil
        }
    }

    /// Splits what arrived into whole lines; what is left is kept in
    /// `buffer`. A line longer than `maxLine` is an error (nil).
    static func take(_ buffer: inout [UInt8]) -> [DeputyMessage]? {
        var out: [DeputyMessage] = []
        while let nl = buffer.firstIndex(of: 10) {
            guard let m = decode(buffer[..<nl]) else { return nil }
            out.append(m)
            buffer.removeSubrange(...nl)
        }
        return buffer.count > maxLine ? nil : out
    }
}

/// The page injected into the original process before it execs the
/// deputy (ssi_inject_deputy): a layout for address 0, pointer words to
/// relocate. Offsets: 0 the socket address (abstract), 112 the signal
/// mask (every signal but SIGCONT), then the strings, then argv and envp.
struct DeputyImage: Equatable {
    var blob: [UInt8]
    var relocations: [Int]
    var pathOffset: Int
    var argvOffset: Int
    var envpOffset: Int

    static let pageSize = 4096
    static let maskOffset = 112

    /// nil when it does not fit the page: the caller shortens `argv`.
    static func make(socketName: String, path: String, argv: [String], environment: [String]) -> DeputyImage? {
        var blob = [UInt8](repeating: 0, count: maskOffset + 8)
        // sockaddr_un: family, then the abstract name after a 0.
        let family = UInt16(AF_UNIX)
        blob[0] = UInt8(family & 0xff)
        blob[1] = UInt8(family >> 8)
        let name = Array(socketName.utf8)
        guard name.count <= 106, !name.contains(0) else { return nil }
        for (i, b) in name.enumerated() { blob[3 + i] = b }
        // The mask: all 64 bits but SIGCONT's.
        let mask = UInt64.max & ~(UInt64(1) << UInt64(SIGCONT - 1))
        for i in 0..<8 { blob[maskOffset + i] = UInt8((mask >> UInt64(8 * i)) & 0xff) }
        func addString(_ s: String) -> Int? {
            let bytes = Array(s.utf8)
            guard !bytes.contains(0) else { return nil }
            let at = blob.count
            blob += bytes + [0]
            return at
        }
        guard let pathAt = addString(path) else { return nil }
        var argvAt: [Int] = []
        for a in argv { guard let at = addString(a) else { return nil }; argvAt.append(at) }
        var envAt: [Int] = []
        for e in environment { guard let at = addString(e) else { return nil }; envAt.append(at) }
        while blob.count % 8 != 0 { blob.append(0) }
        var relocations: [Int] = []
        func addPointers(_ list: [Int]) -> Int {
            let at = blob.count
            for p in list {
                relocations.append(blob.count)
                blob += withUnsafeBytes(of: UInt64(p).littleEndian, Array.init)
            }
            blob += [UInt8](repeating: 0, count: 8)
            return at
        }
        let argvOffset = addPointers(argvAt)
        let envpOffset = addPointers(envAt)
        guard blob.count <= pageSize else { return nil }
        return DeputyImage(blob: blob, relocations: relocations, pathOffset: pathAt, argvOffset: argvOffset, envpOffset: envpOffset)
    }

    /// The deputy's argv: its mark, then the process's command line, cut
    /// to fit the page (ps on the home node shows "ssi-deputy CMD...").
    static func arguments(command: [String], budget: Int = 2048) -> [String] {
        var out = ["ssi-deputy"]
        var used = 0
        for a in command {
            let n = a.utf8.count + 1
            if used + n > budget { break }
            out.append(a)
            used += n
        }
        return out
    }
}

/// The deputy program (`ssi-deputy`, exec'd by injection into the
/// original of a process that moved away; never run by hand). Descriptor
/// 3 is its home agent. It keeps the process's PID, parent, group and
/// session, so that its parent's wait, the terminal's job control and
/// `kill PID` on this node go on working: every signal it receives goes to
/// the agent (which forwards it to the process wherever it runs), and the
/// agent tells it how the process stopped or ended, which it then does
/// itself.
public enum Deputy {
    static let channel: Int32 = 3

    public static func run() -> Never {
        // Everything but the agent's socket goes: a pipe's end held here
        // would keep its reader from ever seeing end of file (the home
        // agent holds its own copy for the moved process).
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        for fd in Int32(0)...2 where null >= 0 { dup2(null, fd) }
        _ = ssi_close_from(channel + 1)
        let env = ProcessInfoLite.environment
        if let comm = env["SSI_DEPUTY_COMM"], !comm.isEmpty {
            _ = ssi_set_comm(comm)
        }
        // A shipped terminal's window size reaches the process through its
        // stand-in pty: a forwarded SIGWINCH would arrive before the size.
        let skipWinch = env["SSI_DEPUTY_TTY"] == "1"
        // The mask the injection set, with SIGCONT now too: signals are
        // read, never acted on.
        var all = sigset_t()
        sigfillset(&all)
        sigprocmask(SIG_SETMASK, &all, nil)
        let sfd = signalfd(-1, &all, Int32(SFD_CLOEXEC))
        guard sfd >= 0 else { raise(SIGKILL); exit(255) }
        var buffer: [UInt8] = []
        while true {
            var fds = [pollfd(fd: sfd, events: Int16(POLLIN), revents: 0), pollfd(fd: channel, events: Int16(POLLIN), revents: 0)]
            guard pollRetrying(&fds, timeoutMs: -1) >= 0 else { break }
            if fds[0].revents & Int16(POLLIN) != 0 {
                var info = signalfd_siginfo()
                let n = read(sfd, &info, MemoryLayout<signalfd_siginfo>.size)
                if n == MemoryLayout<signalfd_siginfo>.size {
                    let sig = Int32(info.ssi_signo)
                    if sig == SIGCHLD {
                        // The moved tree's other processes were killed here
                        // after this one became the deputy: their zombies.
                        var st: Int32 = 0
                        while waitpid(-1, &st, WNOHANG) > 0 {}
                    } else if !(sig == SIGWINCH && skipWinch) {
                        send(.signal(sig))
                    }
                }
            }
            if fds[1].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 256)
                // The agent is gone (it stopped, or the node shuts down):
                // nothing will tell how the process ends. Ended as the
                // process would be by a lost node.
                guard case .done(let n) = attempt({ chunk.withUnsafeMutableBytes { read(channel, $0.baseAddress, $0.count) } }),
                      n > 0 else { die(by: SIGKILL) }
                buffer += chunk[0..<n]
                guard let messages = DeputyMessage.take(&buffer) else { die(by: SIGKILL) }
                for m in messages { act(m) }
            }
        }
        die(by: SIGKILL)
    }

    static func send(_ m: DeputyMessage) {
        let line = Array(m.line.utf8)
        _ = line.withUnsafeBytes { Glibc.send(channel, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    static func act(_ m: DeputyMessage) {
        switch m {
        case .exit(let code): _exit(code)
        case .killed(let sig): die(by: sig)
        case .stop(let sig):
            // Stopped by the same signal, with its default action, so that
            // the parent's waitpid sees WSTOPSIG as the process had it.
            // (A stop signal sent to an orphaned group is discarded by the
            // kernel, as it would have been for the process here.)
            deliverToSelf(sig)
            var one = Self.only(sig)
            sigprocmask(SIG_BLOCK, &one, nil)
        case .signal: break    // the deputy's own word, not the agent's
        }
    }

    /// Ends by `sig` as the process did (no core: the process's memory
    /// is not here), or, for a signal whose default does not end a
    /// process, with the shell's 128+N.
    static func die(by sig: Int32) -> Never {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        deliverToSelf(sig)
        _exit(128 + sig)
    }

    static func only(_ sig: Int32) -> sigset_t {
        var one = sigset_t()
        sigemptyset(&one)
        sigaddset(&one, sig)
        return one
    }

    /// `sig` with its default action, sent to itself and unblocked: acted
    /// on before sigprocmask returns (a stop stops there, an end ends).
    static func deliverToSelf(_ sig: Int32) {
        signal(sig, SIG_DFL)
        var one = only(sig)
        kill(getpid(), sig)
        sigprocmask(SIG_UNBLOCK, &one, nil)
    }
}

/// The environment as a dictionary, read from `environ` (the deputy
/// starts with two variables; Foundation is not linked).
enum ProcessInfoLite {
    /// `environ` as NAME=VALUE strings (valid UTF-8 ones).
    static var environmentList: [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            if let s = String(validatingCString: entry) { out.append(s) }
            p += 1
        }
        return out
    }

    static var environment: [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}
