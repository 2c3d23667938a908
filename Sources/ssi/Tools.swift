#if canImport(Glibc)
import Glibc
#endif
import SSIBoot
import SSIProcess
import SSITools

/// Runs an applet: each tool returns util-linux's (or OpenSSI's) exit
/// code, having said why on stderr; this only exits with it.
enum Tools {
    /// `program` is argv[0] for the messages of getopt; `invokedAs` its
    /// last component, the tools' own name in their messages.
    static func run(_ applet: Applet, program: String, invokedAs: String, _ args: [String]) -> Never {
        switch applet.command {
        case .initProgram: InitProgram.run()
        case .fence: FenceAgent.run(args)
        case .mkinitrd, .cluster, .divert:
            SSICommand.main([applet.subcommand ?? applet.command.rawValue] + args)
        case .mount: exit(MountTool(program: program).run(args))
        case .umount: exit(UmountTool(program: program).run(args))
        case .swapon: exit(SwapTool(program: program, off: false).run(args))
        case .swapoff: exit(SwapTool(program: program, off: true).run(args))
        case .fsck: exit(FsckTool(program: program).run(args))
        case .migrate: exit(ProcTools(program: invokedAs).migrate(args))
        case .onnode: exit(ProcTools(program: invokedAs).onnode(args))
        case .wherePID: exit(ProcTools(program: invokedAs).wherePID(args))
        case .kill: exit(ProcTools(program: invokedAs).kill(args))
        case .loadlevel: exit(ProcTools(program: invokedAs).loadlevel(args))
        case .ll: exit(ProcTools(program: invokedAs).ll(args))
        case .loads: exit(ProcTools(program: invokedAs).loads(args))
        case .onall: exit(ProcTools(program: invokedAs).onall(args))
        case .clusterNodeNum: exit(ProcTools(program: invokedAs).clusterNodeNum(args))
        case .clusterList: exit(ProcTools(program: invokedAs).cluster(args))
        case .deputy: Deputy.run()
        }
    }
}
