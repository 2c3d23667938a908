import Testing
import SSICore
@testable import SSIBoot

/// The cmdline step's value and the failure line every step prints.
@Suite struct StepValuesTests {
    @Test func argvKeepsEmptyArgumentsAndDropsTheLastTerminator() {
        let raw = Array("/init\0single\0\0x=1\0".utf8)
        #expect(KernelArguments.argv(fromProcCmdline: raw) == ["/init", "single", "", "x=1"])
        #expect(KernelArguments.argv(fromProcCmdline: []) == [])
    }

    @Test func environmentSplitsOnNUL() {
        let raw = Array("HOME=/\0TERM=linux\0".utf8)
        #expect(KernelArguments.environment(fromProcEnviron: raw) == ["HOME=/", "TERM=linux"])
    }

    @Test func realInitGetsOurArgumentsUnderItsOwnName() throws {
        var args = KernelArguments(params: try BootTestConfigs.params("init=/lib/systemd/systemd"))
        // No argv (no /proc/self/cmdline): the init alone.
        #expect(args.initArguments() == ["/lib/systemd/systemd"])
        args.argv = ["/init", "single", "emergency"]
        #expect(args.initArguments() == ["/lib/systemd/systemd", "single", "emergency"])
    }

    @Test func failureLineIsMessageThenHint() {
        // The console shows "STEP: ERROR: " and this; VMTests grep it.
        #expect(Boot.failureLine(SSIError("root", "UUID=x not found after 3 s", hint: "check root=")) == "UUID=x not found after 3 s; check root=")
        #expect(Boot.failureLine(SSIError("root", "no hint")) == "no hint")
    }

    @Test func startedAgentsAreRememberedByNameAndForgotten() {
        // A retried step starts only the agents missing here; dlm that
        // exited is forgotten so that the next try starts it again.
        let agents = StartedAgents()
        #expect(agents["dlm"] == nil)
        agents["dlm"] = 42
        agents["corosync"] = 7
        #expect(agents["dlm"] == 42)
        agents["dlm"] = nil
        #expect(agents.pids == ["corosync": 7])
    }
}
