import Foundation
import Platforms
import Postgres

/// The progress record of a running `sync_ad_account` job (`nexcomet.sync_progress`, sql/061).
enum SyncProgress {
    struct Record {
        var committedThrough: LocalDate?
    }

    /// The record of this job for a window starting on the same day, if any (another job's record is stale).
    static func load(adAccountID: Int64, jobID: Int64, window: DateWindow, on pool: PGPool) async throws -> Record? {
        let rows = try await pool.query(
            """
            SELECT committed_through::text FROM nexcomet.sync_progress
             WHERE ad_account_id = \(adAccountID) AND job_id = \(jobID)
               AND window_start = \(window.first.description)::date
            """)
        guard let r = rows.first else { return nil }
        let text: String? = try r.decode(0)
        return Record(committedThrough: text.flatMap { LocalDate(parsing: $0) })
    }

    /// Records that `jobID` committed everything up to `committedThrough` (nil: the entity lists only). With
    /// `keepCommitted`, an existing record of the same job keeps its committed date.
    static func save(
        adAccountID: Int64, jobID: Int64, window: DateWindow, committedThrough: LocalDate?,
        keepCommitted: Bool = false, on c: PGConnection
    ) async throws {
        try await c.execute(
            """
            INSERT INTO nexcomet.sync_progress (ad_account_id, job_id, window_start, window_end, committed_through)
            VALUES (\(adAccountID), \(jobID), \(window.first.description)::date, \(window.last.description)::date,
                    \(committedThrough?.description)::date)
            ON CONFLICT (ad_account_id) DO UPDATE
               SET job_id = excluded.job_id, window_start = excluded.window_start, window_end = excluded.window_end,
                   committed_through = CASE
                       WHEN \(keepCommitted) AND sync_progress.job_id = excluded.job_id
                            AND sync_progress.window_start = excluded.window_start
                       THEN sync_progress.committed_through ELSE excluded.committed_through END,
                   updated_at = now()
            """)
    }

    static func clear(adAccountID: Int64, on c: PGConnection) async throws {
        try await c.execute("DELETE FROM nexcomet.sync_progress WHERE ad_account_id = \(adAccountID)")
    }

    /// The report windows still to fetch: the days after `committedThrough` (all of `window` when nil), split into
    /// requests of at most `maxDays`, oldest first.
    static func remainingWindows(_ window: DateWindow, committedThrough: LocalDate?, maxDays: Int) -> [DateWindow] {
        var first = window.first
        if let done = committedThrough { first = max(first, done.adding(days: 1)) }
        guard first <= window.last else { return [] }
        return DateWindow(first: first, last: window.last).split(maxDays: maxDays)
    }
}
