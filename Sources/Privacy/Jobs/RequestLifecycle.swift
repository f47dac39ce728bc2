import Foundation
import Postgres
import Queue

/// The life of a privacy request (`nexcomet.privacy_requests`, policy sections 8 and 9: answered within 30 days).
///
/// `pending` -> `running` (export, erase: a job is queued) -> `completed`, or `failed` with `error` set:
/// refused (the user belongs to another organization, the subject no longer exists, the organization is deleted)
/// or its job exhausted its attempts. `restrict`, `object` and `lift_restriction` are applied by the scheduler
/// directly (pending -> completed or failed). An operator moves a `failed` request back to `pending`
/// (`nexjobs privacy retry`). `due_at` (requested_at + 30 days) is set by the database, and every status change
/// is written to `privacy_audit` by a trigger (sql/030_privacy_lifecycle.sql).
public enum PrivacyRequests {
    /// The kinds of request (sql/030).
    public static let kinds = ["export", "erase", "restrict", "lift_restriction", "object"]

    /// Marks an unfinished request `failed` with `reason`, in its own transaction. Returns whether it changed.
    @discardableResult
    public static func fail(_ id: Int64, reason: String, pool: PGPool) async throws -> Bool {
        try await pool.execute(
            """
            UPDATE nexcomet.privacy_requests
               SET status = 'failed', error = \(reason), completed_at = now()
             WHERE id = \(id) AND status IN ('pending', 'running')
            """) > 0
    }

    /// Runs a request job's body; a refusal (`JobDiscard`) or a failure on the job's last attempt ends the request
    /// `failed` with the reason before the job itself fails.
    static func failOnRefusal(_ id: Int64, context: JobContext, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let e as JobDiscard {
            try? await fail(id, reason: e.message, pool: context.pool)
            throw e
        } catch  where context.attempt >= context.maxAttempts && !(error is JobSnooze) {
            try? await fail(
                id, reason: "the job exhausted its \(context.maxAttempts) attempts: \(error)", pool: context.pool)
            throw error
        }
    }

    /// Ends `failed` every `running` export or erase request whose job is no longer live (failed, cancelled,
    /// or gone), with the job's last error: covers a worker that died on the last attempt. Returns the count.
    public static func failOrphans(on c: PGConnection) async throws -> Int {
        try await c.execute(
            """
            UPDATE nexcomet.privacy_requests r
               SET status = 'failed', completed_at = now(),
                   error = coalesce(
                     (SELECT 'job ' || j.id || ' ended ' || j.state || ' after ' || j.attempt || ' attempt(s): '
                             || coalesce(j.errors -> -1 ->> 'error', 'no error recorded')
                        FROM nexjobs.jobs j WHERE j.unique_key = 'privacy_request:' || r.id
                       ORDER BY j.id DESC LIMIT 1),
                     'its job no longer exists')
             WHERE r.status = 'running' AND r.kind IN ('export', 'erase')
               AND NOT EXISTS (SELECT 1 FROM nexjobs.jobs j
                                WHERE j.unique_key = 'privacy_request:' || r.id
                                  AND j.state IN ('available', 'retryable', 'running'))
            """)
    }

