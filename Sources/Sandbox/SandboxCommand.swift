import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `nexjobs sandbox [--port P] [--seed S] [--snap-token-ttl SECONDS] [--tiktok-app-qps N] ...`: serves until SIGINT or SIGTERM.
///
/// Prints the base URLs to configure clients with (never tokens; those are at `/_sandbox/connections`).
/// Returns 0 after a clean stop, 1 when the port cannot be bound, 2 on bad arguments.
public func runSandboxCommand(arguments: [String]) async -> Int32 {
    var config = SandboxConfig()
    var port = 0
    var host = "127.0.0.1"
    var i = 0
    func value() -> String? {
        i += 1
        return i < arguments.count ? arguments[i] : nil
    }
    while i < arguments.count {
        switch arguments[i] {
        case "--help", "-h":
            print(
                """
                usage: nexjobs sandbox [--port P] [--host H] [--seed S] [--snap-token-ttl SECONDS]
                                       [--tiktok-connections N] [--snap-connections N]
                                       [--accounts-per-connection N|MIN-MAX] [--days N]
                                       [--tiktok-app-qps N] [--snap-app-qps N] [--quiet-accounts PCT]

                  --port P                          0...65535 (default 0: any free port)
                  --host H                          IPv4 / IPv6 address or localhost to bind (default 127.0.0.1)
                  --seed S                          0...18446744073709551615 (default 42)
                  --snap-token-ttl SECONDS          1...86400 (default 1800)
                  --tiktok-connections N            0...1000 (default 3)
                  --snap-connections N              0...1000 (default 3)
                  --accounts-per-connection N|MIN-MAX   1...100 (default 1-3)
                  --days N                          1...3650 days of history (default 120)
                  --tiktok-app-qps N                0...100000 requests per second per app over a rolling
                                                    second, refused with code 40100 (default 0: unlimited)
                  --snap-app-qps N                  0...100000, refused with HTTP 429 (default 0: unlimited)
                  --quiet-accounts PCT              0...100 percent of ad accounts that never deliver
                                                    (every report row zero; default 0)
                Out-of-range values exit 2.

                Serves a local fake of the TikTok Marketing API v1.3 and the Snap Marketing API v1 with
                deterministic data. Control endpoints under /_sandbox/ (faults, revoke, expire, clock,
                truth, requests, app-qps, connections). Stops on SIGINT or SIGTERM.
                """)
            return 0
        case "--port":
            guard let v = value(), let p = Int(v), (0...65535).contains(p) else {
                return usage("--port needs 0...65535")
            }
            port = p
        case "--host":
            guard let v = value(), isAddressLiteral(v) else {
                return usage("--host needs an IPv4 or IPv6 address or localhost")
            }
            host = v
        case "--seed":
            guard let v = value(), let s = UInt64(v) else { return usage("--seed needs an unsigned integer") }
            config.seed = s
        case "--tiktok-connections", "--snap-connections":
            let name = arguments[i]
            guard let v = value(), let n = Int(v), (0...1000).contains(n) else {
                return usage("\(name) needs an integer 0...1000")
            }
            if name == "--tiktok-connections" { config.tiktokConnections = n } else { config.snapConnections = n }
        case "--tiktok-app-qps", "--snap-app-qps":
            let name = arguments[i]
            let range = Sandbox.appQPSRange
            guard let v = value(), let n = Int(v), range.contains(n) else {
                return usage("\(name) needs an integer \(range.lowerBound)...\(range.upperBound)")
            }
            if name == "--tiktok-app-qps" { config.tiktokAppQPS = n } else { config.snapAppQPS = n }
        case "--quiet-accounts":
            guard let v = value(), let n = Int(v), (0...100).contains(n) else {
                return usage("--quiet-accounts needs an integer 0...100")
            }
            config.quietAccountPercent = n
        case "--days":
            guard let v = value(), let n = Int(v), (1...3650).contains(n) else {
                return usage("--days needs an integer 1...3650")
            }
            config.days = n
        case "--accounts-per-connection":
            // "N" or "MIN-MAX"
            guard let v = value() else { return usage("--accounts-per-connection needs N or MIN-MAX") }
            let pieces = v.split(separator: "-", omittingEmptySubsequences: false)
            let parts = pieces.compactMap { Int($0) }
            guard (1...2).contains(pieces.count), parts.count == pieces.count,
                parts.allSatisfy({ (1...100).contains($0) }), parts.first! <= parts.last!
            else {
                return usage("--accounts-per-connection needs N or MIN-MAX with 1 <= MIN <= MAX <= 100")
            }
            config.accountsPerConnection = parts.first!...parts.last!
        case "--snap-token-ttl":
            guard let v = value(), let s = Int(v), (1...86_400).contains(s) else {
                return usage("--snap-token-ttl needs seconds in 1...86400")
            }
            config.snapAccessTokenTTL = .seconds(s)
        default:
            return usage("unknown argument \(arguments[i])")
        }
        i += 1
    }
    let sandbox = Sandbox(config: config)
    let bound: Int
    do {
        bound = try sandbox.start(host: host, port: port)
    } catch {
        FileHandle.standardError.write(Data("sandbox: \(error)\n".utf8))
        return 1
    }
    let base = "http://\(host.contains(":") ? "[\(host)]" : host):\(bound)"
    print("sandbox listening on \(base) (seed \(config.seed))")
    print("tiktok base url:   \(base)/open_api/v1.3/")
    print("snap api base url: \(base)/v1/")
    print("snap oauth url:    \(base)/login/oauth2/access_token")
    print("connections:       \(base)/_sandbox/connections")
    fflush(nil)

    await waitForTerminationSignal()
    print("sandbox: stopping")
    await sandbox.stop()
    return 0
}

private func usage(_ message: String) -> Int32 {
    FileHandle.standardError.write(Data("error: sandbox: \(message) (see nexjobs sandbox --help)\n".utf8))
    return 2
}

/// An address the sandbox can bind without a name lookup: IPv4 or IPv6 literal, or `localhost`.
private func isAddressLiteral(_ text: String) -> Bool {
    if text == "localhost" { return true }
    guard text.utf8.count <= 64, !text.utf8.contains(0) else { return false }
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
}

/// Suspends until SIGINT or SIGTERM arrives (delivered through Dispatch, not a signal handler).
private func waitForTerminationSignal() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let queue = DispatchQueue(label: "sandbox.signals")
    let fired = SignalLatch()
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        fired.set(c, sources: sources)
        for s in sources {
            s.setEventHandler { fired.fire() }
            s.resume()
        }
    }
}

/// Resumes its continuation once. `@unchecked Sendable`: all state is guarded by `lock`.
private final class SignalLatch: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var sources: [DispatchSourceSignal] = []

    func set(_ c: CheckedContinuation<Void, Never>, sources: [DispatchSourceSignal]) {
        lock.lock()
        continuation = c
        self.sources = sources
        lock.unlock()
    }

    func fire() {
        lock.lock()
        let c = continuation
        continuation = nil
        let s = sources
        sources = []
        lock.unlock()
        for source in s { source.cancel() }
        c?.resume()
    }
}
