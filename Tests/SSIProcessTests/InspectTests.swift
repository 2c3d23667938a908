import Testing
import Foundation
import CSSIShim
import SSICore
@testable import SSIProcess

/// What the migration decides for each kind of descriptor, on a real
/// process of this machine (a child holding one of each).
@Suite struct InspectTests {
    @Test("pipes, connected sockets and node-local files read or written are shipped, /dev/null reopened, listening sockets, node-local files open both ways and directories refused",
          .enabled(if: getuid() == 0, "pidfd_getfd of another process needs root (or ptrace rights)"))
    func classifiesEachKind() throws {
        var p: [Int32] = [-1, -1], pair: [Int32] = [-1, -1]
        #expect(pipe(&p) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 1)
        let dir = "/dev/shm/ssi-inspect-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let local = open(dir + "/f", O_CREAT | O_WRONLY, 0o600)
        let null = open("/dev/null", O_RDONLY)
        let localIn = open(dir + "/f", O_RDONLY)
        let localBoth = open(dir + "/f", O_RDWR)
        let localDir = open(dir, O_RDONLY | O_DIRECTORY)

        // A child that holds them on 3..11 (and sleeps).
        var fds = [p[0], p[1], pair[0], listener, local, null, localIn, localBoth, localDir]
        let job = JobSpec(root: nil, cwd: "/", argv: ["sleep", "30"], environment: ["PATH=/usr/bin:/bin"],
                          fds: [null, null, null] + fds)
        let pid = try job.spawn()
        defer { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
        for fd in fds { close(fd) }
        fds = []
        usleep(100_000)

        let inspector = ProcessInspector(systemRoot: "")
        let d = try inspector.descriptors(pid: pid)
        func at(_ fd: Int32) -> OpenDescriptor.Disposition? { d.first { $0.fd == fd }?.disposition }
        #expect(at(0) == .reopen, "/dev/null")
        if case .ship(.pipeIn, let r)? = at(3) { #expect(r.hasPrefix("pipe:[")) } else { Issue.record("fd 3: \(String(describing: at(3)))") }
        if case .ship(.pipeOut, _)? = at(4) {} else { Issue.record("fd 4: \(String(describing: at(4)))") }
        if case .ship(.socket, let r)? = at(5) { #expect(r.hasPrefix("socket:[")) } else { Issue.record("fd 5: \(String(describing: at(5)))") }
        if case .refuse(let why)? = at(6) { #expect(why.contains("listening socket")) } else { Issue.record("fd 6: \(String(describing: at(6)))") }
        let path = String(dir.dropFirst()) + "/f"
        #expect(at(7) == .ship(.pipeOut, resource: path), "the node-local file written: \(String(describing: at(7)))")
        #expect(at(8) == .reopen)
        #expect(at(9) == .ship(.pipeIn, resource: path), "the node-local file read: \(String(describing: at(9)))")
        if case .refuse(let why)? = at(10) {
            #expect(why.contains("node-local file system (tmpfs at /dev/shm), open for reading and writing"), "\(why)")
        } else { Issue.record("fd 10: \(String(describing: at(10)))") }
        if case .refuse(let why)? = at(11) { #expect(why.contains("and not a regular file"), "\(why)") } else { Issue.record("fd 11: \(String(describing: at(11)))") }
        close(pair[1])
    }

    @Test func treeListsDescendantsParentsFirst() throws {
        let job = JobSpec(root: nil, cwd: "/", argv: ["sh", "-c", "sleep 30 & sleep 30 & wait"], environment: ["PATH=/usr/bin:/bin"], fds: [])
        let pid = try job.spawn()
        defer { kill(-pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
        var tree: [pid_t] = []
        for _ in 0..<50 {
            tree = ProcessInspector.tree(root: pid)
            if tree.count == 3 { break }
            usleep(50_000)
        }
        #expect(tree.count == 3 && tree.first == pid, "\(tree)")
    }
}
