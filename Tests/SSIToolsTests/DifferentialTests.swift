import Foundation
import Testing
import SSITestSupport

/// The same command line through util-linux and through ssi (links named
/// mount, umount, swapon, swapoff to the built binary, first in PATH), each
/// in a fresh private mount namespace (`unshare -m`) after the same setup:
/// stdout, stderr, the exit code and the resulting state (the mounts under
/// the case's folder, the swap areas in it) must be equal. No cluster runs
/// on the host, so these are util-linux's semantics (node= dropped).
@Suite(.serialized, .enabled(if: Differential.skipReason == nil, "\(Differential.skipReason ?? "")"))
struct DifferentialTests {
    typealias Case = Differential.Case
    static let cases = Differential.cases

    @Test("util-linux and ssi: the same output, exit code and resulting mounts and swap", arguments: cases)
    func same(_ c: Case) throws {
        if c.swap && Differential.hostHasSwap {
            // Swap areas are the kernel's, not the namespace's.
            print("skipped \(c.name): the host has swap areas of its own, which swapoff -a would turn off")
            return
        }
        let util = try Differential.run(c, ssi: false)
        let ours = try Differential.run(c, ssi: true)
        #expect(ours == util, "util-linux:\n\(util)\nssi:\n\(ours)")
        #expect(util.out != "(none)" && util.code != "(none)", "the case ran: \(util)")
    }
}

enum Differential {
    /// The ssi binary the links point at: SSI_BIN, else this build's.
    static let ssi = BuiltBinary.ssi

    static let skipReason: String? = {
        if getuid() != 0 { return "needs root (mounts in a private mount namespace)" }
        for tool in ["/usr/bin/unshare", "/usr/bin/mount", "/usr/bin/umount", "/usr/sbin/swapon", "/usr/sbin/mkswap",
                     "/usr/sbin/fsck", "/usr/sbin/mkfs.ext4"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "needs \(tool) (util-linux)"
        }
        if ssi == nil { return "no ssi binary: set SSI_BIN or run swift build first" }
        return nil
    }()

    /// Swap is not namespaced: the swap cases run only when the host has
    /// no swap area of its own, which `swapoff -a` would turn off.
    static let hostHasSwap: Bool = {
        let text = (try? String(contentsOfFile: "/proc/swaps", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").count > 1
    }()

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        /// Run first, with the system's tools, in the case's folder ($D).
        var setup: String
        /// The command line compared (bash; the tool names resolve to
        /// util-linux's or to ssi's).
        var command: String
        var swap = false
        var testDescription: String { name }
    }

    struct Result: Equatable, CustomStringConvertible {
        var out: String
        var err: String
        var code: String
        var state: String
        var description: String { "exit \(code)\n--- stdout\n\(out)--- stderr\n\(err)--- state\n\(state)" }
    }

    static let links: String = {
        let dir = NSTemporaryDirectory() + "ssi-difflinks-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for tool in ["mount", "umount", "swapon", "swapoff", "fsck"] {
            try? FileManager.default.removeItem(atPath: dir + "/" + tool)
            try? FileManager.default.createSymbolicLink(atPath: dir + "/" + tool, withDestinationPath: ssi ?? "/nonexistent")
        }
        return dir
    }()

