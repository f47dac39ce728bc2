import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A minimal HTTP/1.1 server: keep-alive, `Content-Length` bodies, strict limits, graceful stop.
///
/// One accept thread and one thread per connection do all socket I/O with `poll` timeouts, so the Swift
/// cooperative pool never blocks; each request's async handler runs as a task and its connection thread
/// waits for the result. Requests on one connection are answered in order. Every limit breach in
/// `HTTPServerLimits` is answered with its status and the connection is closed. `SIGPIPE` is ignored for
/// the process and sends use `MSG_NOSIGNAL`.
public final class HTTPServer: Sendable {
    private enum Phase {
        case idle, running, stopping, stopped
    }

    private struct State {
        var phase: Phase = .idle
        var listenFD: Int32 = -1
        /// Readable once stopping begins (nobody drains it), which wakes every idle poll at once; closed in
        /// `deinit`, when no thread can still be polling it.
        var wakeFDs: (read: Int32, write: Int32) = (-1, -1)
        var port = 0
        /// Open connection sockets; the accept thread counts as one more participant in `participants`.
        var connections: Set<Int32> = []
        /// Connections counted against `maxConnections` and against `reservedConnections`.
        var regular = 0
        var reserved = 0
        /// Open connections (regular, reserved) per peer address.
        var perClient: [String: (regular: Int, reserved: Int)] = [:]
        var participants = 0
        var drainWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var nextWaiterID = 0
    }

    private let host: String
    private let requestedPort: Int
    let limits: HTTPServerLimits
    let handler: HTTPHandler
    private let state = Mutex(State())

    /// Creates a server; nothing is bound until `start()` or `run()`.
    /// - Parameters:
    ///   - host: Address to bind, numeric or a name (default loopback only).
    ///   - port: Port to bind; 0 (the default) picks a free ephemeral port.
    ///   - limits: Per-connection limits (defaults documented on `HTTPServerLimits`).
    ///   - handler: Answers every request, e.g. `router.handle`.
    public init(
        host: String = "127.0.0.1", port: Int = 0, limits: HTTPServerLimits = .init(),
        handler: @escaping HTTPHandler
    ) {
        self.host = host
        self.requestedPort = port
        self.limits = limits
        self.handler = handler
    }

    deinit {
        state.withLock { s in
            if s.wakeFDs.read >= 0 {
                close(s.wakeFDs.read)
                close(s.wakeFDs.write)
            }
        }
    }

    /// The bound port once started, else 0.
    public var port: Int { state.withLock { $0.port } }

    /// Binds, listens and starts accepting on a thread of its own; returns the bound port.
    ///
    /// Calling it again while running returns the same port. A stopped server cannot be restarted.
    @discardableResult
    public func start() throws -> Int {
        try state.withLock { s in
            switch s.phase {
            case .running: return s.port
            case .stopping, .stopped: throw HTTPServerError(operation: "start after stop", errno: 0)
            case .idle: break
            }
            Socket.ignoreSIGPIPE()
            let (fd, port) = try Socket.listen(host: host, port: requestedPort, backlog: 1024)
            var pipeFDs: [Int32] = [-1, -1]
            guard pipe(&pipeFDs) == 0 else {
                let e = errno
                close(fd)
                throw HTTPServerError(operation: "pipe", errno: e)
            }
            s.listenFD = fd
            s.wakeFDs = (pipeFDs[0], pipeFDs[1])
            s.port = port
            s.phase = .running
            s.participants = 1
            let wake = pipeFDs[0]
            let thread = Thread { [self] in acceptLoop(listenFD: fd, wakeFD: wake) }
            thread.name = "http-accept"
            thread.start()
            return port
        }
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then force-closes what remains.
    ///
    /// Idle keep-alive connections are closed at once. Returns when every connection thread has let go of
    /// its socket (or, if a handler never returns, shortly after the grace period). Safe to call repeatedly
    /// and concurrently; later calls wait for the first to finish.
    public func stop(grace: Duration = .seconds(5)) async {
        let first: Bool = state.withLock { s in
            switch s.phase {
            case .idle:
                s.phase = .stopped
                return false
            case .running:
                s.phase = .stopping
                var byte: UInt8 = 1
                _ = write(s.wakeFDs.write, &byte, 1)
                return true
            case .stopping, .stopped:
                return false
            }
        }
        guard first else {
            await waitStopped()
            return
        }
        if !(await waitDrained(timeout: grace)) {
            state.withLock { s in
                for fd in s.connections { shutdown(fd, Int32(SHUT_RDWR)) }
            }
            _ = await waitDrained(timeout: .seconds(1))
        }
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.phase = .stopped
            defer { s.stopWaiters = [] }
            return s.stopWaiters
        }
        for w in waiters { w.resume() }
    }

