import Foundation
import HTTP
import Logs
import Postgres
import Privacy
import Queue
import Sync
import Synchronization

/// The HTTP face of NexJobs (`nexjobs serve`): a health check, Prometheus metrics, and signed webhooks that
/// trigger a connection's resync.
///
/// - `GET /healthz`: 200 `ok` when the database answers, else 503. It never takes a connection from `pool`: a
///   dedicated connection of its own answers `SELECT 1`, one check at a time, the result reused for
///   `healthTTL` (1 s), and the answer comes within `healthTimeout` (2 s) whatever the database does (a check
///   still running then is reported 503 and goes on in the background). A broken dedicated connection (e.g.
///   after a PostgreSQL restart) is replaced and the check retried once.
/// - `GET /metrics`: Prometheus text format behind `Authorization: Bearer $NEXJOBS_METRICS_TOKEN` (see Metrics.swift);
///   503 when no token is configured, 401 without the right one.
/// - `POST /webhooks/resync`: body `{"connection_id": N}` (number or string). Signed like Stripe's and GitHub's
///   webhooks: header `X-Nexjobs-Timestamp` (Unix seconds) and `X-Nexjobs-Signature: sha256=<hex>`, the hex
///   HMAC-SHA256 under the shared secret of `<timestamp>.<raw body>`; a timestamp more than `maxSkew` (5 min)
///   away from now is refused, so a captured request cannot be replayed later; within those minutes it can (no
///   replay store here, see `resync`), and so can the body of a signed `/webhooks/reauthorized` request sent to
///   this path (the signature does not cover the path): either only enqueues that connection's sync, at most one
///   pending. An accepted request enqueues
///   `sync_connection` with the scheduler's unique key `sync_connection:<id>` (a sync already pending or running
///   is reported as a duplicate, not doubled) and answers 202 `{"job_id": ..., "duplicate": ...}`.
///   Errors: 503 webhooks disabled (no secret configured), 401 bad or missing signature or timestamp, 400 bad
///   body, 404 unknown connection, 409 connection not active or its organization restricted or deleted, 409 with
///   `Retry-After` when the connection row stays locked by another transaction beyond the pool's `lock_timeout`
///   (SQLSTATE 55P03), 503 with `Retry-After` on a statement timeout (57014), no free pool connection in time
///   or the database unreachable. Nothing is enqueued on any error. The secret and signatures are never logged.
/// - `POST /webhooks/reauthorized`: new tokens for a connection, sealed; see ReauthorizeWebhook.swift.
public struct WebService: Sendable {
    public var pool: PGPool
    /// Metrics are computed at most once per `metricsTTL` (default 5 s) however often they are scraped.
    public var metricsTTL: Duration = .seconds(5)
    let metricsCache = MetricsCache()
    let healthProbe: HealthProbe
    /// How long a health result is reused (default 1 s).
    public var healthTTL: Duration = .seconds(1)
    /// Longest time `/healthz` takes to answer (default 2 s).
    public var healthTimeout: Duration = .seconds(2)
    /// The bearer token `/metrics` requires (UTF-8 bytes of `NEXJOBS_METRICS_TOKEN`); nil disables `/metrics`.
    public var metricsToken: [UInt8]?
    /// The shared webhook secret (UTF-8 bytes of `NEXJOBS_WEBHOOK_SECRET`); nil disables webhooks.
    public var webhookSecret: [UInt8]?
    /// Largest accepted distance between a webhook's timestamp and now. Default 5 minutes.
    public var maxSkew: TimeInterval = 300
    public var now: @Sendable () -> Date = { Date() }
    public var logger: Logger
    /// Opens the sealed tokens of `POST /webhooks/reauthorized` and stores them (ReauthorizeWebhook.swift); nil
    /// (no `NEXJOBS_TOKEN_KEYS`) refuses that webhook with 503.
    public var tokenStore: ConnectionStore?
    /// Operator console logins (`NEXJOBS_CONSOLE_TOKENS`); nil: the console answers 503.
    public var consoleAccess: ConsoleAccess?
    /// The queue of a platform's `sync_connection` jobs (keyed `tiktok` / `snapchat`,
    /// `NEXJOBS_SYNC_QUEUE_TIKTOK|SNAPCHAT`); a platform not named uses the default queue.
    public var platformQueues: [String: String] = [:]

