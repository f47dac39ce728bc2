import CLibPQ
import Foundation

/// A notification received through LISTEN.
public struct PGNotification: Sendable {
    public var channel: String
    public var payload: String
}

/// The listener's own connection, lent to `afterNotifications` for synchronous statements on the listener thread.
///
/// Only valid inside that callback: it must not escape.
public struct PGListenerSession: ~Copyable {
    let handle: OpaquePointer
    let config: PGConfig
    let prepared: PreparedStatements

    /// Runs one parameterized statement, blocking the listener thread until its result arrives.
    ///
    /// Each distinct SQL text is prepared once per connection (the claim runs on every wake-up; parsing and
    /// planning it each time was a measurable share of the wake-to-claim time).
    @discardableResult
    public func query(_ query: PGQuery) throws -> PGRows {
        let name: String
        if let known = prepared.names[query.sql] {
            name = known
        } else {
            name = "nexjobs_listener_\(prepared.names.count + 1)"
            let res = PQprepare(handle, name, query.sql, Int32(query.binds.count), nil)
            _ = try PGConnection.consume(res, conn: handle, config: config)
            prepared.names[query.sql] = name
        }
        let res = withOptionalCStrings(query.binds) { params in
            PQexecPrepared(handle, name, Int32(query.binds.count), params, nil, nil, 0)
        }
        return try PGConnection.consume(res, conn: handle, config: config)
    }
}

/// Statements prepared on the listener's current connection (forgotten when it reconnects). Listener thread only.
final class PreparedStatements {
    var names: [String: String] = [:]
}

/// Listens on channels over its own dedicated connection and thread.
///
/// The thread waits in `poll()` on the connection's socket, so it never occupies Swift's cooperative pool. When the
/// connection drops it reconnects with exponential backoff (100 ms doubling to 5 s), LISTENs again and calls
/// `onReconnect`: notifications sent meanwhile are lost, so the owner should poll once then.
///
/// `afterNotifications`, when given, runs on the listener thread after each batch of notifications with the
/// listener's connection, so the owner can act on a wake-up without a thread hop or a pool checkout (the worker
/// claims jobs there: bench/README.md measures what that saves). Notifications that arrive while it runs are
/// delivered right after it returns.
public final class PGListener: @unchecked Sendable {
    // `stopFlag` is a lock-protected flag; every libpq handle lives only on `thread`.
    private let config: PGConfig
    private let channels: [String]
    private let onNotify: @Sendable (PGNotification) -> Void
    private let onReconnect: @Sendable () -> Void
    private let onError: @Sendable (String) -> Void
    private let afterNotifications: (@Sendable (borrowing PGListenerSession) -> Void)?
    private let stopFlag = LockedFlag()
    private let prepared = PreparedStatements()
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    public init(
        config: PGConfig, channels: [String],
        onNotify: @escaping @Sendable (PGNotification) -> Void,
        onReconnect: @escaping @Sendable () -> Void = {},
        onError: @escaping @Sendable (String) -> Void = { _ in },
        afterNotifications: (@Sendable (borrowing PGListenerSession) -> Void)? = nil
    ) {
        self.config = config
        self.channels = channels
        self.onNotify = onNotify
        self.onReconnect = onReconnect
        self.onError = onError
        self.afterNotifications = afterNotifications
    }

    /// Starts the listening thread. Returns once the first LISTEN succeeded or failed (then it keeps retrying).
    public func start() {
        let ready = DispatchSemaphore(value: 0)
        let t = Thread { [self] in
            self.loop(ready: ready)
            self.finished.signal()
        }
        t.name = "nexjobs.pg.listener"
        thread = t
        t.start()
        ready.wait()
    }

    /// Stops the thread and closes its connection (within ~100 ms, or when a statement of `afterNotifications` in
    /// progress ends: at most its 10 s statement timeout).
    public func stop() {
        guard thread != nil else { return }
        stopFlag.set()
        finished.wait()
        thread = nil
    }

