#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import SSICore
import SSILinux

/// TableWatch on a real mount table: a thread of its own moves into a
/// private mount namespace (unshare(CLONE_FS) first, as a thread must), so
/// the mounts it makes touch nothing else on the host.
@Suite(.timeLimit(.minutes(1))) struct TableWatchTests {
    @Test("a mount and an unmount mark the thread's mountinfo changed, once each; nothing else does")
    func mountsAreSeen() throws {
        try #require(geteuid() == 0, "needs root: mounts in a private namespace")
        let outcome = Mutex<[String]?>(nil)
        startThread {
            var seen: [String] = []
            func record(_ s: String) { seen.append(s) }
            defer { let s = seen; outcome.withLock { $0 = s } }
            guard ssiTestUnshareMountNamespace() else { return record("unshare failed: \(errno)") }
            let dir = "/tmp/ssi-tablewatch-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            guard mkdir(dir, 0o700) == 0 else { return record("mkdir failed") }
            defer { rmdir(dir) }
            do throws(SystemCallError) {
                let watch = try TableWatch("/proc/thread-self/mountinfo")
                record("idle \(watch.changed())")
                guard mount("tmpfs", dir, "tmpfs", 0, nil) == 0 else { return record("mount failed: \(errno)") }
                record("mounted \(watch.changed(timeoutMilliseconds: 1000))")
                record("again \(watch.changed())")
                guard umount2(dir, 0) == 0 else { return record("umount failed: \(errno)") }
                record("unmounted \(watch.changed(timeoutMilliseconds: 1000))")
                record("after \(watch.changed())")
            } catch {
                record("open: \(error)")
            }
        }
        var result: [String]?
        for _ in 0..<200 {
            result = outcome.withLock { $0 }
            if result != nil { break }
            usleep(25_000)
        }
        #expect(result == ["idle false", "mounted true", "again false", "unmounted true", "after false"])
    }

    @Test func aMissingTableIsAnErrorNamingIt() {
        #expect(throws: SystemCallError.self) { _ = try TableWatch("/proc/ssi-no-such-table") }
        do { _ = try TableWatch("/proc/ssi-no-such-table") } catch {
            #expect(error.description.contains("/proc/ssi-no-such-table"))
        }
    }
}

/// This thread alone in a private mount namespace whose mounts do not
/// propagate back: unshare(CLONE_FS) (a thread shares its fs with the
/// process until then), unshare(CLONE_NEWNS), then / made private.
func ssiTestUnshareMountNamespace() -> Bool {
    typealias Unshare = @convention(c) (Int32) -> Int32
    guard let sym = dlsym(dlopen(nil, RTLD_NOW), "unshare") else { return false }
    let unshare = unsafeBitCast(sym, to: Unshare.self)
    guard unshare(0x0000_0200) == 0,            // CLONE_FS
          unshare(0x0002_0000) == 0 else { return false }  // CLONE_NEWNS
    return mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0
}
