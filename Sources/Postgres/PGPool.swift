import Foundation
import Synchronization

/// A small pool of `PGConnection`s shared by the tasks of one process.
///
/// Connections are opened lazily up to `maxConnections`; a caller that finds none free waits (FIFO) up to
/// `acquireTimeout`. A connection that failed with a connection-loss error is dropped instead of returned. An idle
/// connection is checked before it is handed out (`PGConnection.isUsableWhenIdle`: no round trip, it catches the
/// FATAL and close a restarting server sends), and a stale one is replaced by a fresh one transparently; a
/// `withTransaction` whose `BEGIN` fails with a connection-class error (SQLSTATE 08*, 57P01..57P03, libpq status
/// bad) is retried once on a fresh connection, since nothing ran yet. After a PostgreSQL restart callers see no
/// error.
///
/// `statementTimeout` and `lockTimeout`, when given, are set on every connection the pool opens (session
/// settings): a statement running longer fails with SQLSTATE 57014, a lock wait longer with 55P03.
public final class PGPool: Sendable {
    public let config: PGConfig
    public let maxConnections: Int
    public let acquireTimeout: Duration
    let applicationName: String
    /// `statement_timeout` / `lock_timeout` of every connection opened; nil keeps the server's.
    public let statementTimeout: Duration?
    public let lockTimeout: Duration?

    private struct State {
        var idle: [PGConnection] = []
        var open = 0
        var waiters: [(id: UInt64, cont: CheckedContinuation<PGConnection?, Error>)] = []
        var nextWaiter: UInt64 = 0
        var closed = false
    }
    private let state = Mutex(State())

    /// - Parameters:
    ///   - url: a libpq URI or conninfo string (`DATABASE_URL`).
    ///   - maxConnections: upper bound of open connections; default 4.
    ///   - acquireTimeout: how long a caller waits for a free connection; default 30 s.
    ///   - statementTimeout: `statement_timeout` of every connection; nil keeps the server's (default nil).
    ///   - lockTimeout: `lock_timeout` of every connection; nil keeps the server's (default nil).
    public init(
        url: String, maxConnections: Int = 4, acquireTimeout: Duration = .seconds(30),
        applicationName: String = "nexjobs", statementTimeout: Duration? = nil,
        lockTimeout: Duration? = nil
    ) throws {
        self.config = try PGConfig(url)
        self.maxConnections = max(1, maxConnections)
        self.acquireTimeout = acquireTimeout
        self.applicationName = applicationName
        self.statementTimeout = statementTimeout
        self.lockTimeout = lockTimeout
    }