    private func connectAndListen() -> OpaquePointer? {
        // TCP keepalives: a half-open connection is noticed within about a minute, not the kernel's two hours.
        let keys = [
            "dbname", "application_name", "connect_timeout", "keepalives", "keepalives_idle",
            "keepalives_interval", "keepalives_count",
        ]
        let conn = withCStrings(keys) { k in
            withCStrings([config.connectionString, "nexjobs-listener", "10", "1", "30", "10", "3"]) { v in
                PQconnectdbParams(k, v, 1)
            }
        }
        guard let conn else { return nil }
        guard PQstatus(conn) == CONNECTION_OK else {
            onError("listener cannot connect: " + config.scrub(lastError(conn)))
            PQfinish(conn)
            return nil
        }
        silenceNotices(conn)
        for ch in channels {
            guard let escaped = PQescapeIdentifier(conn, ch, ch.utf8.count) else {
                PQfinish(conn)
                return nil
            }
            let sql = "LISTEN " + String(cString: escaped)
            PQfreemem(escaped)
            let res = PQexec(conn, sql)
            let ok = res != nil && PQresultStatus(res) == PGRES_COMMAND_OK
            PQclear(res)
            if !ok {
                onError("LISTEN failed: " + config.scrub(lastError(conn)))
                PQfinish(conn)
                return nil
            }
        }
        // Blocking mode: `afterNotifications` runs statements on this connection; PQconsumeInput never blocks.
        // They must not hold the thread (cancel notifications wait behind them, and `stop()` waits for the thread):
        // a statement gives up after 10 s, a lock wait after 2 s (the claim skips locked rows anyway; this bounds a
        // table lock taken by a migration).
        let limits = PQexec(conn, "SET statement_timeout = '10s'; SET lock_timeout = '2s'")
        let limited = limits != nil && PQresultStatus(limits) == PGRES_COMMAND_OK
        PQclear(limits)
        while let extra = PQgetResult(conn) { PQclear(extra) }
        if !limited {
            onError("listener cannot set its timeouts: " + config.scrub(lastError(conn)))
            PQfinish(conn)
            return nil
        }
        prepared.names = [:]
        return conn
    }

    private func loop(ready: DispatchSemaphore) {
        var conn: OpaquePointer? = connectAndListen()
        ready.signal()
        var backoffMs = 100
        var needsReconnectSignal = false
        while !stopFlag.value {
            guard let c = conn else {
                var waited = 0
                while waited < backoffMs && !stopFlag.value {
                    usleep(50_000)
                    waited += 50
                }
                backoffMs = min(backoffMs * 2, 5_000)
                conn = connectAndListen()
                if conn != nil { needsReconnectSignal = true }
                continue
            }
            if needsReconnectSignal {
                needsReconnectSignal = false
                backoffMs = 100
                onReconnect()
            }
            var fds = pollfd(fd: PQsocket(c), events: Int16(POLLIN), revents: 0)
            let r = poll(&fds, 1, 100)
            if r < 0 && errno != EINTR {
                PQfinish(c)
                conn = nil
                continue
            }
            if r > 0 || PQisBusy(c) == 0 {
                if PQconsumeInput(c) == 0 {
                    onError("listener connection lost: " + config.scrub(lastError(c)))
                    PQfinish(c)
                    conn = nil
                    continue
                }
                // A statement run by `afterNotifications` reads notifications that arrive meanwhile off the socket
                // into libpq's queue, where poll() cannot see them: drain again until a round brings none.
                while true {
                    var received = false
                    while let n = PQnotifies(c) {
                        let note = PGNotification(
                            channel: String(cString: n.pointee.relname),
                            payload: String(cString: n.pointee.extra))
                        PQfreemem(n)
                        onNotify(note)
                        received = true
                    }
                    guard received, let after = afterNotifications, PQstatus(c) == CONNECTION_OK else { break }
                    after(PGListenerSession(handle: c, config: config, prepared: prepared))
                }
            }
            if PQstatus(c) != CONNECTION_OK {
                PQfinish(c)
                conn = nil
            }
        }
        if let c = conn { PQfinish(c) }
    }
}
