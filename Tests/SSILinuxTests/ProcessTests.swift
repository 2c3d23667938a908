import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SSILinux

@Suite("Process")
struct ProcessTests {
    // CI once saw util-linux's umount exit 0 in a test: fsck, run in the
    // same test process, waited with waitpid(-1) and took the status of a
    // child that was not its own. Outside PID 1, waiting reaps only the
    // child asked for.
    @Test("waiting for one child leaves the status of another to its own waiter")
    func waitTakesOnlyItsChild() throws {
        let early = try Process.spawn("/bin/sh", ["sh", "-c", "exit 7"], environment: [])
        let late = try Process.spawn("/bin/sh", ["sh", "-c", "sleep 0.3; exit 3"], environment: [])
        #expect(try Process.wait(for: late) == .exited(3))
        #expect(try Process.wait(for: early) == .exited(7), "the early child's status was reaped by the wait for the late one")
    }

    @Test("a signal is reported as the signal")
    func signaled() throws {
        let pid = try Process.spawn("/bin/sh", ["sh", "-c", "kill -KILL $$"], environment: [])
        #expect(try Process.wait(for: pid) == .signaled(SIGKILL))
    }
}
