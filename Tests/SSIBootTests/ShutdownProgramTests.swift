import Foundation
import Testing
import SSITestSupport
@testable import SSIBoot

/// The exit program as PID 1, for real, without a VM: a PID namespace
/// whose init is a shell that starts three "@" daemons (as ssi-init's
/// corosync, dlm_controld and agent are) and then execs /shutdown, as
/// systemd-shutdown does in the exit root. The root is a test-made tree
/// with an old root and an old /run in it. In a PID namespace, reboot(2)
/// ends the namespace: its init dies of SIGINT for a power-off and of
/// SIGHUP for a reboot, which is how the test sees which was asked.
/// The GFS2 part (a lockspace left, no fence) is the GFS2 VM test's.
@Suite struct ShutdownProgramTests {
    static let usable = BuiltBinary.ssi != nil && getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/bash")

    /// Runs the rig with `verb`; unshare's exit status, stdout and stderr.
    static func runRig(verb: String) throws -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
        let ssi = BuiltBinary.ssi!
        let rig = NSTemporaryDirectory() + "ssi-exit-rig-\(getpid())-\(verb)"
        try FileManager.default.createDirectory(atPath: rig, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: rig) }
        // Debian's merged /usr: the host's /usr bound read-only is every
        // program and library the rig needs.
        let setup = """
            set -e
            R=\(rig)
            mkdir -p $R/usr $R/proc $R/sys $R/dev $R/run $R/oldroot $R/oldrun
            for l in bin sbin lib lib64; do ln -s usr/$l $R/$l; done
            mount --bind /usr $R/usr && mount -o remount,bind,ro $R/usr
            touch $R/shutdown && mount --bind \(ssi) $R/shutdown
            mount -t sysfs sysfs $R/sys
            touch $R/dev/null && mount --bind /dev/null $R/dev/null
            mount -t tmpfs oldroot $R/oldroot && mkdir $R/oldroot/run
            mount -t tmpfs oldrun $R/oldroot/run && mkdir -p $R/oldroot/run/ssi/root/proc $R/oldroot/run/ssi/root/sys $R/oldroot/run/ssi/root/dev $R/oldroot/run/ssi/root/run
            exec unshare --pid --fork --mount-proc=/proc --root=$R /usr/bin/bash -c '
                (exec -a @/usr/sbin/corosync sleep 60) &
                (exec -a @/usr/sbin/dlm_controld sleep 60) &
                (exec -a @/usr/bin/ssi sleep 60) &
                sleep 0.3
                exec /shutdown \(verb) --log-level info'
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-m", "--propagation", "private", "sh", "-c", setup]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, p.terminationReason, stderr)
    }

    @Test("power-off: the old /run moved out and the daemons' file systems mounted again, the old root unmounted, the agents, dlm_controld and corosync stopped in that order, then reboot(2) ends the namespace as a power-off",
          .enabled(if: usable, "needs root, unshare, bash and a built ssi"), .timeLimit(.minutes(1)))
    func powerOff() throws {
        let run = try Self.runRig(verb: "poweroff")
        let err = run.stderr
        #expect(run.status == 128 + SIGINT || (run.reason == .uncaughtSignal && run.status == SIGINT),
                "a power-off in a PID namespace kills its init with SIGINT: \(run.status) \(run.reason)\n\(err)")
        #expect(err.contains("exit: in the exit root for poweroff"), "\(err)")
        let configfs = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8))?.contains("\tconfigfs\n") ?? false
        #expect(err.contains("moved the old /run (the daemons' root) out of the old root; mounted for the daemons again: proc sys "
                             + (configfs ? "sys/kernel/config " : "")), "\(err)")
        #expect(err.contains(" dev run"), "\(err)")
        #expect(err.contains("exit: the old root is unmounted and no lockspace is left"), "\(err)")
        let stops = ["exit: stopping the agents (pid ", "exit: stopping dlm_controld (pid ", "exit: stopping corosync (pid "].map { err.range(of: $0)?.lowerBound }
        #expect(stops.allSatisfy { $0 != nil } && stops.compactMap { $0 } == stops.compactMap { $0 }.sorted(), "in order: \(err)")
        #expect(!err.contains("did not stop within"), "SIGTERM was enough: \(err)")
        #expect(err.contains("exit: powering off"), "\(err)")
        #expect(!err.contains("WARNING"), "\(err)")
    }

    @Test("reboot: the verb among systemd-shutdown's arguments is the one done",
          .enabled(if: usable, "needs root, unshare, bash and a built ssi"), .timeLimit(.minutes(1)))
    func reboot() throws {
        let run = try Self.runRig(verb: "reboot")
        #expect(run.status == 128 + SIGHUP || (run.reason == .uncaughtSignal && run.status == SIGHUP),
                "a reboot in a PID namespace kills its init with SIGHUP: \(run.status) \(run.reason)\n\(run.stderr)")
        #expect(run.stderr.contains("exit: in the exit root for reboot") && run.stderr.contains("exit: rebooting"), "\(run.stderr)")
    }

    @Test("its arguments come from /proc/self/cmdline, empty words kept; a missing file falls back to CommandLine")
    func arguments() throws {
        let file = NSTemporaryDirectory() + "ssi-cmdline-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data("/shutdown\0poweroff\0\0--log-level\0info\0".utf8).write(to: URL(fileURLWithPath: file))
        #expect(ShutdownProgram.arguments(cmdline: file) == ["/shutdown", "poweroff", "", "--log-level", "info"])
        #expect(ShutdownProgram.arguments(cmdline: file + ".none") == CommandLine.arguments)
    }
}
