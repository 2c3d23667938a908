#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIClusterFS

/// fence_ssi: ssi's fence agent for clusters of qemu guests (and anything
/// else behind a "fence switch" that speaks its one-line protocol).
///
/// It follows the fence-agents convention dlm_controld uses: `key=value`
/// lines on standard input (or as arguments, for a person testing it),
/// exit 0 when the node is off. Keys: `ipaddr` and `ipport` (default 7070)
/// of the switch, `node` (or `plug`, `port`) the node id, `action` off
/// (default; reboot means off too: the node must stop writing before its
/// journal is replayed, and it boots again by itself or by hand), on, or
/// monitor, `timeout` in seconds (default 60), `password` the switch's.
///
/// The protocol, one TCP connection per request: the agent sends
/// `off N`, `on N` or `monitor`, followed by ` PASSWORD` when `password=`
/// is given (a switch may require one), and the switch answers `ok` once
/// done, or `error WHY`. INSTALL.md says what a real site uses instead.
enum FenceAgent {
    static func run(_ arguments: [String]) -> Never {
        let log = Log(tag: "fence_ssi", useKmsg: getuid() == 0 && FileSystem.exists("/dev/kmsg"))
        var words = arguments
        if words.isEmpty {
            var input: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(0, &buf, buf.count)
                if n <= 0 { break }
                input += buf[0..<n]
            }
            words = String(decoding: input, as: UTF8.self).lines().flatMap { $0.split(separator: " ") }.map(String.init)
        }
        switch FenceRequest.parse(words) {
        case .failure(let why):
            log.error("fence", why.description)
            exit(1)
        case .success(let request):
            let answer = TCPLineClient.request(request.wireLine, to: request.address, port: request.port,
                                               timeoutMs: Int32(request.timeoutSeconds * 1000))
            switch answer {
            case .success(let text) where text == "ok":
                log.info("fence", "\(request.line): done by the fence switch \(request.address):\(request.port)")
                exit(0)
            case .success(let text):
                log.error("fence", "\(request.line): the fence switch \(request.address):\(request.port) answered \"\(text)\"")
            case .failure(.connect(let r)):
                log.error("fence", "\(request.line): cannot reach the fence switch \(request.address):\(request.port): \(r)")
            case .failure(.io(let why)):
                log.error("fence", "\(request.line): fence switch \(request.address):\(request.port): \(why)")
            }
            exit(1)
        }
    }
}
