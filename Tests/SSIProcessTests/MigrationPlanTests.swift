import Testing
import Foundation
import SSICore
@testable import SSIProcess

/// The migration plan from facts given as a table: no process, no CRIU,
/// no peer. The refusal texts are the ones users (and the VM tests) see.
@Suite struct MigrationPlanTests {
    static func status(uid: uid_t) -> ProcessStatus {
        ProcessStatus(parsing: "Uid:\t\(uid)\t\(uid)\t\(uid)\t\(uid)\nGid:\t\(uid)\t\(uid)\t\(uid)\t\(uid)\nGroups:\t\n")!
    }

    static func ship(_ pid: pid_t, _ fd: Int32, _ kind: ShipKind, _ resource: String) -> OpenDescriptor {
        OpenDescriptor(pid: pid, fd: fd, target: resource, disposition: .ship(kind, resource: resource))
    }

    /// A tree of `tasks` owned by uid 1000 on node 1, node 2 up, each
    /// process with the descriptors given.
    static func facts(tasks: [pid_t] = [100], descriptors: [pid_t: [OpenDescriptor]] = [:],
                      owners: [pid_t: uid_t] = [:]) -> MigrationFacts {
        var table: [pid_t: ProcessStatus] = [:]
        for t in tasks { table[t] = status(uid: owners[t] ?? 1000) }
        return MigrationFacts(
            localNode: 1, agentPID: 50, peer: (name: "node2", up: true), isHere: true, command: "sleep 30",
            tasks: tasks, status: { table[$0] },
            descriptors: Dictionary(uniqueKeysWithValues: tasks.map { ($0, .success(descriptors[$0] ?? [])) }),
            mappingProblems: [:],
            sameFile: { _, _, _, _ in (0, 0) },
            holders: { _, _ in [:] })
    }

    static func request(pid: pid_t = 100, tree: Bool = true, uid: uid_t = 1000) -> MigrationRequest {
        MigrationRequest(pid: pid, target: 2, tree: tree, uid: uid)
    }

    static func refusal(_ request: MigrationRequest, _ facts: MigrationFacts) -> SSIError? {
        do throws(SSIError) {
            _ = try MigrationPlan.make(request, facts: facts)
            return nil
        } catch { return error }
    }

    @Test("the plan's trace: each task's descriptors, a file's name escaped (it cannot forge a log line), cut at 4000 characters")
    func descriptorSummary() {
        let forged = OpenDescriptor(pid: 100, fd: 3, target: "/tmp/x\n123.456 moving 1 to node 9\u{1b}[2J",
                                    disposition: .reopen)
        var f = Self.facts(tasks: [100, 101], descriptors: [100: [Self.ship(100, 1, .pipeOut, "pipe:[4711]"), forged]])
        f.descriptors[101] = nil
        #expect(f.descriptorSummary == "100: 1 pipe:[4711], 3 /tmp/x\\n123.456 moving 1 to node 9\\u001B[2J; 101: not read")
        let many = (0..<500).map { OpenDescriptor(pid: 100, fd: Int32($0), target: "/srv/data/file-\($0)", disposition: .reopen) }
        let long = Self.facts(descriptors: [100: many]).descriptorSummary
        #expect(long.count == 4000 + " ... (cut)".count && long.hasSuffix(" ... (cut)"))
    }

