import Testing
#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import Synchronization
@testable import SSICore
@testable import SSILinux

/// The one spawn (`SpawnSpec`, `ssi_spawn`): each step of the child as the
/// kernel sees it, and a failed step reported with its name and errno.
@Suite("Spawn")
struct SpawnTests {
    static let nobody: uid_t = 65534
    static let nogroup: gid_t = 65534
    static let canChangeIDs: Bool = {
        guard let text = try? FileSystem.readText("/proc/self/status"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let caps = UInt64(String(line.dropFirst(7).filter { $0 != " " && $0 != "\t" }), radix: 16) else { return false }
        // CAP_SETGID 6, CAP_SETUID 7, CAP_SYS_CHROOT 18.
        return caps & (1 << 6) != 0 && caps & (1 << 7) != 0 && caps & (1 << 18) != 0
    }()

    /// Runs `spec` with stdout and stderr on a pipe (and stdin /dev/null
    /// unless the spec maps descriptors itself): its exit and output.
    func run(_ spec: SpawnSpec, stdin: SpawnSpec.Source = .null) throws -> (exit: Process.Exit, out: String) {
        var spec = spec
        let pipe = try OwnedPipe()
        if case .inherit(let map) = spec.descriptors, map.isEmpty {
            spec.descriptors = .exactly([stdin, .fd(pipe.write.rawValue), .fd(pipe.write.rawValue)])
        }
        let pid: pid_t
        do { pid = try spec.spawn() } catch {
            pipe.write.close()
            throw error
        }
        pipe.write.close()
        let out = try readAll(pipe.read.rawValue, name: "pipe")
        return (try Process.wait(for: pid), String(decoding: out, as: UTF8.self))
    }

    func shell(_ script: String) -> SpawnSpec {
        SpawnSpec(.path("/bin/sh"), argv: ["sh", "-c", script], environment: ["PATH=/usr/bin:/bin"])
    }

    /// A directory only root may enter, with `inner` below it (0755).
    final class RootOnly {
        let outer: String
        var inner: String { outer + "/inner" }
        init() throws {
            var template = Array("/tmp/ssi-spawn-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw SystemCallError("mkdtemp", errno: errno) }
            outer = String(cString: p)
            try syscall("mkdir") { mkdir(outer + "/inner", 0o755) }
            try syscall("chmod") { chmod(outer, 0o700) }
        }
        deinit { rmdir(outer + "/inner"); rmdir(outer) }
    }

    @Test("as nobody: the child's uid, gid and groups are exactly those asked for (real, effective, saved, fs)",
          .enabled(if: canChangeIDs))
    func credentials() throws {
        var spec = shell("grep -E '^(Uid|Gid|Groups):' /proc/self/status")
        spec.credentials = .init(uid: Self.nobody, gid: Self.nogroup, groups: [Self.nogroup, 100])
        let r = try run(spec)
        #expect(r.exit == .exited(0), "\(r)")
        let lines = r.out.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }) }
        let uids = lines.first { $0.first == "Uid:" }?.dropFirst().map(String.init)
        let gids = lines.first { $0.first == "Gid:" }?.dropFirst().map(String.init)
        let groups = lines.first { $0.first == "Groups:" }?.dropFirst().map(String.init)
        #expect(uids == Array(repeating: "65534", count: 4), "\(r.out)")
        #expect(gids == Array(repeating: "65534", count: 4), "\(r.out)")
        #expect(groups?.sorted() == ["100", "65534"], "\(r.out)")
    }

    @Test("an id the C side would read as -1 (unchanged) is refused, not run as root")
    func idsOutOfRange() {
        var spec = shell("true")
        spec.credentials = .init(uid: UInt32.max, gid: UInt32.max, groups: [])
        #expect(throws: SystemCallError.self) { try spec.spawn() }
        spec.credentials = .init(uid: 1 << 31, gid: 0, groups: [])
        #expect(throws: SystemCallError.self) { try spec.spawn() }
    }

    @Test("the identity is dropped before the directory: nobody cannot chdir under a 0700 root directory, and the error names the step",
          .enabled(if: canChangeIDs))
    func cwdAsTheNewIdentity() throws {
        let dir = try RootOnly()
        // As root it is a fine directory: what follows fails for nobody's sake.
        var asRoot = shell("pwd")
        asRoot.cwd = dir.inner
        #expect(try run(asRoot).out == dir.inner + "\n")

        var spec = shell("pwd")
        spec.cwd = dir.inner
        spec.credentials = .init(uid: Self.nobody, gid: Self.nogroup, groups: [])
        do {
            let leaked = try run(spec)
            Issue.record("nobody's child entered \(dir.inner): \(leaked)")
        } catch let error as SystemCallError {
            #expect(error.call == "chdir \(dir.inner)" && error.errno == EACCES, "\(error)")
        }
    }

    @Test("a failed exec reports its errno and the program, and leaves no child behind")
    func failedExec() throws {
        var template = Array("/tmp/ssi-noexec-XXXXXX".utf8CString)
        let file = Descriptor(owning: mkstemp(&template))
        let notExecutable = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        defer { unlink(notExecutable) }
        try syscall("fchmod") { fchmod(file.rawValue, 0o644) }
        for (path, expected) in [("/nonexistent/program", ENOENT), (notExecutable, EACCES)] {
            do {
                _ = try SpawnSpec(.path(path), argv: [path], environment: []).spawn()
                Issue.record("\(path) started")
            } catch {
                #expect(error.call == "exec \(path)" && error.errno == expected, "\(error)")
            }
        }
        var search = SpawnSpec(.search("no-such-program-xyz"), argv: ["no-such-program-xyz"], environment: ["PATH=/usr/bin:/bin"])
        search.signals = .reset
        #expect(throws: SystemCallError.self) { try search.spawn() }
    }

    @Test("fd mapping: exactly the listed descriptors on 0, 1, 2, 3; nothing else of ours is open in the child")
    func exactDescriptors() throws {
        let three = try OwnedPipe()
        // Not close-on-exec, high: the child must not see it with .exactly.
        let stray = fcntl(open("/dev/null", O_RDONLY | O_CLOEXEC), F_DUPFD, 700)
        try #require(stray >= 700)
        let strayFD = Descriptor(owning: stray)
        let out = try OwnedPipe()
        var spec = shell("echo one; echo three >&3; if [ -e /proc/self/fd/\(strayFD.rawValue) ]; then echo leaked; fi")
        spec.descriptors = .exactly([.null, .fd(out.write.rawValue), .fd(out.write.rawValue), .fd(three.write.rawValue)])
        let pid = try spec.spawn()
        out.write.close()
        three.write.close()
        let o = String(decoding: try readAll(out.read.rawValue, name: "out"), as: UTF8.self)
        let t = String(decoding: try readAll(three.read.rawValue, name: "three"), as: UTF8.self)
        #expect(try Process.wait(for: pid) == .exited(0))
        #expect(o == "one\n", "\(o)")
        #expect(t == "three\n", "\(t)")
    }

    @Test("fd mapping with inherit: the map applies, other descriptors stay, a mapped source keeps only its new number")
    func inheritedDescriptors() throws {
        let kept = fcntl(open("/dev/null", O_RDONLY | O_CLOEXEC), F_DUPFD, 710)
        try #require(kept >= 710)
        let keptFD = Descriptor(owning: kept)
        let out = try OwnedPipe()
        let source = fcntl(out.write.rawValue, F_DUPFD, 720)
        try #require(source >= 720)
        var spec = shell("echo one; [ -e /proc/self/fd/\(keptFD.rawValue) ] && echo kept; [ -e /proc/self/fd/\(source) ] && echo source; true")
        spec.descriptors = .inherit(map: [.null, .fd(source)])
        let pid = try spec.spawn()
        close(source)
        out.write.close()
        let o = String(decoding: try readAll(out.read.rawValue, name: "out"), as: UTF8.self)
        #expect(try Process.wait(for: pid) == .exited(0))
        #expect(o == "one\nkept\n", "\(o)")
    }

    @Test("chroot: the child sees the new root as / and starts in it", .enabled(if: canChangeIDs && FileSystem.isExecutableFile("/usr/bin/busybox")))
    func chroot() throws {
        var template = Array("/tmp/ssi-root-XXXXXX".utf8CString)
        let root = String(cString: try #require(mkdtemp(&template)))
        defer { unlink(root + "/busybox"); rmdir(root + "/d"); rmdir(root) }
        try FileSystem.copyFile("/usr/bin/busybox", to: root + "/busybox", mode: 0o755)
        try syscall("mkdir") { mkdir(root + "/d", 0o755) }
        var spec = SpawnSpec(.path("/busybox"), argv: ["busybox", "sh", "-c", "pwd; ls /"], environment: [])
        spec.root = root
        spec.cwd = "/d"
        // No /dev/null in this root: stdin is one opened here.
        do {
            _ = try run(spec)
            Issue.record("/dev/null opened in a root that has none")
        } catch let error as SystemCallError {
            #expect(error.call.hasPrefix("/dev/null") && error.errno == ENOENT, "\(error)")
        }
        let null = try Descriptor(open: "/dev/null", O_RDONLY)
        let r = try run(spec, stdin: .fd(null.rawValue))
        #expect(r.exit == .exited(0), "\(r)")
        #expect(r.out == "/d\nbusybox\nd\n", "\(r.out)")

        var missing = SpawnSpec(.path("/busybox"), argv: ["busybox", "true"], environment: [])
        missing.root = root + "/no-such-root"
        do {
            _ = try missing.spawn()
            Issue.record("started in a root that does not exist")
        } catch {
            #expect(error.call == "chroot \(root)/no-such-root" && error.errno == ENOENT, "\(error)")
        }
    }

    @Test("a thread that enters another root sees it as /, the process's other threads keep theirs, and a child the thread starts begins there",
          .enabled(if: canChangeIDs && FileSystem.isExecutableFile("/usr/bin/busybox")))
    func threadRoot() throws {
        var template = Array("/tmp/ssi-troot-XXXXXX".utf8CString)
        let root = String(cString: try #require(mkdtemp(&template)))
        defer { unlink(root + "/busybox"); unlink(root + "/marker"); rmdir(root) }
        try FileSystem.copyFile("/usr/bin/busybox", to: root + "/busybox", mode: 0o755)
        try FileSystem.writeFile(root + "/marker", "inside\n")
        let null = try Descriptor(open: "/dev/null", O_RDONLY)
        let pipe = try OwnedPipe()
        let (nullFD, out) = (null.rawValue, pipe.write.rawValue)
        final class Shared: Sendable { let state = Mutex<(lines: [String], done: Bool)>(([], false)) }
        let shared = Shared()
        startThread {
            var lines: [String] = []
            do throws(SystemCallError) {
                try enterRootOnThisThread(root)
                lines.append((try? FileSystem.readText("/marker")) ?? "no /marker")
                let spec = SpawnSpec(.path("/busybox"), argv: ["busybox", "sh", "-c", "/busybox cat /marker; pwd"], environment: [])
                var mapped = spec
                mapped.descriptors = .exactly([.fd(nullFD), .fd(out), .fd(out)])
                let pid = try mapped.spawn()
                lines.append("\(try Process.wait(for: pid))")
            } catch {
                lines.append("error: \(error)")
            }
            shared.state.withLock { $0 = (lines, true) }
        }
        for _ in 0..<500 where !shared.state.withLock({ $0.done }) { usleep(10_000) }
        pipe.write.close()
        let (lines, done) = shared.state.withLock { $0 }
        #expect(done, "the thread did not finish in 5 s")
        #expect(lines == ["inside\n", "\(Process.Exit.exited(0))"], "\(lines)")
        let output = String(decoding: try readAll(pipe.read.rawValue, name: "out"), as: UTF8.self)
        #expect(output == "inside\n/\n", "\(output)")
        // This thread's root is still the process's.
        #expect(!FileSystem.exists("/marker") && !FileSystem.exists("/busybox"))
    }

    @Test("a new session: the child leads it")
    func newSession() throws {
        var spec = shell("cut -d' ' -f6 /proc/self/stat; echo $$")
        spec.newSession = true
        let r = try run(spec)
        let words = r.out.split(separator: "\n")
        #expect(words.count == 2 && words[0] == words[1], "session id and pid: \(r.out)")
    }
}

@Suite("One I/O loop")
struct IOTests {
    @Test("transferAll resumes after short transfers and EINTR, and gives every byte once, in order")
    func shortTransfers() throws {
        let bytes = (0..<1000).map { UInt8($0 & 0xff) }
        var got: [UInt8] = []
        var calls = 0
        let failure: SystemCallError? = bytes.withUnsafeBytes { b in
            do throws(SystemCallError) {
                try transferAll(b, "write fake") { p, n in
                    calls += 1
                    if calls % 3 == 0 { errno = EINTR; return -1 }
                    let k = min(n, 7)
                    got += UnsafeRawBufferPointer(start: p, count: k)
                    return k
                }
                return nil
            } catch { return error }
        }
        #expect(failure == nil)
        #expect(got == bytes)
        #expect(calls > 1000 / 7)
    }

    @Test("a transfer that makes no progress is an error, not a loop")
    func noProgress() {
        let bytes: [UInt8] = [1, 2, 3]
        let failure: SystemCallError? = bytes.withUnsafeBytes { b in
            do throws(SystemCallError) { try transferAll(b, "write stuck") { _, _ in 0 }; return nil } catch { return error }
        }
        #expect(failure?.errno == EIO && failure?.call == "write stuck")
    }

    @Test("writeAll puts 1 MiB through a 4 KiB pipe whose reader starts late; every byte arrives in order")
    func pipeWithASlowReader() throws {
        let pipe = try OwnedPipe()
        _ = ssi_set_pipe_size(pipe.write.rawValue, 4096)
        var template = Array("/tmp/ssi-io-XXXXXX".utf8CString)
        let file = Descriptor(owning: mkstemp(&template))
        let path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        defer { unlink(path) }
        // The reader: another process, so that the writer blocks in the
        // kernel with the pipe full, many times over.
        var reader = SpawnSpec(.path("/bin/sh"), argv: ["sh", "-c", "sleep 0.2; cat"], environment: ["PATH=/usr/bin:/bin"])
        reader.descriptors = .exactly([.fd(pipe.read.rawValue), .fd(file.rawValue), .fd(2)])
        let pid = try reader.spawn()
        pipe.read.close()
        let bytes = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        try writeAll(pipe.write.rawValue, bytes, name: "pipe")
        pipe.write.close()
        #expect(try Process.wait(for: pid) == .exited(0))
        #expect(try FileSystem.readFile(path) == bytes)
    }

    @Test("readExactly gathers a message sent in pieces; a stream cut inside one gives what came, a clean end nothing")
    func readExactlyPieces() async throws {
        var fds: [Int32] = [-1, -1]
        try syscall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) }
        let mine = Descriptor(owning: fds[0])
        let theirs = fds[1]
        let writer = Task.detached {
            for piece in [[1, 2], [3], [4, 5, 6], [7]] as [[UInt8]] {
                try? sendAll(theirs, piece, name: "peer")
                usleep(20_000)
            }
            close(theirs)
        }
        #expect(try readExactly(mine.rawValue, 4, name: "peer") == [1, 2, 3, 4])
        #expect(try readExactly(mine.rawValue, 5, name: "peer") == [5, 6, 7], "cut inside the second message")
        #expect(try readExactly(mine.rawValue, 2, name: "peer") == [], "a clean end")
        await writer.value
    }

    @Test("sendAll on a socket whose peer is gone is EPIPE, not SIGPIPE")
    func sendToAClosedPeer() throws {
        var fds: [Int32] = [-1, -1]
        try syscall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) }
        let mine = Descriptor(owning: fds[0])
        close(fds[1])
        do {
            try sendAll(mine.rawValue, [1, 2, 3], name: "peer")
            Issue.record("sent to a closed peer")
        } catch {
            #expect(error.errno == EPIPE && error.call == "send peer", "\(error)")
        }
    }
}

@Suite("Descriptor")
struct DescriptorTests {
    /// A descriptor number far above what other tests' opens get (the
    /// lowest free one), so that reusing it here races with nobody.
    func high(_ n: Int32) throws -> Int32 {
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let h = fcntl(fd, F_DUPFD_CLOEXEC, n)
        try #require(h >= n)
        return h
    }

    func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

    @Test("closed when it ends, and by close() exactly once: the number given to someone else after close() stays theirs")
    func closesOnce() throws {
        let a = try high(800)
        do { let d = Descriptor(owning: a); _ = d.rawValue }
        #expect(!isOpen(a), "not closed at the end of its scope")

        let b = try high(810)
        let other = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(other) }
        do {
            let d = Descriptor(owning: b)
            d.close()
            #expect(!isOpen(b))
            // Someone else now has the same number.
            #expect(dup2(other, b) == b)
        }
        #expect(isOpen(b), "closed a second time: another owner's descriptor went with it")
        close(b)
    }

    @Test("take() gives it up without closing")
    func take() throws {
        let c = try high(820)
        let d = Descriptor(owning: c)
        let raw = d.take()
        #expect(raw == c && isOpen(c))
        close(c)
    }
}