    public init(pool: PGPool, webhookSecret: [UInt8]?, logger: Logger) {
        self.pool = pool
        self.webhookSecret = webhookSecret
        self.logger = logger
        self.healthProbe = HealthProbe(config: pool.config, logger: logger)
    }

    /// Closes the health check's dedicated connection.
    public func close() async { await healthProbe.close() }

    /// The secret from `NEXJOBS_WEBHOOK_SECRET`: nil when unset; at least 32 characters when set.
    public static func secret(from environment: [String: String]) throws -> [UInt8]? {
        guard let text = environment["NEXJOBS_WEBHOOK_SECRET"], !text.isEmpty else { return nil }
        guard text.utf8.count >= 32 else {
            throw WebServiceError("NEXJOBS_WEBHOOK_SECRET must be at least 32 characters")
        }
        return Array(text.utf8)
    }

    /// The signature header value for `body` sent at `timestamp` (what a sender computes).
    public static func signature(secret: [UInt8], timestamp: String, body: [UInt8]) -> String {
        "sha256=" + hexEncode(hmacSHA256(key: secret, message: Array((timestamp + ".").utf8) + body))
    }

    public func router() -> Router {
        let r = Router()
        r.add("GET", "/healthz") { _ in await self.health() }
        r.add("GET", "/metrics") { request in await self.metrics(request) }
        r.add("POST", "/webhooks/resync") { request in await self.resync(request) }
        r.add("POST", "/webhooks/reauthorized") { request in await self.reauthorized(request) }
        Console(pool: pool, access: consoleAccess, logger: logger).register(on: r)  // operator console (Console/)
        return r
    }

    func health() async -> HTTPResponse {
        switch await healthProbe.check(ttl: healthTTL, timeout: healthTimeout) {
        case true: return .text("ok\n")
        case false: return .text("database unavailable\n", status: 503)
        case nil: return .text("database check timed out\n", status: 503)
        }
    }

    /// A webhook's refusal: logged with the reason (never the body, secret or signature), answered as JSON.
    func webhookRefusal(_ status: Int, _ message: String, _ request: HTTPRequest) -> HTTPResponse {
        logger.info(
            "webhook refused", ("status", String(status)), ("reason", message), ("remote", request.remoteAddress))
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data("{}".utf8)
        return .json(String(decoding: body, as: UTF8.self), status: status)
    }