    /// Starts if needed, then suspends until `stop()` completes; cancelling the calling task stops the server.
    public func run() async throws {
        let phase = state.withLock { $0.phase }
        if phase == .idle {
            try start()
        }
        await withTaskCancellationHandler {
            await waitStopped()
        } onCancel: {
            Task { await self.stop() }
        }
    }

    private func waitStopped() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.phase == .stopped { return true }
                s.stopWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Waits until no participant is left; false when `timeout` passed first.
    private func waitDrained(timeout: Duration) async -> Bool {
        let id = state.withLock { s in
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            let waiter = self.state.withLock { $0.drainWaiters.removeValue(forKey: id) }
            waiter?.resume()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.participants == 0 { return true }
                s.drainWaiters[id] = c
                return false
            }
            if done { c.resume() }
        }
        return state.withLock { $0.participants == 0 }
    }

    private func leave(connection fd: Int32?, client: String = "", reserved: Bool = false) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            if let fd {
                s.connections.remove(fd)
                var counts = s.perClient[client] ?? (0, 0)
                if reserved {
                    s.reserved -= 1
                    counts.reserved -= 1
                } else {
                    s.regular -= 1
                    counts.regular -= 1
                }
                s.perClient[client] = counts.regular <= 0 && counts.reserved <= 0 ? nil : counts
            }
            s.participants -= 1
            guard s.participants == 0 else { return [] }
            defer { s.drainWaiters = [:] }
            return Array(s.drainWaiters.values)
        }
        if let fd { close(fd) }
        for w in waiters { w.resume() }
    }

    /// Whether the server is stopping, so idle connections should close.
    var isStopping: Bool { state.withLock { $0.phase != .running } }

    private func acceptLoop(listenFD: Int32, wakeFD: Int32) {
        var fds = [
            pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                break
            }
            if fds[1].revents != 0 || isStopping { break }
            guard fds[0].revents & Int16(POLLIN) != 0 else {
                if fds[0].revents != 0 { break }
                continue
            }
            guard let (fd, remote, client) = Socket.accept(listenFD) else {
                // EMFILE and friends: back off briefly instead of spinning on a ready listen socket.
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { usleep(10_000) }
                continue
            }
            let admission = admit(fd, client: client)
            guard let reserved = admission else {
                rejectBusy(fd)
                continue
            }
            let thread = Thread { [self] in
                let connection = HTTPConnection(
                    fd: fd, wakeFD: wakeFD, remoteAddress: remote, clientAddress: client, server: self,
                    reserved: reserved)
                connection.serve()
                leave(connection: fd, client: client, reserved: reserved)
            }
            thread.stackSize = 512 * 1024
            thread.name = "http-conn"
            thread.start()
        }
        state.withLock { s in
            close(s.listenFD)
            s.listenFD = -1
        }
        leave(connection: nil)
    }

    /// Counts a new connection in: false when it fits the regular budget, true when it gets a reserved slot,
    /// nil when it must be refused (server stopping, its peer address at its cap, or no slot left).
    private func admit(_ fd: Int32, client: String) -> Bool? {
        state.withLock { s -> Bool? in
            guard s.phase == .running else { return nil }
            var counts = s.perClient[client] ?? (0, 0)
            let reserved: Bool
            if counts.regular < limits.maxConnectionsPerClient && s.regular < limits.maxConnections {
                reserved = false
                s.regular += 1
                counts.regular += 1
            } else if !limits.reservedPaths.isEmpty && s.reserved < limits.reservedConnections
                && counts.reserved < HTTPServerLimits.reservedPerClient
            {
                reserved = true
                s.reserved += 1
                counts.reserved += 1
            } else {
                return nil
            }
            s.perClient[client] = counts
            s.connections.insert(fd)
            s.participants += 1
            return reserved
        }
    }

    /// Answers 503 without reading the request and closes; never blocks the accept thread.
    private func rejectBusy(_ fd: Int32) {
        let response = HTTPResponse.text("too many connections\n", status: 503)
        var bytes = HTTPConnection.serialize(response, close: true, headOnly: false)
        bytes.withUnsafeMutableBytes { raw in
            _ = send(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT) | Socket.noSignalFlag)
        }
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}
