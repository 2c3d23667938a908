import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
@testable import SSIProcess

/// The agent's jobs are one preset of the one spawn: these pin the preset
/// (what onnode and criu got from ssi_spawn_job before) without a kernel,
/// and the errors a failed step gives through the reaper.
@Suite("Jobs")
struct JobsTests {
    @Test("a job is the one spawn with PATH lookup, every signal reset, exactly its descriptors, a new session and the caller's identity")
    func jobPreset() throws {
        var job = JobSpec(root: "/proc/1/root", cwd: "/home/u", argv: ["sh", "-c", "true"], environment: ["PATH=/bin"], fds: [5, 6, 6])
        job.uid = 1000
        job.gid = 100
        job.groups = [100, 27]
        job.controllingTTY = 0
        let s = try job.spawnSpec()
        #expect(s.program == .search("sh") && s.argv == ["sh", "-c", "true"] && s.environment == ["PATH=/bin"])
        #expect(s.root == "/proc/1/root" && s.cwd == "/home/u")
        #expect(s.credentials == .init(uid: 1000, gid: 100, groups: [100, 27]))
        #expect(s.descriptors == .exactly([.fd(5), .fd(6), .fd(6)]))
        #expect(s.signals == .reset && s.newSession && s.controllingTTY == 0 && s.keeper == .none)

        // criu's: no identity change, a keeper.
        var criu = JobSpec(root: nil, cwd: "/", argv: ["criu", "restore"], environment: [], fds: [])
        criu.keeper = 2
        criu.statusFD = 9
        criu.subreaper = 1
        let c = try criu.spawnSpec()
        #expect(c.credentials == nil && c.controllingTTY == nil && c.keeper == .reports(9, subreaper: true))
        criu.keeper = 1
        #expect(try criu.spawnSpec().keeper == .exits(subreaper: true))
    }

    @Test("a uid without a gid, or no program, is refused before anything starts")
    func refusedJobs() {
        var noGID = JobSpec(root: nil, cwd: "/", argv: ["true"], environment: [], fds: [])
        noGID.uid = 65534
        #expect(throws: SSIError.self) { try noGID.spawnSpec() }
        #expect(throws: SSIError.self) { try JobSpec(root: nil, cwd: "/", argv: [], environment: [], fds: []).spawnSpec() }
    }

    @Test("through the reaper: a failed exec is an error naming the program and errno; a started child is registered")
    func reaperSpawn() throws {
        // No start(): no waitpid(-1) thread in the test process.
        let reaper = Reaper()
        let missing = JobSpec(root: nil, cwd: "/", argv: ["no-such-command-xyz"], environment: ["PATH=/usr/bin:/bin"], fds: [])
        do {
            _ = try reaper.spawn(missing)
            Issue.record("a missing program started")
        } catch {
            #expect(error.message == "exec no-such-command-xyz: \(errnoDescription(ENOENT))", "\(error.message)")
        }
        let badDir = JobSpec(root: nil, cwd: "/no/such/dir", argv: ["true"], environment: ["PATH=/usr/bin:/bin"], fds: [])
        #expect(throws: SSIError.self) { try reaper.spawn(badDir) }

        let pid = try reaper.spawn(JobSpec(root: nil, cwd: "/", argv: ["true"], environment: ["PATH=/usr/bin:/bin"], fds: []))
        #expect(try Process.wait(for: pid) == .exited(0))
    }

    @Test("an exit reaped before its pid is watched is kept for the late watch (criu's restored process), and only for a while")
    func earlyExitsAreKept() {
        let reaper = Reaper()
        // Reaped, then watched a second later: the waiter gets it.
        reaper.reaped(4242, .exited(3), now: 100)
        reaper.watch(4242, now: 101)
        #expect(reaper.wait(4242, timeoutMs: 0) == .exited(3))
        // Watched first, reaped after: as before.
        reaper.watch(4343, now: 100)
        reaper.reaped(4343, .signaled(9), now: 102)
        #expect(reaper.wait(4343, timeoutMs: 0) == .signaled(9))
        // Too old: a pid reused by a new process does not get the old exit.
        reaper.reaped(4444, .exited(1), now: 100)
        reaper.watch(4444, now: 100 + Reaper.unclaimedSeconds + 1)
        #expect(reaper.wait(4444, timeoutMs: 0) == nil)
        // Bounded: the oldest unclaimed exits go first.
        for k in 0..<(Reaper.unclaimedLimit + 10) { reaper.reaped(pid_t(100_000 + k), .exited(0), now: 200 + Double(k) / 1000) }
        reaper.watch(100_000, now: 202)
        #expect(reaper.wait(100_000, timeoutMs: 0) == nil)
        reaper.watch(pid_t(100_000 + Reaper.unclaimedLimit + 9), now: 202)
        #expect(reaper.wait(pid_t(100_000 + Reaper.unclaimedLimit + 9), timeoutMs: 0) == .exited(0))
    }
}
