import Foundation
import Platforms
import Postgres
import Privacy
import Queue

/// `sync_connection {connection_id}`: refreshes the access token when it is near expiry, discovers the grant's ad
/// accounts, upserts them, and enqueues one `sync_ad_account` per account (unique key `sync_ad_account:<id>`, so an
/// account already queued or syncing is not queued twice), all in the transaction that completes the job.
///
/// A connection that is not `active` (or unknown) is left alone: the job completes (or fails, when unknown).
public struct SyncConnectionHandler: JobHandler {
    public typealias Args = SyncConnectionArgs

    public var timeout: Duration { .seconds(300) }
    let environment: SyncEnvironment

    public init(environment: SyncEnvironment) { self.environment = environment }

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.connectionID.value
        guard let (store, stored) = try await environment.connectionForPlatformCall(id, context: context) else {
            return
        }
        var policy = ErrorPolicy(
            context: context, store: store, connectionID: id, organizationID: stored.organizationID,
            platform: stored.platform, tokenGeneration: stored.tokenGeneration, session: nil,
            defaultSnooze: environment.settings.rateLimitSnooze)
        guard stored.tokens != nil else {
            try await policy.markNeedsReauth(reason: "the connection holds no access token")
            throw JobDiscard("connection \(id) holds no access token; re-authorization required")
        }
        let client = try environment.client(stored.platform, pool: context.pool)
        do {
            let current = try await TokenRefresher.refreshIfNeeded(
                connectionID: id, store: store, client: client, margin: environment.settings.refreshMargin,
                now: environment.settings.now(), pool: context.pool)
            guard let tokens = current.tokens else { return }
            let pool = context.pool
            let generation = TokenGeneration(current.generation)
            let session = await generation.session(
                tokens: tokens, connectionID: id, client: client, store: store, pool: pool,
                now: environment.settings.now)
            policy.generation = generation
            policy.session = session
            let accounts = try await environment.settings.retryingTransient {
                try await client.adAccounts(session: session)
            }
            let queue = environment.settings.syncQueue(stored.platform)
            let enqueued = try await context.pool.withTransaction { c -> Int in
                // A disconnect, restriction or deletion may have committed while the platform was answering: the
                // row locks wait for one in progress, and a connection no longer runnable gets no accounts back.
                // Organization first, then the connection, in separate statements: the erasure's lock order.
                guard try await SyncWriter.lockOrganizationThenConnection(stored.organizationID, id, on: c) else {
                    try await context.complete(on: c)
                    return 0
                }
                let ids = try await upsertAccounts(accounts, connectionID: id, platform: stored.platform, on: c)
                let inserted = try await JobClient(pool: pool).enqueueMany(
                    ids.map { SyncAdAccountHandler.Args(adAccountID: RowID($0)) },
                    options: { _ in JobOptions(queue: queue) }, on: c)
                try await c.execute(
                    """
                    UPDATE nexcomet.ad_connections SET last_synced_at = now(), last_error = NULL, updated_at = now()
                     WHERE id = \(id)
                    """)
                try await context.complete(on: c)
                return inserted.count
            }
            context.logger.info(
                "connection synced", ("connection", "\(id)"), ("accounts", "\(accounts.count)"),
                ("enqueued", "\(enqueued)"))
        } catch let e as PlatformError {
            try await policy.fail(e)
        }
    }

    /// Upserts the discovered accounts (changed rows only) and returns their ids.
    func upsertAccounts(_ accounts: [AdAccount], connectionID: Int64, platform: AdPlatform, on c: PGConnection)
        async throws -> [Int64]
    {
        guard !accounts.isEmpty else { return [] }
        try await c.execute(
            """
            INSERT INTO nexcomet.ad_accounts AS a (connection_id, platform, external_id, name, currency, timezone, status)
            SELECT \(connectionID), \(platform.rawValue), u.id, u.name, u.currency, u.tz, u.status
              FROM unnest(\(accounts.map(\.id))::text[], \(accounts.map(\.name))::text[],
                          \(accounts.map { $0.currency.uppercased() })::text[], \(accounts.map(\.timeZone))::text[],
                          \(accounts.map { $0.status ?? "active" })::text[]) AS u(id, name, currency, tz, status)
            ON CONFLICT (connection_id, external_id) DO UPDATE
               SET name = excluded.name, currency = excluded.currency,
                   timezone = excluded.timezone, status = excluded.status, updated_at = now()
             WHERE (a.name, a.currency, a.timezone, a.status)
                   IS DISTINCT FROM
                   (excluded.name, excluded.currency, excluded.timezone, excluded.status)
            """)
        let rows = try await c.query(
            """
            SELECT id FROM nexcomet.ad_accounts
             WHERE connection_id = \(connectionID) AND external_id = ANY(\(accounts.map(\.id))::text[]) ORDER BY id
            """)
        return try rows.map { try $0.decode(0) }
    }
}

/// Loads a connection, turning "unknown" and "cannot decrypt" into failed jobs with a clear message.
extension SyncEnvironment {
    /// The connection a platform-calling job (`sync_connection`, `refresh_token`) may use now, with its store; nil
    /// when the job must end without a call. Re-checked at execution time, so a job queued before a deletion,
    /// restriction, objection or disconnect makes no call (privacy policy sections 7 and 9).
    func connectionForPlatformCall(_ id: Int64, context: JobContext) async throws
        -> (store: ConnectionStore, stored: StoredConnection)?
    {
        if let refusal = try await platformCallRefusal(connectionID: id, pool: context.pool) {
            context.logger.info("no platform call", ("connection", "\(id)"), ("reason", refusal))
            return nil
        }
        let store = try self.store()
        let stored = try await loadConnection(id, store: store, pool: context.pool)
        guard stored.status == "active" else {
            context.logger.info(
                "connection not active; no platform call", ("connection", "\(id)"),
                ("status", stored.status))
            return nil
        }
        return (store, stored)
    }
}

func loadConnection(_ id: Int64, store: ConnectionStore, pool: PGPool) async throws -> StoredConnection {
    do {
        return try await pool.withConnection { c in try await store.load(id, on: c) }
    } catch let e as ConnectionStoreError {
        throw JobDiscard(e.description)
    }
}

/// Typed args of `sync_connection`: `connection_id`; unique key `sync_connection:<id>` (the scheduler's, so a sync
/// already pending or running is not queued twice by a webhook).
public struct SyncConnectionArgs: JobArgs {
    public static let kind = "sync_connection"
    public var connectionID: RowID
    enum CodingKeys: String, CodingKey { case connectionID = "connection_id" }
    public init(connectionID: RowID) { self.connectionID = connectionID }
    public var uniqueKey: String? { "sync_connection:\(connectionID)" }
    /// `connection_id`: 1...2^63-1.
    public func check() throws { try connectionID.checkPositive("connection_id") }
}