    func resync(_ request: HTTPRequest) async -> HTTPResponse {
        func refuse(_ status: Int, _ message: String) -> HTTPResponse { webhookRefusal(status, message, request) }
        if let (status, message) = signatureRefusal(request) { return refuse(status, message) }
        // No replay store (unlike /webhooks/reauthorized): a resync is idempotent. The unique key keeps one pending
        // sync per connection, so a replayed request within the timestamp window at most enqueues the sync the
        // original asked for (or reports the pending one as a duplicate), and a sync changes no settings; recording
        // every delivery would cost a write per request and protect nothing.

        struct Body: Decodable { var connection_id: RowID }
        let id = (try? JSONDecoder().decode(Body.self, from: Data(request.body)))?.connection_id.value
        guard let id, id > 0 else {
            return refuse(
                400, "body must be a JSON object with a positive integer connection_id, like {\"connection_id\": 42}")
        }
        enum Outcome: Sendable {
            case refused(Int, String)
            case enqueued(EnqueueResult)
        }
        do {
            // Checked and enqueued in one transaction, the rows share-locked: a disconnect, restriction or
            // deletion either committed before (refused) or waits until the job exists (and the job then finds
            // the connection not runnable).
            let outcome: Outcome = try await pool.withTransaction { c in
                guard
                    let row = try await c.query(
                        """
                        SELECT c.status, o.processing_restricted, o.deleted_at IS NOT NULL, c.platform
                          FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
                         WHERE c.id = \(id) FOR SHARE OF c, o
                        """
                    ).first
                else { return .refused(404, "connection \(id) does not exist") }
                let status: String = try row.decode(0)
                guard status == "active" else { return .refused(409, "connection \(id) is \(status), not active") }
                let restricted: Bool = try row.decode(1)
                let deleted: Bool = try row.decode(2)
                guard !restricted, !deleted else {
                    return .refused(
                        409, "connection \(id) belongs to a \(deleted ? "deleted" : "restricted") organization")
                }
                let platform: String = try row.decode(3)
                return .enqueued(
                    try await JobClient(pool: pool).enqueue(
                        SyncConnectionArgs(connectionID: RowID(id)),
                        options: JobOptions(queue: platformQueues[platform] ?? "default"), on: c))
            }
            let job: EnqueueResult
            switch outcome {
            case .refused(let status, let message): return refuse(status, message)
            case .enqueued(let result): job = result
            }
            logger.info(
                "webhook resync", ("connection_id", String(id)), ("job.id", String(job.id)),
                ("duplicate", String(job.duplicate)))
            return .json(#"{"job_id":\#(job.id),"duplicate":\#(job.duplicate)}"#, status: 202)
        } catch let e as PGError where e.sqlState == "55P03" {
            var r = refuse(409, "connection \(id) is locked by another operation; retry later")
            r.headers["Retry-After"] = "5"
            return r
        } catch {
            let busy = (error as? PGError).map { $0.sqlState == "57014" || $0.code == .poolTimeout } ?? false
            logger.warning("webhook failed", ("error", "\(error)"))
            var r = HTTPResponse.json(
                busy ? #"{"error":"database busy"}"# : #"{"error":"database unavailable"}"#, status: 503)
            r.headers["Retry-After"] = "5"
            return r
        }
    }
}

/// A configuration error of the web service.
public struct WebServiceError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `/healthz`'s own database check: a dedicated connection (never one from the pool, so a busy pool cannot starve
/// it), one check at a time, the result reused for a short while, every answer bounded in time.
actor HealthProbe {
    private let config: PGConfig
    private let logger: Logger
    private var connection: PGConnection?
    private var last: (at: ContinuousClock.Instant, ok: Bool)?
    private var inFlight: Task<Bool, Never>?
    private var closed = false

    init(config: PGConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// true: the database answered; false: it did not; nil: no answer within `timeout` (the check goes on).
    func check(ttl: Duration, timeout: Duration) async -> Bool? {
        if let last, ContinuousClock.now - last.at < ttl { return last.ok }
        let task: Task<Bool, Never>
        if let inFlight {
            task = inFlight
        } else {
            task = Task { await self.probe() }
            inFlight = task
        }
        return await firstOf(task, orNilAfter: timeout)
    }

    private func probe() async -> Bool {
        defer { inFlight = nil }
        var ok = false
        for attempt in 0..<2 {
            do {
                guard !closed else { break }
                let c: PGConnection
                if let existing = connection, await existing.isUsableWhenIdle() {
                    c = existing
                } else {
                    if let stale = connection { Task { await stale.close() } }
                    connection = nil
                    c = try await PGConnection.connect(config, applicationName: "nexjobs-health")
                    try await c.query("SELECT set_config('statement_timeout', '2000', false)")
                    connection = c
                }
                _ = try await c.query("SELECT 1")
                ok = true
                break
            } catch let e as PGError where e.isConnectionLoss && attempt == 0 {
                connection = nil
            } catch {
                logger.warning("health check failed", ("error", "\(error)"))
                break
            }
        }
        last = (.now, ok)
        return ok
    }

    func close() async {
        closed = true
        if let c = connection { await c.close() }
        connection = nil
    }
}

/// The task's value, or nil when `timeout` passes first (the task keeps running).
func firstOf<T: Sendable>(_ task: Task<T, Never>, orNilAfter timeout: Duration) async -> T? {
    let once = Once()
    return await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
        Task {
            let v = await task.value
            if once.claim() { c.resume(returning: v) }
        }
        Task {
            try? await Task.sleep(for: timeout)
            if once.claim() { c.resume(returning: nil) }
        }
    }
}

/// A flag claimed once, from any thread.
private final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func claim() -> Bool {
        done.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
