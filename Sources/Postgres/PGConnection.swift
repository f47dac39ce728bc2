import CLibPQ
import Dispatch
import Foundation
import Synchronization

/// One PostgreSQL connection: owns a `PGconn` and runs every libpq call on its own serial queue.
///
/// libpq allows one thread at a time per connection, and its calls block: they run on `queue`, never on Swift's
/// cooperative pool, and resume the caller through a continuation. `@unchecked Sendable` is justified by that queue:
/// `handle` is only touched from it.
public final class PGConnection: @unchecked Sendable {
    private let queue: DispatchQueue
    private var handle: OpaquePointer?
    private let config: PGConfig
    /// Set once the connection is known to be unusable; read from any thread.
    private let brokenFlag = LockedFlag()

    private init(config: PGConfig, handle: OpaquePointer, queue: DispatchQueue) {
        self.config = config
        self.handle = handle
        self.queue = queue
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection. Fails with `.connectionFailed` and libpq's reason (password scrubbed).
    public static func connect(_ config: PGConfig, applicationName: String = "nexjobs") async throws -> PGConnection {
        let queue = DispatchQueue(label: "nexjobs.pg.connection")
        return try await withCheckedThrowingContinuation { cont in
            queue.async {
                let keywords = ["dbname", "application_name", "connect_timeout"]
                let values = [config.connectionString, applicationName, "10"]
                // expand_dbname=1: the first dbname is itself a URI or conninfo; later keys only fill in defaults
                // not set there.
                let conn = withCStrings(keywords) { k in
                    withCStrings(values) { v in PQconnectdbParams(k, v, 1) }
                }
                guard let conn else {
                    cont.resume(throwing: PGError(.connectionFailed, "out of memory creating a connection"))
                    return
                }
                if PQstatus(conn) != CONNECTION_OK {
                    let message = config.scrub(lastError(conn))
                    PQfinish(conn)
                    cont.resume(throwing: PGError(.connectionFailed, message))
                    return
                }
                silenceNotices(conn)
                cont.resume(returning: PGConnection(config: config, handle: conn, queue: queue))
            }
        }
    }

    /// True once a failure showed the connection cannot be used again.
    public var isBroken: Bool { brokenFlag.value }

    /// Checks an idle connection without a round trip: false (and the connection marked broken) when its socket
    /// is gone, it is inside a transaction, or the server sent anything while it was idle. A server that shuts
    /// down or restarts sends its sessions a FATAL `57P01` and closes them, so a pooled connection from before a
    /// restart is caught here before a statement is sent on it.
    public func isUsableWhenIdle() async -> Bool {
        if isBroken { return false }
        let ok: Bool = await withCheckedContinuation { cont in
            queue.async {
                guard let h = self.handle, PQstatus(h) == CONNECTION_OK, PQtransactionStatus(h) == PQTRANS_IDLE
                else { return cont.resume(returning: false) }
                let fd = PQsocket(h)
                guard fd >= 0 else { return cont.resume(returning: false) }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                var rc: Int32
                repeat { rc = poll(&p, 1, 0) } while rc < 0 && errno == EINTR
                cont.resume(returning: rc == 0)
            }
        }
        if !ok { brokenFlag.set() }
        return ok
    }

    /// Closes the connection now; later calls fail with `.connectionClosed`.
    public func close() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            queue.async {
                if let h = self.handle { PQfinish(h) }
                self.handle = nil
                self.brokenFlag.set()
                cont.resume()
            }
        }
    }

    /// Runs `body` with the raw handle on the connection's queue.
    func withHandle<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async {
                guard let h = self.handle else {
                    cont.resume(throwing: PGError(.connectionClosed, "the connection is closed"))
                    return
                }
                do {
                    cont.resume(returning: try body(h))
                } catch let e as PGError {
                    if e.isConnectionLoss || PQstatus(h) != CONNECTION_OK { self.brokenFlag.set() }
                    cont.resume(throwing: e)
                } catch {
                    cont.resume(throwing: error)
                }
            }
        }
    }

    /// Runs one parameterized statement (extended protocol) and returns its rows.
    @discardableResult
    public func query(_ query: PGQuery) async throws -> PGRows {
        let config = self.config
        return try await withHandle { h in
            let res = withOptionalCStrings(query.binds) { params in
                PQexecParams(h, query.sql, Int32(query.binds.count), nil, params, nil, nil, 0)
            }
            return try PGConnection.consume(res, conn: h, config: config)
        }
    }

    /// Runs a statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ query: PGQuery) async throws -> Int {
        try await self.query(query).affected
    }

    /// Runs one or more statements without parameters (simple protocol), e.g. a migration file.
    public func simpleQuery(_ sql: String) async throws {
        let config = self.config
        _ = try await withHandle { h in
            let res = PQexec(h, sql)
            _ = try PGConnection.consume(res, conn: h, config: config)
            // Drain any further results of a multi-statement string.
            while let extra = PQgetResult(h) { PQclear(extra) }
            return 0
        }
    }

    /// Bulk-loads rows with `COPY ... FROM STDIN` (text format).
    ///
    /// - Parameters:
    ///   - copySQL: a `COPY table (cols) FROM STDIN` statement owned by the program.
    ///   - rows: row values in column order; nil is NULL.
    /// - Returns: the number of rows copied.
    @discardableResult
    public func copyIn(unsafeSQL copySQL: String, rows: [[String?]]) async throws -> Int {
        let config = self.config
        return try await withHandle { h in
            let start = PQexec(h, copySQL)
            guard let start else { throw PGError(.copyFailed, config.scrub(lastError(h))) }
            let status = PQresultStatus(start)
            if status != PGRES_COPY_IN {
                defer { PQclear(start) }
                throw serverError(start, conn: h, config: config)
            }
            PQclear(start)
            var buffer = [UInt8]()
            buffer.reserveCapacity(1 << 16)
            var failure: String? = nil
            func flush() {
                guard !buffer.isEmpty, failure == nil else { return }
                let ok = buffer.withUnsafeBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) {
                        PQputCopyData(h, $0, Int32(p.count))
                    }
                }
                if ok != 1 { failure = lastError(h) }
                buffer.removeAll(keepingCapacity: true)
            }
            for row in rows {
                for (i, value) in row.enumerated() {
                    if i > 0 { buffer.append(9) }
                    if let value { appendCopyEscaped(value, to: &buffer) } else { buffer.append(contentsOf: [92, 78]) }
                }
                buffer.append(10)
                if buffer.count >= 1 << 16 { flush() }
            }
            flush()
            if PQputCopyEnd(h, failure) != 1 { failure = failure ?? lastError(h) }
            var copied = 0
            var serverFailure: PGError? = nil
            while let res = PQgetResult(h) {
                if PQresultStatus(res) == PGRES_COMMAND_OK {
                    copied = Int(String(cString: PQcmdTuples(res))) ?? 0
                } else if serverFailure == nil {
                    serverFailure = serverError(res, conn: h, config: config)
                }
                PQclear(res)
            }
            if let serverFailure { throw serverFailure }
            if let failure { throw PGError(.copyFailed, config.scrub(failure)) }
            return copied
        }
    }

    /// Turns a `PGresult` into rows or a `PGError`, clearing it either way.
    static func consume(_ res: OpaquePointer?, conn h: OpaquePointer, config: PGConfig) throws -> PGRows {
        guard let res else {
            throw PGError(PQstatus(h) == CONNECTION_OK ? .server : .connectionClosed, config.scrub(lastError(h)))
        }
        defer { PQclear(res) }
        switch PQresultStatus(res) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_SINGLE_TUPLE:
            let nrows = Int(PQntuples(res))
            let ncols = Int(PQnfields(res))
            var columns = [String]()
            columns.reserveCapacity(ncols)
            for c in 0..<ncols { columns.append(String(cString: PQfname(res, Int32(c)))) }
            var cells = [String?]()
            cells.reserveCapacity(nrows * ncols)
            for r in 0..<nrows {
                for c in 0..<ncols {
                    if PQgetisnull(res, Int32(r), Int32(c)) == 1 {
                        cells.append(nil)
                    } else {
                        let len = Int(PQgetlength(res, Int32(r), Int32(c)))
                        let ptr = PQgetvalue(res, Int32(r), Int32(c))!
                        cells.append(
                            ptr.withMemoryRebound(to: UInt8.self, capacity: len) {
                                String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self)
                            })
                    }
                }
            }
            let affected = Int(String(cString: PQcmdTuples(res))) ?? 0
            return PGRows(columns: ncols == 0 ? [] : columns, cells: cells, affected: affected)
        default:
            throw serverError(res, conn: h, config: config)
        }
    }
}

