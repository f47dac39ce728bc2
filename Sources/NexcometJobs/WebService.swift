import Foundation
import HTTP
import Logs
import Postgres
import Privacy
import Queue
import Sync

/// The HTTP face of NexJobs (`nexjobs serve`): a health check, Prometheus metrics, and signed webhooks that
/// trigger a connection's resync.
///
/// - `GET /healthz`: 200 `ok` when the database answers, else 503.
/// - `GET /metrics`: Prometheus text format behind `Authorization: Bearer $NEXJOBS_METRICS_TOKEN` (see Metrics.swift);
///   503 when no token is configured, 401 without the right one.
/// - `POST /webhooks/resync`: body `{"connection_id": N}` (number or string). Signed like Stripe's and GitHub's
///   webhooks: header `X-Nexjobs-Timestamp` (Unix seconds) and `X-Nexjobs-Signature: sha256=<hex>`, the hex
///   HMAC-SHA256 under the shared secret of `<timestamp>.<raw body>`; a timestamp more than `maxSkew` (5 min)
///   away from now is refused, so a captured request cannot be replayed later. An accepted request enqueues
///   `sync_connection` with the scheduler's unique key `sync_connection:<id>` (a sync already pending or running
///   is reported as a duplicate, not doubled) and answers 202 `{"job_id": ..., "duplicate": ...}`.
///   Errors: 503 webhooks disabled (no secret configured), 401 bad or missing signature or timestamp, 400 bad
///   body, 404 unknown connection, 409 connection not active or its organization restricted or deleted. Nothing
///   is enqueued on any error. The secret and signatures are never logged.
public struct WebService: Sendable {
    public var pool: PGPool
    /// Metrics are computed at most once per `metricsTTL` (default 5 s) however often they are scraped.
    public var metricsTTL: Duration = .seconds(5)
    let metricsCache = MetricsCache()
    /// The bearer token `/metrics` requires (UTF-8 bytes of `NEXJOBS_METRICS_TOKEN`); nil disables `/metrics`.
    public var metricsToken: [UInt8]?
    /// The shared webhook secret (UTF-8 bytes of `NEXJOBS_WEBHOOK_SECRET`); nil disables webhooks.
    public var webhookSecret: [UInt8]?
    /// Largest accepted distance between a webhook's timestamp and now. Default 5 minutes.
    public var maxSkew: TimeInterval = 300
    public var now: @Sendable () -> Date = { Date() }
    public var logger: Logger

    public init(pool: PGPool, webhookSecret: [UInt8]?, logger: Logger) {
        self.pool = pool
        self.webhookSecret = webhookSecret
        self.logger = logger
    }

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
        return r
    }

    func health() async -> HTTPResponse {
        do {
            _ = try await pool.query("SELECT 1")
            return .text("ok\n")
        } catch {
            logger.warning("health check failed", ("error", "\(error)"))
            return .text("database unavailable\n", status: 503)
        }
    }

    func resync(_ request: HTTPRequest) async -> HTTPResponse {
        func refuse(_ status: Int, _ message: String) -> HTTPResponse {
            logger.info(
                "webhook refused", ("status", String(status)), ("reason", message),
                ("remote", request.remoteAddress))
            let body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data("{}".utf8)
            return .json(String(decoding: body, as: UTF8.self), status: status)
        }
        guard let secret = webhookSecret else { return refuse(503, "webhooks are disabled") }
        guard let stamp = request.headers["X-Nexjobs-Timestamp"], let seconds = Double(stamp),
            stamp.allSatisfy(\.isNumber)
        else { return refuse(401, "missing or malformed X-Nexjobs-Timestamp (Unix seconds)") }
        guard abs(now().timeIntervalSince1970 - seconds) <= maxSkew else {
            return refuse(401, "X-Nexjobs-Timestamp is more than \(Int(maxSkew)) s away from now")
        }
        guard let given = request.headers["X-Nexjobs-Signature"], given.hasPrefix("sha256="),
            constantTimeEquals(
                Array(given.utf8), Array(Self.signature(secret: secret, timestamp: stamp, body: request.body).utf8))
        else { return refuse(401, "missing or wrong X-Nexjobs-Signature") }

        struct Body: Decodable { var connection_id: RowID }
        let id = (try? JSONDecoder().decode(Body.self, from: Data(request.body)))?.connection_id.value
        guard let id, id > 0 else {
            return refuse(400, "body must be a JSON object with a positive integer connection_id, like {\"connection_id\": 42}")
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
                        SELECT c.status, o.processing_restricted, o.deleted_at IS NOT NULL
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
                return .enqueued(
                    try await JobClient(pool: pool).enqueue(
                        NewJob(
                            kind: "sync_connection", args: #"{"connection_id":"\#(id)"}"#,
                            uniqueKey: "sync_connection:\(id)"), on: c))
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
        } catch {
            logger.warning("webhook failed", ("error", "\(error)"))
            return .json(#"{"error":"database unavailable"}"#, status: 503)
        }
    }
}

/// A configuration error of the web service.
public struct WebServiceError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
