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
}