func serverError(_ res: OpaquePointer, conn h: OpaquePointer, config: PGConfig) -> PGError {
    func field(_ code: Int32) -> String? {
        guard let p = PQresultErrorField(res, code) else { return nil }
        return String(cString: p)
    }
    let state = field(nexjobs_pg_diag_sqlstate())
    let primary = field(nexjobs_pg_diag_message_primary()) ?? String(cString: PQresultErrorMessage(res))
    let detail = field(nexjobs_pg_diag_message_detail())
    let lost = PQstatus(h) != CONNECTION_OK
    return PGError(
        lost ? .connectionClosed : .server,
        config.scrub(primary.trimmingCharacters(in: .whitespacesAndNewlines)),
        sqlState: state, detail: detail.map(config.scrub))
}

/// Server NOTICEs ("... already exists, skipping") would go to stderr by default; they are not errors.
func silenceNotices(_ conn: OpaquePointer) {
    PQsetNoticeProcessor(conn, { _, _ in }, nil)
}

func lastError(_ h: OpaquePointer) -> String {
    guard let p = PQerrorMessage(h) else { return "unknown libpq error" }
    let s = String(cString: p).trimmingCharacters(in: .whitespacesAndNewlines)
    return s.isEmpty ? "unknown libpq error" : s
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
func appendCopyEscaped(_ value: String, to buffer: inout [UInt8]) {
    for b in value.utf8 {
        switch b {
        case 92:
            buffer.append(92)
            buffer.append(92)
        case 9:
            buffer.append(92)
            buffer.append(116)
        case 10:
            buffer.append(92)
            buffer.append(110)
        case 13:
            buffer.append(92)
            buffer.append(114)
        default: buffer.append(b)
        }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live only for the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var storage = strings.map { strdup($0) }
    storage.append(nil)
    defer { for p in storage { free(p) } }
    return storage.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
    }
}

/// Like `withCStrings` but nil stays a NULL pointer (SQL NULL parameter).
func withOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    if strings.isEmpty { return body(nil) }
    let storage = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for p in storage { free(p) } }
    return storage.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
    }
}

/// A flag that is set once, readable from any thread.
final class LockedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var value: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}
