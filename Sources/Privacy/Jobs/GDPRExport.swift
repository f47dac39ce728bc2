import Foundation
import Postgres
import Queue

/// `gdpr_export {request_id}`: a machine-readable export of the request's subject (policy section 8: access and
/// portability), written as NDJSON chunks in `nexcomet.privacy_export_chunks` (sql/032), in the transaction that
/// completes the job and marks the request `completed`. `nexjobs privacy download ID` streams it.
///
/// Line 1 (chunk 0) is a header (`format`, `exported_at`, `subject`, ids); every other line is one row:
/// `{"category": ..., "row": {...}}`, category by category in ``PrivacyCatalogue`` order, up to
/// ``rowsPerChunk`` lines per chunk. For an organization (`user_id` NULL): every catalogued table's rows of the
/// organization (its users, connection metadata, accounts, entities, metrics, runs, logs including its users'
/// logs without an organization id, notifications, privacy requests and audit entries). For a user: the
/// organization row, the user's own row, the organization's connection metadata, the user's logs, requests and
/// their audit entries. Token ciphertext and key ids never leave (``CatalogueTable/secretColumns``); nothing of
/// another organization (every predicate is scoped by the request's organization id).
///
/// Rows go from table to chunk inside PostgreSQL (`INSERT ... SELECT`): the worker holds no row, so its memory
/// stays flat whatever the organization's size. The request's `result` keeps a summary: format, chunks, rows per
/// category, bytes.
public struct GDPRExportHandler: JobHandler {
    public typealias Args = PrivacyRequestJobArgs

    public static let kind = "gdpr_export"
    public static let format = "nexcomet-export-v2"
    public var timeout: Duration { .seconds(3600) }
    /// NDJSON lines per chunk (1...1,000,000; default 10,000, about 3 MB of metric rows).
    let rowsPerChunk: Int

    public init(rowsPerChunk: Int = 10_000) { self.rowsPerChunk = min(max(rowsPerChunk, 1), 1_000_000) }

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.requestID.value
        let chunk = rowsPerChunk
        try await PrivacyRequests.failOnRefusal(id, context: context) {
            try await context.pool.withTransaction { c in
                guard let request = try await PrivacyRequest.lock(id, kind: "export", on: c) else {
                    throw JobDiscard("privacy request \(id) does not exist")
                }
                guard request.status != "completed" else {
                    try await context.complete(on: c)
                    return
                }
                let org = request.organizationID
                let user = request.userID
                if let user { try await PrivacyRequest.checkUser(user, belongsTo: org, on: c) }
                try await c.execute("DELETE FROM nexcomet.privacy_export_chunks WHERE request_id = \(id)")
                let header = try await c.query(
                    """
                    INSERT INTO nexcomet.privacy_export_chunks (request_id, seq, body)
                    VALUES (\(id), 0, jsonb_build_object(
                        'format', \(Self.format)::text, 'exported_at', now(),
                        'subject', CASE WHEN \(user)::bigint IS NULL THEN 'organization' ELSE 'user' END,
                        'organization_id', \(org)::bigint, 'user_id', \(user)::bigint, 'request_id', \(id)::bigint
                      )::text || E'\\n')
                    RETURNING length(body)
                    """
                ).first!.decode(0, as: Int64.self)
                var seq = 1
                var bytes = header
                var rows: [String: Int64] = [:]
                for t in PrivacyCatalogue.tables {
                    guard let category = t.category,
                        let predicate = user == nil ? t.organizationRows : t.userRows
                    else { continue }
                    let r = try await c.query(
                        PGQuery(
                            unsafeSQL: """
                                WITH p AS (SELECT $1::bigint AS org, $2::bigint AS usr, $3::bigint AS req,
                                                  $4::int AS base, $5::int AS chunk, $6::text[] AS secret,
                                                  $7::text AS category),
                                s AS (SELECT row_number() OVER (ORDER BY \(t.order)) AS n,
                                             json_build_object('category', p.category,
                                                               'row', to_jsonb(t) - p.secret)::text AS line
                                        FROM nexcomet.\(t.table) t, p WHERE \(predicate)),
                                ins AS (INSERT INTO nexcomet.privacy_export_chunks (request_id, seq, body)
                                        SELECT p.req, p.base + ((s.n - 1) / p.chunk)::int,
                                               string_agg(s.line, E'\\n' ORDER BY s.n) || E'\\n'
                                          FROM s, p GROUP BY p.req, p.base, p.chunk, (s.n - 1) / p.chunk
                                        RETURNING length(body) AS bytes)
                                SELECT (SELECT count(*) FROM ins)::int, (SELECT coalesce(sum(bytes), 0) FROM ins)::bigint,
                                       (SELECT count(*) FROM s)::bigint
                                """,
                            binds: [
                                String(org), user.map(String.init), String(id), String(seq), String(chunk),
                                "{" + t.secretColumns.joined(separator: ",") + "}", category,
                            ])
                    ).first!
                    seq += try r.decode(0) as Int
                    bytes += try r.decode(1) as Int64
                    rows[category] = try r.decode(2) as Int64
                }
                let categories = rows.keys.sorted()
                try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests
                       SET status = 'completed', error = NULL,
                           result = jsonb_build_object(
                               'format', \(Self.format)::text, 'chunks', \(seq)::int, 'bytes', \(bytes)::bigint,
                               'rows', (SELECT jsonb_object_agg(k, v)
                                          FROM unnest(\(categories)::text[], \(categories.map { rows[$0]! })::bigint[]) AS r(k, v))),
                           started_at = coalesce(started_at, now()), completed_at = now()
                     WHERE id = \(id)
                    """)
                try await audit(
                    "export", requestID: id, organizationID: org,
                    details: ["bytes": bytes, "chunks": Int64(seq), "user_level": user == nil ? 0 : 1], on: c)
                try await context.complete(on: c)
            }
        }
    }
}

/// Reading an export's chunks (`nexjobs privacy download`).
public enum PrivacyExport {
    /// Why an export cannot be read.
    public enum Unavailable: Error, Equatable, Sendable {
        case notFound
        case notAnExport(kind: String)
        case notCompleted(status: String)
    }

    /// Checks that request `id` is a completed export, then hands its chunks to `write` in order, `pageSize`
    /// chunks per query (so at most that many are in memory). Returns the bytes written.
    public static func stream(
        _ id: Int64, pool: PGPool, pageSize: Int = 4, write: (String) throws -> Void
    ) async throws -> Result<Int64, Unavailable> {
        guard
            let r = try await pool.query(
                "SELECT kind, status FROM nexcomet.privacy_requests WHERE id = \(id)"
            ).first
        else { return .failure(.notFound) }
        let kind: String = try r.decode(0)
        let status: String = try r.decode(1)
        guard kind == "export" else { return .failure(.notAnExport(kind: kind)) }
        guard status == "completed" else { return .failure(.notCompleted(status: status)) }
        var last = -1
        var total: Int64 = 0
        while true {
            let page = try await pool.query(
                """
                SELECT seq, body FROM nexcomet.privacy_export_chunks
                 WHERE request_id = \(id) AND seq > \(last) ORDER BY seq LIMIT \(max(1, pageSize))
                """)
            if page.isEmpty { break }
            for row in page {
                last = try row.decode(0)
                let body: String = try row.decode(1)
                total += Int64(body.utf8.count)
                try write(body)
            }
        }
        return .success(total)
    }

    /// The whole export as one string (tests and small exports).
    public static func read(_ id: Int64, pool: PGPool) async throws -> Result<String, Unavailable> {
        var out = ""
        return try await stream(id, pool: pool) { out += $0 }.map { _ in out }
    }
}