    @Test("the checks before any inspection: same node, unknown or down target, no such process, a daemon")
    func preliminaryRefusals() {
        var f = Self.facts()
        #expect(Self.refusal(MigrationRequest(pid: 100, target: 1, tree: false, uid: 0), f)?.message == "process 100 is already on node 1")
        f.peer = nil
        #expect(Self.refusal(Self.request(), f)?.message == "node 2 is not in the cluster")
        f.peer = (name: "node2", up: false)
        #expect(Self.refusal(Self.request(), f)?.message == "node 2 (node2) is not up")
        f = Self.facts()
        f.isHere = false
        #expect(Self.refusal(Self.request(), f)?.message == "100: no such process on node 1")
        f = Self.facts()
        f.command = "@ssi cluster agent"
        #expect(Self.refusal(Self.request(), f)?.message.contains("is a cluster daemon") == true)
        #expect(Self.refusal(Self.request(pid: 50), Self.facts(tasks: [50]))?.message.contains("is a cluster daemon") == true,
                "the agent itself stays")
        #expect(Self.refusal(Self.request(pid: 1), Self.facts(tasks: [1]))?.message.contains("is a cluster daemon") == true)
    }

    @Test("ownership is checked on every process of the tree, before anything else about it")
    func ownershipOfTheWholeTree() throws {
        // The child 102 is root's; its descriptors would be refused too,
        // but ownership is what the caller hears first.
        let f = Self.facts(tasks: [100, 101, 102], descriptors: [102: [OpenDescriptor(pid: 102, fd: 3, target: "x", disposition: .refuse("fd 3 is x"))]],
                           owners: [102: 0])
        let e = try #require(Self.refusal(Self.request(), f))
        #expect(e.message == "process 100 cannot move: process 102 belongs to uid 0, not to uid 1000: only its owner or root can move it")
        #expect(e.hint == "move only your own processes, or ask root to")
        // Root moves anything (and then hears about the descriptor).
        let asRoot = try #require(Self.refusal(Self.request(uid: 0), f))
        #expect(asRoot.message == "process 100 cannot move: process 102: fd 3 is x")
    }

    @Test("a move under way is refused after the caller's own checks, before the descriptors'")
    func beingMoved() throws {
        var f = Self.facts(tasks: [100, 101], descriptors: [100: [OpenDescriptor(pid: 100, fd: 3, target: "x", disposition: .refuse("fd 3 is x"))]],
                           owners: [101: 0])
        f.beingMoved = true
        #expect(Self.refusal(Self.request(), f)?.message.contains("belongs to uid 0") == true)
        f.status = { _ in Self.status(uid: 1000) }
        #expect(Self.refusal(Self.request(), f)?.message == "process 100 is already being moved")
    }

    @Test("a process with children moves only with -t")
    func childrenNeedTree() throws {
        let e = try #require(Self.refusal(Self.request(tree: false), Self.facts(tasks: [100, 101, 105])))
        #expect(e.message == "process 100 has child processes (101, 105): CRIU moves a whole tree")
        #expect(try MigrationPlan.make(Self.request(tree: false), facts: Self.facts()).tasks == [100])
    }

    @Test("what is shipped, in channel order; a pipe with both ends in the tree is CRIU's; a vanished child is skipped")
    func shippedDescriptors() throws {
        var f = Self.facts(tasks: [100, 101, 102], descriptors: [
            100: [Self.ship(100, 0, .tty, "tty[8800:5]"), Self.ship(100, 3, .pipeOut, "pipe:[7]"),
                  OpenDescriptor(pid: 100, fd: 4, target: "/dev/null", disposition: .reopen)],
            101: [Self.ship(101, 0, .pipeIn, "pipe:[7]"), Self.ship(101, 1, .pipeOut, "pipe:[9]"), Self.ship(101, 2, .tty, "tty[8800:5]")],
        ])
        f.descriptors[102] = nil    // ended since the tree was read
        let plan = try MigrationPlan.make(Self.request(), facts: f)
        #expect(plan.shipped == [ShippedDescriptor(resource: "tty[8800:5]", kind: .tty, pid: 100, fd: 0),
                                 ShippedDescriptor(resource: "pipe:[9]", kind: .pipeOut, pid: 101, fd: 1)])
        #expect(plan.tasks == [100, 101, 102] && plan.targetName == "node2")

        // The same pipe held by a process outside the tree: refused, named.
        f.holders = { resources, except in
            #expect(resources == ["pipe:[7]"] && except == [100, 101, 102])
            return ["pipe:[7]": (300, 5)]
        }
        #expect(Self.refusal(Self.request(), f)?.message
                == "process 100 cannot move: pipe:[7] joins processes of the tree and process 300 (fd 5) outside it: CRIU would split it; move a tree that holds all its ends")

        // A child that is there but cannot be read is an error, not skipped.
        f.descriptors[102] = .failure(SSIError("migrate", "process 102: permission denied"))
        #expect(Self.refusal(Self.request(), f)?.message == "process 102: permission denied")
    }

    @Test("a socketpair with both ends in the tree moves with it (CRIU restores it); one end in the tree is shipped; one held outside too is refused")
    func socketpairInTheTree() throws {
        var f = Self.facts(tasks: [100, 101], descriptors: [
            100: [Self.ship(100, 3, .socket, "socket:[70]"), Self.ship(100, 4, .socket, "socket:[80]")],
            101: [Self.ship(101, 3, .socket, "socket:[71]")],
        ])
        // 70 <-> 71 is the pair inside the tree; 80's peer (81) is home.
        f.unixPeers = [70: 71, 71: 70, 80: 81, 81: 80]
        let plan = try MigrationPlan.make(Self.request(), facts: f)
        #expect(plan.shipped == [ShippedDescriptor(resource: "socket:[80]", kind: .socket, pid: 100, fd: 4)])
        // Without sock_diag's view: every end is shipped, as before.
        f.unixPeers = [:]
        #expect(try MigrationPlan.make(Self.request(), facts: f).shipped.map(\.resource) == ["socket:[70]", "socket:[80]", "socket:[71]"])
        // Moving the parent alone: its end of the pair is shipped.
        f.unixPeers = [70: 71, 71: 70]
        var alone = Self.facts(tasks: [100], descriptors: [100: [Self.ship(100, 3, .socket, "socket:[70]")]])
        alone.unixPeers = f.unixPeers
        #expect(try MigrationPlan.make(Self.request(tree: false), facts: alone).shipped.map(\.resource) == ["socket:[70]"])
        // An end also held outside the tree: CRIU would split it.
        f.holders = { resources, _ in
            #expect(resources == ["socket:[70]", "socket:[71]"])
            return ["socket:[71]": (300, 9)]
        }
        #expect(Self.refusal(Self.request(), f)?.message
                == "process 100 cannot move: socket:[71] joins processes of the tree and process 300 (fd 9) outside it: CRIU would split it; move a tree that holds all its ends")
    }

    @Test("every refusal of every process is listed, children's named")
    func refusalsListed() throws {
        var f = Self.facts(tasks: [100, 101], descriptors: [
            100: [OpenDescriptor(pid: 100, fd: 5, target: "socket:[1]", disposition: .refuse("fd 5 is a listening socket: it cannot leave its node"))],
            101: [Self.ship(101, 3, .tcp, "socket:[40]"), Self.ship(101, 4, .tcp, "socket:[40]")],
        ])
        f.mappingProblems = [101: ["it maps the device /dev/fb0, which CRIU cannot restore on another node"]]
        let e = try #require(Self.refusal(Self.request(), f))
        #expect(e.message == "process 100 cannot move: fd 5 is a listening socket: it cannot leave its node; "
                + "process 101: it maps the device /dev/fb0, which CRIU cannot restore on another node; "
                + "the TCP connection socket:[40] is held by 2 descriptors (only one can get its stand-in)")
    }

    @Test("the target's limits, checked before anything is frozen: one terminal, not with a TCP connection")
    func targetLimits() throws {
        let both = Self.facts(descriptors: [100: [Self.ship(100, 0, .tty, "tty[8800:5]"), Self.ship(100, 3, .tcp, "socket:[40]")]])
        #expect(Self.refusal(Self.request(), both)?.message.contains("it has both a terminal and a TCP connection") == true)
        let two = Self.facts(descriptors: [100: [Self.ship(100, 0, .tty, "tty[8800:5]"), Self.ship(100, 3, .tty, "tty[8800:6]")]])
        #expect(Self.refusal(Self.request(), two)?.message == "process 100 cannot move: it uses 2 terminals; only one can be shipped")
    }

    @Test("a file's path opened twice: refused unless kcmp says it is one open file")
    func pathOpenedTwice() throws {
        var f = Self.facts(tasks: [100, 101], descriptors: [
            100: [Self.ship(100, 3, .pipeIn, "run/in.txt")],
            101: [Self.ship(101, 3, .pipeIn, "run/in.txt")],
        ])
        var asked: [String] = []
        f.sameFile = { p1, p2, fd1, fd2 in asked.append("\(p1).\(fd1) \(p2).\(fd2)"); return (1, 0) }
        #expect(Self.refusal(Self.request(), f)?.message
                == "process 100 cannot move: /run/in.txt is open twice (fd 3 of 100, fd 3 of 101): only one open of a shipped file can move; close one first")
        #expect(asked == ["100.3 101.3"])
        f.sameFile = { _, _, _, _ in (-1, EPERM) }
        #expect(Self.refusal(Self.request(), f)?.message.contains("cannot tell whether fd 3 of 100 and fd 3 of 101 are one open file (kcmp: ") == true)
        // One open inherited by the child: one stand-in.
        f.sameFile = { _, _, _, _ in (0, 0) }
        #expect(try MigrationPlan.make(Self.request(), facts: f).shipped == [ShippedDescriptor(resource: "run/in.txt", kind: .pipeIn, pid: 100, fd: 3)])
    }

    @Test("criu dump's arguments, as they always were")
    func dumpArguments() {
        var tcp = ShipSpec(resource: "socket:[40]", kind: .tcp, home: 1, channel: "c.1")
        tcp.pid = 100
        tcp.fd = 3
        let specs = [ShipSpec(resource: "socket:[12]", kind: .socket, home: 1, channel: "c.0"), tcp,
                     ShipSpec(resource: "pipe:[7]", kind: .pipeIn, home: 1, channel: "c.2")]
        #expect(MigrationPlan.dumpArguments(pid: 100, imageDirectory: "/run/ssi/migrate/1-100-5", specs: specs)
                == ["dump", "-t", "100", "-D", "/run/ssi/migrate/1-100-5", "--shell-job", "--leave-stopped",
                    "--manage-cgroups=ignore", "--skip-in-flight", "--external", "unix[12]", "--tcp-close"])
        #expect(MigrationPlan.dumpArguments(pid: 7, imageDirectory: "/d", specs: []).last == "--skip-in-flight")
        // Frozen in a cgroup: criu leaves it there, running as far as
        // criu knows, instead of stopping it.
        #expect(MigrationPlan.dumpArguments(pid: 7, imageDirectory: "/d", specs: [], freezeCgroup: "/sys/fs/cgroup/m")
                == ["dump", "-t", "7", "-D", "/d", "--shell-job", "--leave-running", "--freeze-cgroup", "/sys/fs/cgroup/m",
                    "--manage-cgroups=ignore", "--skip-in-flight"])
    }
}