    /// Borrows a connection for the duration of `body`.
    @discardableResult
    public func withConnection<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        let conn = try await acquire()
        do {
            let value = try await body(conn)
            release(conn)
            return value
        } catch {
            release(conn)
            throw error
        }
    }

    /// Runs `body` inside `BEGIN ... COMMIT` on one connection; rolls back if it throws.
    @discardableResult
    public func withTransaction<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        var retried = false
        while true {
            do {
                return try await withConnection { conn in
                    do {
                        try await conn.execute("BEGIN")
                    } catch let e as PGError where e.isConnectionLoss && !retried {
                        throw NotBegun()
                    }
                    return try await conn.transactionBody(body)
                }
            } catch is NotBegun {
                retried = true
            }
        }
    }

    @discardableResult
    public func query(_ query: PGQuery) async throws -> PGRows {
        try await withConnection { try await $0.query(query) }
    }

    @discardableResult
    public func execute(_ query: PGQuery) async throws -> Int {
        try await withConnection { try await $0.execute(query) }
    }

    /// Closes idle connections and refuses new borrowers; borrowed ones close when returned.
    public func close() async {
        let (idle, waiters) = state.withLock { s -> ([PGConnection], [CheckedContinuation<PGConnection?, Error>]) in
            s.closed = true
            let idle = s.idle
            s.open -= idle.count
            s.idle = []
            let w = s.waiters.map(\.cont)
            s.waiters = []
            return (idle, w)
        }
        for w in waiters { w.resume(throwing: PGError(.poolClosed, "the connection pool is closed")) }
        for c in idle { await c.close() }
    }

    func acquire() async throws -> PGConnection {
        let c = try await acquireSlot()
        if await c.isUsableWhenIdle() { return c }
        // Stale (e.g. the server restarted): drop it and open a fresh connection in its slot.
        Task { await c.close() }
        return try await openCounted()
    }

    private func acquireSlot() async throws -> PGConnection {
        enum Step {
            case use(PGConnection)
            case open
            case wait(UInt64)
        }
        let waiterID = state.withLock { s -> UInt64 in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let step: Step = try state.withLock { s in
            if s.closed { throw PGError(.poolClosed, "the connection pool is closed") }
            if let c = s.idle.popLast() { return .use(c) }
            if s.open < maxConnections {
                s.open += 1
                return .open
            }
            return .wait(waiterID)
        }
        switch step {
        case .use(let c):
            return c
        case .open:
            return try await openCounted()
        case .wait(let id):
            let timeout = acquireTimeout
            let handed: PGConnection? = try await withThrowingTaskGroup(of: PGConnection?.self) { group in
                group.addTask {
                    try await withTaskCancellationHandler {
                        try await withCheckedThrowingContinuation { cont in
                            // Re-check under the lock: a connection may have come back since the decision above.
                            enum Now {
                                case conn(PGConnection)
                                case slot, queued, closed
                            }
                            let now = self.state.withLock { s -> Now in
                                if s.closed { return .closed }
                                if let c = s.idle.popLast() { return .conn(c) }
                                if s.open < self.maxConnections {
                                    s.open += 1
                                    return .slot
                                }
                                s.waiters.append((id, cont))
                                return .queued
                            }
                            switch now {
                            case .conn(let c): cont.resume(returning: c)
                            case .slot: cont.resume(returning: nil)
                            case .queued: break
                            case .closed: cont.resume(throwing: PGError(.poolClosed, "the connection pool is closed"))
                            }
                        }
                    } onCancel: {
                        let w = self.state.withLock { s -> CheckedContinuation<PGConnection?, Error>? in
                            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                            return s.waiters.remove(at: i).cont
                        }
                        w?.resume(throwing: CancellationError())
                    }
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw PGError(
                        .poolTimeout, "no database connection free after \(timeout) (pool size \(self.maxConnections))")
                }
                let first: Result<PGConnection?, Error>
                do { first = .success(try await group.next()!) } catch { first = .failure(error) }
                group.cancelAll()
                // The loser may still have been handed a connection or a slot: give it back.
                while let other = try? await group.next() {
                    if let c = other { self.release(c) } else { self.slotFreed() }
                }
                return try first.get()
            }
            // nil means: a slot was freed for you, open a connection in it.
            if let handed { return handed }
            return try await openCounted()
        }
    }

    private func openCounted() async throws -> PGConnection {
        do {
            let c = try await PGConnection.connect(config, applicationName: applicationName)
            do {
                for (name, value) in [("statement_timeout", statementTimeout), ("lock_timeout", lockTimeout)] {
                    guard let value else { continue }
                    try await c.query("SELECT set_config(\(name), \(Self.settingMS(value)), false)")
                }
            } catch {
                await c.close()
                throw error
            }
            return c
        } catch {
            slotFreed()
            throw error
        }
    }

    /// A positive duration as a whole-millisecond setting value (at least 1, at most Int32.max).
    static func settingMS(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = s.multipliedReportingOverflow(by: 1000).partialValue &+ atto / 1_000_000_000_000_000
        return String(min(max(ms, 1), Int64(Int32.max)))
    }

    /// A slot opened up: let the first waiter open a connection in it, or lower the count.
    private func slotFreed() {
        let w = state.withLock { s -> CheckedContinuation<PGConnection?, Error>? in
            if !s.waiters.isEmpty { return s.waiters.removeFirst().cont }
            s.open -= 1
            return nil
        }
        w?.resume(returning: nil)
    }

    func release(_ conn: PGConnection) {
        if conn.isBroken {
            slotFreed()
            return
        }
        let (w, closeIt) = state.withLock { s -> (CheckedContinuation<PGConnection?, Error>?, Bool) in
            if s.closed {
                s.open -= 1
                return (nil, true)
            }
            if !s.waiters.isEmpty { return (s.waiters.removeFirst().cont, false) }
            s.idle.append(conn)
            return (nil, false)
        }
        if let w { w.resume(returning: conn) }
        if closeIt { Task { await conn.close() } }
    }
}

/// `BEGIN` failed on a dead connection: nothing ran, so the whole transaction may run again.
private struct NotBegun: Error {}

extension PGConnection {
    /// Runs `body` inside `BEGIN ... COMMIT`; rolls back and rethrows if it throws.
    @discardableResult
    public func transaction<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        try await execute("BEGIN")
        return try await transactionBody(body)
    }

    /// The part of `transaction` after `BEGIN`.
    func transactionBody<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        do {
            let value = try await body(self)
            try await execute("COMMIT")
            return value
        } catch {
            if !isBroken { _ = try? await execute("ROLLBACK") }
            throw error
        }
    }
}
