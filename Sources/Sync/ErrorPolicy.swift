import Foundation
import Platforms
import Postgres
import Queue

/// What a sync job does with a classified platform failure; every path ends by throwing.
///
/// - `rateLimited`: ``JobSnooze`` for the platform's `retryAfter` (``SyncSettings/rateLimitSnooze`` when unknown),
///   no attempt charged.
/// - `transient`, `malformedResponse`, `accessTokenExpired` (the client already refreshed once): rethrown, so the
///   job is retried with backoff, an attempt charged, and fails only at its `max_attempts`. A damaged response (a
///   body that is not JSON, cut short, or not the documented shape) reaches this point only after the client tried
///   the request itself ``Platforms/TikTokConfiguration/responseTries`` times: a platform or network glitch, not
///   proof that the request is wrong. The error text (the job's `errors` history) names the endpoint path and what
///   was wrong, never a token or the query string.
/// - `reauthorizationRequired`: the connection becomes `needs_reauth` with one open `reauth_required`
///   notification (the partial unique index keeps it to one), then ``JobDiscard``. A connection whose stored
///   tokens were replaced by another job meanwhile is not marked: that job's refresh rotated the tokens this one
///   held, so the failure is retried instead.
/// - `permanent` (a well-formed answer whose API code or status says the request is invalid): ``JobDiscard`` with
///   the error's message.
///
/// In every case nothing from the failed sync is written, because writes only start after every fetch succeeded.
struct ErrorPolicy {
    var context: JobContext
    var store: ConnectionStore
    var connectionID: Int64
    var organizationID: Int64
    var platform: AdPlatform
    /// The access token the job started with, to detect a concurrent refresh.
    var startingAccessToken: String?
    var session: TokenSession?
    var adAccountID: Int64? = nil
    var window: DateWindow? = nil
    var started = ContinuousClock.now

    var defaultSnooze: Duration = .seconds(30)

    func fail(_ error: PlatformError) async throws -> Never {
        switch error.kind {
        case .rateLimited(let retryAfter):
            await recordRun(outcome: "rate_limited", error: error.description)
            throw JobSnooze(retryAfter ?? defaultSnooze, reason: error.description)
        case .transient, .malformedResponse, .accessTokenExpired:
            await recordRun(outcome: "failed", error: error.description)
            throw error
        case .reauthorizationRequired:
            if try await tokensReplacedElsewhere() {
                throw RetryableSyncError(message: "tokens were refreshed by another job; retrying with them")
            }
            try await markNeedsReauth(reason: error.description)
            throw JobDiscard("re-authorization required: \(error)")
        case .permanent:
            await recordRun(outcome: "failed", error: error.description)
            throw JobDiscard("\(error.kindName): \(error)")
        }
    }

    private func tokensReplacedElsewhere() async throws -> Bool {
        guard let startingAccessToken else { return false }
        let current = try await context.pool.withConnection { c in
            try await store.load(connectionID, on: c).tokens?.accessToken
        }
        let own = await session?.tokens.accessToken
        return current != nil && current != startingAccessToken && current != own
    }

    /// Marks the connection `needs_reauth`, writes the one open notification and the failed run, in one transaction.
    func markNeedsReauth(reason: String) async throws {
        try await context.pool.withTransaction { c in
            // The organization before the connection (the erasure's lock order): the notification's foreign key
            // would otherwise lock the organization after the connection and could deadlock with an erasure.
            try await c.execute(
                "SELECT 1 FROM nexcomet.organizations WHERE id = \(organizationID) FOR KEY SHARE")
            try await c.execute(
                """
                UPDATE nexcomet.ad_connections SET status = 'needs_reauth', last_error = \(reason), updated_at = now()
                 WHERE id = \(connectionID) AND status = 'active'
                """)
            try await c.execute(
                """
                INSERT INTO nexcomet.notifications (organization_id, connection_id, kind, payload)
                VALUES (\(organizationID), \(connectionID), 'reauth_required',
                        jsonb_build_object('platform', \(platform.rawValue)::text, 'reason', \(reason)::text))
                ON CONFLICT (connection_id) WHERE kind = 'reauth_required' AND sent_at IS NULL DO NOTHING
                """)
            try await insertRun(outcome: "needs_reauth", error: reason, on: c)
        }
    }

    /// Records a failed attempt in `sync_runs`; best effort (the job's own error history is the primary record).
    func recordRun(outcome: String, error: String) async {
        _ = try? await context.pool.withConnection { c in try await insertRun(outcome: outcome, error: error, on: c) }
    }

    func insertRun(outcome: String, error: String?, on c: PGConnection) async throws {
        let elapsed = ContinuousClock.now - started
        var calls = 0
        var byStatus: [String: Int] = [:]
        if let session {
            calls = await session.requestCount + session.refreshCount
            byStatus = await session.responseClasses
        }
        try await c.execute(
            """
            INSERT INTO nexcomet.sync_runs (ad_account_id, connection_id, job_id, window_start, window_end,
                                            api_calls, api_calls_by_status, duration_ms, outcome, error, finished_at)
            VALUES (\(adAccountID), \(connectionID), \(context.id), \(window?.first.description)::date,
                    \(window?.last.description)::date, \(calls), \(Self.statusJSON(byStatus))::jsonb,
                    \(elapsed.milliseconds), \(outcome), \(error), now())
            """)
    }
}

extension ErrorPolicy {
    /// `{"2xx": n, ...}` for `sync_runs.api_calls_by_status` (keys are fixed status-class names).
    static func statusJSON(_ counts: [String: Int]) -> String {
        "{" + counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }
}

/// A failure worth retrying with backoff that is not a platform error.
struct RetryableSyncError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