    /// Applies pending `restrict`, `object` and `lift_restriction` requests, oldest first (so a lift that
    /// follows a restriction wins), each in its own short transaction on `pool`. `restrict` and `object` set the
    /// organization's `processing_restricted` (no sync, refresh or platform call; retention still purges);
    /// `lift_restriction` clears it. Refused (ending `failed`): a user of another organization, a user or an
    /// organization that no longer exists or is deleted. Returns the number handled.
    public static func applyRestrictions(pool: PGPool, batchSize: Int) async throws -> Int {
        var handled = 0
        while handled < batchSize {
            let done: Bool = try await pool.withTransaction { c in
                guard
                    let r = try await c.query(
                        """
                        SELECT r.id, r.kind, r.organization_id, r.user_id,
                               o.id IS NOT NULL AND o.deleted_at IS NULL,
                               (SELECT u.organization_id FROM nexcomet.users u WHERE u.id = r.user_id)
                          FROM nexcomet.privacy_requests r
                          LEFT JOIN nexcomet.organizations o ON o.id = r.organization_id
                         WHERE r.status = 'pending' AND r.kind IN ('restrict', 'object', 'lift_restriction')
                         ORDER BY r.requested_at, r.id LIMIT 1
                           FOR UPDATE OF r SKIP LOCKED
                        """
                    ).first
                else { return false }
                let id: Int64 = try r.decode(0)
                let kind: String = try r.decode(1)
                let org: Int64 = try r.decode(2)
                let user: Int64? = try r.decode(3)
                let orgLive: Bool = try r.decode(4)
                let owner: Int64? = try r.decode(5)
                var refusal: String? = nil
                if !orgLive {
                    refusal = "refused: organization \(org) is deleted"
                } else if let user, owner == nil {
                    refusal = "refused: the subject, user \(user), no longer exists"
                } else if let user, let owner, owner != org {
                    refusal = "refused: user \(user) does not belong to organization \(org)"
                }
                if let refusal {
                    try await c.execute(
                        """
                        UPDATE nexcomet.privacy_requests
                           SET status = 'failed', error = \(refusal), started_at = now(), completed_at = now()
                         WHERE id = \(id)
                        """)
                    return true
                }
                let restricted = kind != "lift_restriction"
                let by: String? = restricted ? kind : nil
                try await c.execute(
                    """
                    UPDATE nexcomet.organizations
                       SET processing_restricted = \(restricted)::boolean, processing_restricted_by = \(by)::text,
                           updated_at = now()
                     WHERE id = \(org)
                    """)
                try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests
                       SET status = 'completed', started_at = now(), completed_at = now(), error = NULL,
                           result = jsonb_build_object('processing_restricted', \(restricted)::boolean)
                     WHERE id = \(id)
                    """)
                try await audit(kind, requestID: id, organizationID: org, details: [:], on: c)
                return true
            }
            guard done else { break }
            handled += 1
        }
        return handled
    }

    /// Queues a `gdpr_export` or `gdpr_erase` job (unique key `privacy_request:<id>`, `maxAttempts` attempts) for
    /// up to `batchSize` pending export and erase requests, oldest first, moving them to `running`.
    public static func enqueuePending(
        on c: PGConnection, batchSize: Int, queue: String, priority: Int, maxAttempts: Int = 5
    ) async throws -> Int {
        try await c.query(
            """
            WITH p AS (
              UPDATE nexcomet.privacy_requests SET status = 'running', started_at = now(), error = NULL
               WHERE id = ANY(ARRAY(
                 SELECT id FROM nexcomet.privacy_requests
                  WHERE status = 'pending' AND kind IN ('export', 'erase')
                  ORDER BY requested_at LIMIT \(batchSize) FOR UPDATE SKIP LOCKED))
              RETURNING id, kind
            )
            SELECT count(*)::int FROM p, LATERAL nexjobs.enqueue_ex(
                CASE p.kind WHEN 'export' THEN 'gdpr_export' ELSE 'gdpr_erase' END,
                jsonb_build_object('request_id', p.id), \(queue), \(priority), NULL,
                'privacy_request:' || p.id, \(maxAttempts)) e
            """
        ).first!.decode(0)
    }

    /// Moves a `failed` request back to `pending` (the scheduler then handles it as new; `due_at` is unchanged).
    /// Returns nil when the request does not exist, else the status it had (changed only when it was `failed`).
    public static func retry(_ id: Int64, pool: PGPool) async throws -> String? {
        try await pool.withTransaction { c in
            guard
                let status: String = try await c.query(
                    "SELECT status FROM nexcomet.privacy_requests WHERE id = \(id) FOR UPDATE"
                ).first?.decode(0)
            else { return nil }
            if status == "failed" {
                try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests
                       SET status = 'pending', error = NULL, started_at = NULL, completed_at = NULL, result = NULL
                     WHERE id = \(id)
                    """)
            }
            return status
        }
    }
}

/// Open privacy requests against their deadlines, for `nexjobs stats` and `/metrics`.
public struct PrivacyDeadlines: Sendable {
    /// Open (pending, running or failed: not yet answered) requests by kind.
    public var openByKind: [(kind: String, count: Int64)]
    /// Open requests past `due_at`.
    public var overdue: Int64
    /// Age of the oldest open request in seconds (0 when none).
    public var oldestOpenAgeSeconds: Double

    public static func load(on pool: PGPool) async throws -> PrivacyDeadlines {
        let rows = try await pool.query(
            """
            SELECT k.kind, count(r.id)::bigint
              FROM unnest(\(PrivacyRequests.kinds)::text[]) AS k(kind)
              LEFT JOIN nexcomet.privacy_requests r
                ON r.kind = k.kind AND r.status IN ('pending', 'running', 'failed')
             GROUP BY k.kind ORDER BY k.kind
            """)
        let open = try rows.map { (kind: try $0.decode(0) as String, count: try $0.decode(1) as Int64) }
        let r = try await pool.query(
            """
            SELECT count(*) FILTER (WHERE due_at < now())::bigint,
                   coalesce(extract(epoch FROM now() - min(requested_at)), 0)::float8
              FROM nexcomet.privacy_requests WHERE status IN ('pending', 'running', 'failed')
            """
        ).first!
        return PrivacyDeadlines(openByKind: open, overdue: try r.decode(0), oldestOpenAgeSeconds: try r.decode(1))
    }

    /// Prometheus text: `nexjobs_privacy_requests_open{kind}`, `nexjobs_privacy_requests_overdue`,
    /// `nexjobs_privacy_request_oldest_open_age_seconds`.
    public var prometheusText: String {
        var out = "# HELP nexjobs_privacy_requests_open Privacy requests not yet answered (pending, running, failed).\n"
        out += "# TYPE nexjobs_privacy_requests_open gauge\n"
        for (kind, n) in openByKind { out += "nexjobs_privacy_requests_open{kind=\"\(kind)\"} \(n)\n" }
        out += "# HELP nexjobs_privacy_requests_overdue Open privacy requests past their 30-day due date.\n"
        out += "# TYPE nexjobs_privacy_requests_overdue gauge\nnexjobs_privacy_requests_overdue \(overdue)\n"
        out += "# HELP nexjobs_privacy_request_oldest_open_age_seconds Age of the oldest open privacy request.\n"
        out += "# TYPE nexjobs_privacy_request_oldest_open_age_seconds gauge\n"
        out += "nexjobs_privacy_request_oldest_open_age_seconds \(String(format: "%.3f", oldestOpenAgeSeconds))\n"
        return out
    }
}
