import Testing
@testable import SSICore

@Suite struct KernelCommandLineTests {
    @Test func splitsWordsAndQuotes() {
        let c = KernelCommandLine("BOOT_IMAGE=/vmlinuz root=\"LABEL=my root\"  ro quiet\n")
        #expect(c.words == ["BOOT_IMAGE=/vmlinuz", "root=LABEL=my root", "ro", "quiet"])
        #expect(c.value("root") == "LABEL=my root")
        #expect(c.has("quiet"))
        #expect(!c.has("rw"))
    }

    @Test func laterValueWins() {
        let c = KernelCommandLine("root=/dev/sda1 console=tty0 root=UUID=abc console=ttyS0")
        #expect(c.value("root") == "UUID=abc")
        #expect(c.value("console") == "ttyS0")
        #expect(c.value("missing") == nil)
    }

    @Test func keyWithoutValueIsAFlagNotAValue() {
        let c = KernelCommandLine("ssi.break rootwait")
        #expect(c.value("ssi.break") == nil)
        #expect(c.has("ssi.break"))
    }

    @Test func repeatedAndCommaListValues() {
        let c = KernelCommandLine("ssi.break=modules,root ssi.break=pre-pivot")
        #expect(c.values("ssi.break") == ["modules", "root", "pre-pivot"])
    }

    @Test func lastOfRoAndRw() {
        #expect(KernelCommandLine("ro rw").lastFlag(of: ["ro", "rw"]) == "rw")
        #expect(KernelCommandLine("rw quiet ro").lastFlag(of: ["ro", "rw"]) == "ro")
        #expect(KernelCommandLine("quiet").lastFlag(of: ["ro", "rw"]) == nil)
    }

    @Test func wordsAfterDoubleDashAreInitsArguments() {
        let c = KernelCommandLine("root=/dev/vda -- single root=/dev/other")
        #expect(c.value("root") == "/dev/vda")
        #expect(!c.has("single"))
    }

    @Test func emptyValueIsKept() {
        let c = KernelCommandLine("rootflags= root=\"\"")
        #expect(c.value("rootflags") == "")
        #expect(c.value("root") == "")
    }
}

@Suite struct SSIErrorTests {
    @Test func descriptionNamesStepMessageAndHint() {
        let e = SSIError("root", "UUID=x not found after 30 s", hint: "check root=")
        #expect(e.description == "root: UUID=x not found after 30 s; check root=")
        #expect(SSIError("modules", "boom").description == "modules: boom")
    }

    @Test func systemCallErrorNamesCallAndErrno() {
        let e = SystemCallError("mount /dev/vda on /sysroot", errno: 19)
        #expect(e.description == "mount /dev/vda on /sysroot: No such device (ENODEV)")
    }
}
