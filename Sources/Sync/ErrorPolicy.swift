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
///   tokens are no longer the ones this job used (another job's refresh, a reauthorization: the token generation
///   moved on, sql/067) is not marked, neither before the transaction nor in it (the UPDATE is conditional on the
///   generation, so a reauthorization committed after the first check still wins): the failure is retried with
///   the stored tokens.
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
    /// The token generation the job's requests use (the one it loaded, advanced by its own refreshes).
    var generation: TokenGeneration
    var session: TokenSession?
    var adAccountID: Int64? = nil
    var window: DateWindow? = nil
    var started = ContinuousClock.now

    var defaultSnooze: Duration = .seconds(30)

    init(
        context: JobContext, store: ConnectionStore, connectionID: Int64, organizationID: Int64,
        platform: AdPlatform, tokenGeneration: Int64, session: TokenSession?, adAccountID: Int64? = nil,
        window: DateWindow? = nil, defaultSnooze: Duration = .seconds(30)
    ) {
        self.context = context
        self.store = store
        self.connectionID = connectionID
        self.organizationID = organizationID
        self.platform = platform
        self.generation = TokenGeneration(tokenGeneration)
        self.session = session
        self.adAccountID = adAccountID
        self.window = window
        self.defaultSnooze = defaultSnooze
    }

    func fail(_ error: PlatformError) async throws -> Never {
        switch error.kind {
        case .rateLimited(let retryAfter):
            await recordRun(outcome: "rate_limited", error: error.description)
            throw JobSnooze(retryAfter ?? defaultSnooze, reason: error.description)
        case .transient, .malformedResponse, .accessTokenExpired:
            await recordRun(outcome: "failed", error: error.description)
            throw error
        case .reauthorizationRequired:
            if try await tokensReplacedElsewhere() { throw Self.replaced }
            try await markNeedsReauth(reason: error.description)
            throw JobDiscard("re-authorization required: \(error)")
        case .permanent:
            await recordRun(outcome: "failed", error: error.description)
            throw JobDiscard("\(error.kindName): \(error)")
        }
    }

    static let replaced = RetryableSyncError(
        message: "the connection's tokens were replaced meanwhile (refresh or reauthorization); retrying with them")

    private func tokensReplacedElsewhere() async throws -> Bool {
        let rows = try await context.pool.query(
            "SELECT status, token_generation FROM nexcomet.ad_connections WHERE id = \(connectionID)")
        guard let row = rows.first, try row.decode(0) as String == "active" else { return false }
        return try row.decode(1) as Int64 != (await generation.value)
    }

    /// Marks the connection `needs_reauth`, writes the one open notification and the failed run, in one transaction.
    ///
    /// Only for the tokens the failing requests used: when the connection is still active but its token generation
    /// moved on (a reauthorization or another job's refresh committed since this job read it), nothing is written
    /// and ``RetryableSyncError`` is thrown, so the new tokens are neither flagged nor wiped (sql/030).
    func markNeedsReauth(reason: String) async throws {
        let generation = await generation.value
        try await context.pool.withTransaction { c in
            // The organization before the connection (the erasure's lock order): the notification's foreign key
            // would otherwise lock the organization after the connection and could deadlock with an erasure.
            try await c.execute(
                "SELECT 1 FROM nexcomet.organizations WHERE id = \(organizationID) FOR KEY SHARE")
            let marked = try await c.query(
                """
                UPDATE nexcomet.ad_connections SET status = 'needs_reauth', last_error = \(reason), updated_at = now()
                 WHERE id = \(connectionID) AND status = 'active' AND token_generation = \(generation)
                RETURNING 1
                """)
            if marked.isEmpty {
                let status =
                    try await c.query(
                        "SELECT status FROM nexcomet.ad_connections WHERE id = \(connectionID)"
                    ).first?.decode(0) as String?
                if status == "active" { throw Self.replaced }
            }
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