    static func run(_ c: Case, ssi: Bool) throws -> Result {
        let dir = "/tmp/ssi-diff-\(getpid())"
        let o = dir + ".result"
        let script = """
            set +e
            D=\(dir); rm -rf $D \(o); mkdir -p $D \(o); cd $D
            { \(c.setup.isEmpty ? ":" : c.setup) ; } >/dev/null 2>&1
            \(ssi ? "export PATH=\(links):$PATH" : "")
            { \(c.command) ; } >\(o)/out 2>\(o)/err
            echo $? >\(o)/code
            awk -v d="$D" '$5 == d || index($5, d "/") == 1 { print $5, $(NF-1), $(NF-2) }' /proc/self/mountinfo >\(o)/state
            awk -v d="$D" 'index($1, d "/") == 1 { print "swap", $1 }' /proc/swaps >>\(o)/state
            awk -v d="$D" 'index($1, d "/") == 1 { print $1 }' /proc/swaps | xargs -r /usr/sbin/swapoff
            kill $(jobs -p) 2>/dev/null
            wait
            exit 0
            """
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-m", "--propagation", "private", "bash", "-c", script]
        var env = ProcessInfo.processInfo.environment
        env["LC_ALL"] = "C"
        env.removeValue(forKey: "LIBMOUNT_FSTAB")
        p.environment = env
        try p.run()
        p.waitUntilExit()
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: o) }
        func read(_ name: String) -> String { (try? String(contentsOfFile: o + "/" + name, encoding: .utf8)) ?? "(none)" }
        return Result(out: read("out"), err: read("err"), code: read("code").trimmingCharacters(in: .whitespacesAndNewlines),
                      state: read("state"))
    }

    static let cases: [Case] = [
        Case(name: "umount of a busy target named by a relative path: the resolved path in the message, 32",
             // A descriptor of the shell's on the mount (umount inherits it):
             // busy at once, with no process to wait for.
             setup: "mkdir a; mount -t tmpfs t a; exec 3<a", command: "umount a"),
        Case(name: "umount -v: the target and its source said unmounted", setup: "mkdir a; mount -t tmpfs t a", command: "umount -v a"),
        Case(name: "umount -R: what is mounted over the target, then its children",
             setup: "mkdir a; mount -t tmpfs t a; mkdir a/b a/c; mount -t tmpfs u a/b; mount -t tmpfs w a/c; mount -t tmpfs v a",
             command: "umount -R a; umount -R a"),
        Case(name: "umount -R of what is not mounted, and of what does not exist", setup: "mkdir a",
             command: "umount -R a; umount -R nothere"),
        Case(name: "umount -A: every mount of the device, binds included",
             setup: "mkdir a b c; mount -t tmpfs t a; mount --bind a b; mount --bind a c", command: "umount -A b"),
        Case(name: "umount -d: the loop device is detached with the mount",
             setup: "truncate -s 64M img; mkfs.ext4 -q img; mkdir a; mount -o loop img a",
             command: "umount -d a; losetup -j $PWD/img | wc -l"),
        Case(name: "mount --make-private and --make-rshared change propagation only; --bind needs no fstab",
             setup: "mkdir a b; mount -t tmpfs t a",
             command: "mount --make-rshared a; grep -c 'shared:' /proc/self/mountinfo >/dev/null; mount --make-private a; mount --bind a b"),
        Case(name: "mount --mkdir makes the mount point", setup: "", command: "mount --mkdir -t tmpfs t new/deeper"),
        Case(name: "swapon -a: a missing device is named (UUID= and path), nofail is quiet, 255",
             setup: """
                printf 'UUID=0de0de0d-1111-4222-8333-444455556666 none swap sw 0 0\\n'$PWD'/nofile none swap sw 0 0\\n'$PWD'/nf none swap sw,nofail 0 0\\n' > fstab
                mount --bind $PWD/fstab /etc/fstab
                """,
             command: "swapon -a", swap: true),
        Case(name: "swapoff -a: every active area, one in no fstab too; twice is no error",
             setup: "dd if=/dev/zero of=sw bs=1M count=16; chmod 600 sw; mkswap sw; swapon sw",
             command: "swapoff -a -v; echo $?; swapoff -a", swap: true),
        Case(name: "swapon -a -v without a cluster: an fstab line with node= is turned on like the others (node= dropped)",
             setup: """
                dd if=/dev/zero of=sw bs=1M count=16; chmod 600 sw; mkswap sw
                printf $PWD'/sw none swap sw,node=2 0 0\\n' > fstab; mount --bind $PWD/fstab /etc/fstab
                """,
             command: "swapon -a -v", swap: true),
        // Found by the parity audit of 2026-12-06 (cases util-linux's man
        // pages document that the first set did not cover).
        Case(name: "swapon of a relative path; -o pri= wins over -p; errors without errno names",
             setup: "dd if=/dev/zero of=sw bs=1M count=16; chmod 600 sw; mkswap sw",
             command: """
                swapon sw; awk 'NR>1 {print $1, $5}' /proc/swaps; swapon $PWD/sw; echo $?; swapoff sw
                swapon -p 4 -o pri=5 $PWD/sw; awk 'NR>1 {print $1, $5}' /proc/swaps; swapoff $PWD/sw; swapoff $PWD/nothere; echo $?
                """, swap: true),
        Case(name: "swapoff -L and -U of what nobody has: the bare value named, 255; swapon -s with no swap prints nothing",
             setup: "", command: "swapoff -L nolabel; echo $?; swapoff -U 99999999-3333-4444-8555-666666666666; echo $?; swapon -s",
             swap: true),
        Case(name: "swapon --show: widths count the headings even without them; an empty last cell keeps its space",
             setup: """
                dd if=/dev/zero of=sw bs=1M count=16; dd if=/dev/zero of=sw2 bs=1M count=16; chmod 600 sw sw2
                mkswap -U 11111111-2222-4333-8444-555555555555 -L lab sw; mkswap -U 11111111-2222-4333-8444-666666666666 sw2
                swapon -p 3 $PWD/sw; swapon -p 2 $PWD/sw2
                """,
             command: "swapon --show --noheadings; swapon --show=NAME,TYPE,SIZE,USED,PRIO,UUID,LABEL; swapon --show=NAME,LABEL,TYPE; swapoff $PWD/sw $PWD/sw2",
             swap: true),
        Case(name: "swapon warns of a swap file's permissions and owner, and refuses one without a swap header",
             setup: "dd if=/dev/zero of=sw bs=1M count=16; chmod 644 sw; mkswap sw; dd if=/dev/zero of=z bs=1M count=8; chmod 600 z",
             command: "swapon $PWD/sw; echo $?; chown 1:1 sw; swapoff $PWD/sw; swapon $PWD/sw; swapoff $PWD/sw; swapon $PWD/z",
             swap: true),
        Case(name: "mount's listing shows an image file's path, not its loop device; -L's value quoted in the error",
             setup: "truncate -s 16M img; mkfs.ext4 -q img; mkdir a",
             command: "mount img a; mount | grep ' on '$PWD; mount -t ext4 | grep -c $PWD/img; umount a; mount -L nosuchlabel a"),
        Case(name: "mount -t with a no prefix negates the whole list", setup: "mkdir a; touch f",
             command: "mount -t nosuchfs,tmpfs none a; mount -t notmpfs none a; mount -t nosuchfs $PWD/f a"),
        Case(name: "mount -a: the dmesg hint after a failed mount; -T naming a file that is not there",
             setup: """
                mkdir a b c; printf "tt $PWD/a tmpfs defaults 0 0\n/dev/nosuch $PWD/b ext4 defaults 0 0\n/dev/nosuch2 $PWD/c ext4 nofail 0 0\n" > fstab
                """,
             command: "mount -a -T fstab; echo $?; mount -a -T /nonexistent/fstab; echo $?; mount -T /nonexistent a"),
        Case(name: "umount -a -v: a line for each mount, unmounted or ignored",
             setup: "mkdir a b c; mount -t tmpfs -o nr_inodes=4321 tt a; mount -t tmpfs -o nr_inodes=4321 tu b; mount -t tmpfs tv c",
             command: "umount -a -v -O nr_inodes=4321 | grep $PWD"),
        Case(name: "umount -A of an image file: every mount of its loop device",
             setup: "truncate -s 16M img; mkfs.ext4 -q img; mkdir a b; mount img a; mount --bind a b",
             command: "umount -A img; echo $?; losetup -j $PWD/img | wc -l"),
        Case(name: "mount -o move is --move", setup: "mkdir a b; mount -t tmpfs tt a; mkdir a/sub; mount -t tmpfs ts a/sub",
             command: "mount -o move a b"),
        Case(name: "mount -r/-w and -o ro/rw: the last one on the command line wins", setup: "mkdir a b",
             command: "mount -r -o rw -t tmpfs tt a; mount -w -o ro -t tmpfs tt b; findmnt -n -o OPTIONS $PWD/a; findmnt -n -o OPTIONS $PWD/b"),
        Case(name: "umount -q says nothing of what is not mounted; several operands add their exit codes; -R -r refused",
             setup: "mkdir a b; mount -t tmpfs tt a",
             command: "umount -q b; echo $?; umount nothere a nothere2; echo $?; umount -R -r b"),
        Case(name: "fsck -A: a nofail line whose device is missing is passed over; a missing one without nofail goes to its checker",
             setup: """
                truncate -s 16M img; mkfs.ext4 -q img; mkdir b c d
                printf "$PWD/nothere $PWD/b ext4 nofail 0 2\n$PWD/img $PWD/c ext4 defaults 0 2\n$PWD/gone $PWD/d ext4 defaults 0 2\n" > fstab
                """,
             command: "FSTAB_FILE=$PWD/fstab fsck -T -A -N; echo $?; FSTAB_FILE=$PWD/fstab fsck -T -N; echo $?; fsck -T -N /dev/nosuch"),
        // Parity rows 19, 31, 32 and 36 (docs/util-linux-parity.md).
        Case(name: "mount -a: a line fstab cannot parse is named and passed over, the others mounted",
             setup: "mkdir a b; printf 'garbage\\ntt '$PWD'/a tmpfs defaults 0 0\\nbad line\\n' > fstab",
             command: "mount -a -T fstab; echo $?; mount -T $PWD/fstab -t tmpfs tu b; echo $?"),
        Case(name: "mount -v --make-*: the propagation change is said, with the mount when there is one",
             setup: "mkdir a b; mount -t tmpfs tt a",
             command: "mount -v --make-shared a; echo $?; mount -v --make-rprivate a; mount -v --make-private -t tmpfs tu b; echo $?"),
        Case(name: "swapon -a -v: a noauto line and an area already active are passed over, and each is said",
             setup: """
                dd if=/dev/zero of=sw bs=1M count=16; dd if=/dev/zero of=sw2 bs=1M count=16; chmod 600 sw sw2; mkswap sw; mkswap sw2
                printf $PWD'/sw none swap sw,pri=4 0 0\n'$PWD'/sw2 none swap sw,noauto 0 0\n' > fstab; mount --bind $PWD/fstab /etc/fstab
                """,
             command: "swapon -a -v; echo $?; swapon -av; echo $?", swap: true),
        Case(name: "swapoff -a -v: fstab lines that were not active are tried too, quietly, and named",
             setup: """
                dd if=/dev/zero of=sw bs=1M count=16; chmod 600 sw; mkswap sw; swapon sw
                printf 'garbage\n'$PWD'/sw none swap sw 0 0\n'$PWD'/nothere none swap sw 0 0\n'$PWD'/sw3 none swap sw,noauto 0 0\n' > fstab
                mount --bind $PWD/fstab /etc/fstab
                """,
             command: "swapoff -a -v; echo $?", swap: true),
        // Parity row 33.
        Case(name: "mount -a -F -v: each mount forked and said so, the exit code the children's",
             setup: """
                mkdir a b; printf "tt $PWD/a tmpfs defaults 0 0\ntu $PWD/b tmpfs ro,noauto 0 0\ntv $PWD/nothere tmpfs size=1m 0 0\n" > fstab
                printf "tw $PWD/nothere tmpfs defaults 0 0\n" > fstab2
                """,
             // One mount that works: two forked children finish in no set order.
             command: "mount -a -F -v -T fstab; echo $?; mount -a -F -T fstab2; echo $?"),
        // Parity row 13: what util-linux's mount gives libmount as it is.
        Case(name: "mount --options-mode, --options-source(-force), --target-prefix and -N, as libmount does them; a bad mode is bad usage",
             setup: """
                mkdir a b c; mkdir -p p/d
                printf "tt $PWD/a tmpfs noexec,size=2m 0 0\ntu $PWD/b tmpfs size=1m 0 0\n" > fstab
                """,
             command: """
                mount -T fstab --options-mode ignore -o nosuid a; echo $?; mount -T fstab --options-mode append -o nodev b; echo $?; \
                mount -T fstab --options-source-force -o remount,nosuid a; echo $?; mount --options-source disable -t tmpfs tv c; echo $?; \
                mount --target-prefix $PWD/p -t tmpfs tw /d; echo $?; mount -N $$ -t tmpfs tx c; echo $?; \
                mount -N /nonexist -t tmpfs ty c; echo $?; mount --options-mode bogus a; echo $?; mount --options-source fstab,nope a; echo $?; \
                umount -N /nonexist c; echo $?; umount -N $$ $PWD/c; echo $?
                """),
        // Parity rows 7, 11, 12, 26, 27 and 28: fsck's named devices, its
        // choice of checker, its -t, and -A -V's first scan (-T: the
        // title names ssi, row 24, a difference kept on purpose).
        Case(name: "fsck: a named device or mount point is its fstab line's (type, mount point); named ones are numbered; a relative word is the checker's",
             setup: """
                truncate -s 16M img; mkfs.ext4 -q img; cp img img2; mkdir b
                printf "garbage\n$PWD/img2 $PWD/b ext4 defaults 0 2\n" > fstab
                """,
             command: """
                export FSTAB_FILE=$PWD/fstab; fsck -T -N b; fsck -T -N $PWD/b; fsck -T -N $PWD/img2; fsck -T -N $PWD/img $PWD/img2; \
                fsck -T -N -s $PWD/img $PWD/img2; fsck -T -N -t xfs $PWD/b; echo $?
                """),
        Case(name: "fsck: blkid's type wins over -t for a device not in fstab; -t's plain type, then ext2, for one blkid cannot tell; a missing checker matters only for types that need one",
             setup: "truncate -s 16M img; mkfs.ext4 -q img; truncate -s 1M empty",
             command: """
                fsck -T -N -t xfs $PWD/img; fsck -T -N -t noext4 $PWD/img; fsck -T -N $PWD/empty; fsck -T -N -t ext2,ext3 $PWD/empty; \
                fsck -T -n -t xfs $PWD/empty; echo $?; fsck -T -N -t ext4dev $PWD/empty; echo $?; fsck -T -N -t jfs /dev/ssi-nosuch; echo $?; \
                fsck -T -N /dev/ssi-nosuch; echo $?; fsck -T -N LABEL=ssi-nosuch-label; echo $?; fsck -T -N -t ext4,noxfs $PWD/img; echo $?
                """),
        Case(name: "fsck -A -V: the first scan names each line whose source is no block device; -t opts= and noopts= select by options",
             setup: """
                truncate -s 16M img; mkfs.ext4 -q img; truncate -s 1M empty; mkdir b c d e
                printf "$PWD/img $PWD/b ext4 defaults 0 2\n$PWD/gone $PWD/c ext4 nofail 0 2\nLABEL=ssi-nosuch $PWD/d ext4 defaults,noatime 0 1\n" > fstab
                printf "$PWD/empty $PWD/e xfs defaults 0 2\n$PWD/empty $PWD/e jfs defaults 0 3\n$PWD/img $PWD/b ext4 defaults 0 0\n" >> fstab
                """,
             command: """
                export FSTAB_FILE=$PWD/fstab; fsck -T -A -N -V; echo $?; fsck -T -A -N -t opts=defaults; fsck -T -A -N -t opts=noatime; \
                fsck -T -A -N -t noopts=noatime; fsck -T -A -N -t '!xfs'; fsck -T -A -N -t loop; echo $?; fsck -T -A -n -t jfs,xfs; echo $?
                """),
    ]
}
