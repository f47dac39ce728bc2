import Foundation
import HTTP
import Logs
import NexcometJobs
import PGTestSupport
import Postgres
import Queue
import XCTest

@testable import Runtime

/// `WebService` through its router with a real database: health, metrics, and signed resync webhooks.
final class WebServiceTests: XCTestCase {
    var db: TestDatabase!
    let secret = Array("0123456789abcdef0123456789abcdef-test".utf8)

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    static let metricsToken = "metrics-test-token-0123456789abcdef"

    func service(secret: [UInt8]?) -> WebService {
        var s = WebService(pool: db.pool, webhookSecret: secret, logger: Logger(label: "test", minimum: .error))
        s.metricsToken = Array(Self.metricsToken.utf8)
        return s
    }

    /// An authorized `GET /metrics`.
    static func metricsRequest() -> HTTPRequest {
        HTTPRequest(path: "/metrics", headers: ["Authorization": "Bearer \(metricsToken)"])
    }

    func connection(status: String = "active", restricted: Bool = false, deleted: Bool = false) async throws -> Int64 {
        try await db.pool.query(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name, processing_restricted, deleted_at)
                       VALUES ('o', \(restricted), CASE WHEN \(deleted) THEN now() END) RETURNING id)
            INSERT INTO nexcomet.ad_connections (organization_id, platform, status)
            SELECT id, 'tiktok', \(status) FROM o RETURNING id
            """
        ).first!.decode(0)
    }

    func webhook(_ body: String, timestamp: Int? = nil, signature: String? = nil) -> HTTPRequest {
        let stamp = String(timestamp ?? Int(Date().timeIntervalSince1970))
        var headers = HTTPHeaders()
        headers.add("X-Nexjobs-Timestamp", stamp)
        headers.add(
            "X-Nexjobs-Signature",
            signature ?? WebService.signature(secret: secret, timestamp: stamp, body: Array(body.utf8)))
        return HTTPRequest(method: "POST", path: "/webhooks/resync", headers: headers, body: Array(body.utf8))
    }

    func jobs() async throws -> Int {
        try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs").first!.decode(0)
    }

    func testHealthAndMetrics() async throws {
        let router = service(secret: nil).router()
        let health = await router.handle(HTTPRequest(path: "/healthz"))
        XCTAssertEqual(health.status, 200)
        _ = try await connection()
        try await JobClient(pool: db.pool).enqueue(NewJob(kind: "noop", queue: "q1"))
        let metrics = await router.handle(Self.metricsRequest())
        XCTAssertEqual(metrics.status, 200)
        let text = String(decoding: metrics.body, as: UTF8.self)
        XCTAssertTrue(text.contains(#"nexjobs_jobs{queue="q1",state="available"} 1"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_oldest_due_seconds{queue="q1"}"#), text)
        XCTAssertTrue(text.contains("nexjobs_workers 0"), text)
        XCTAssertTrue(text.contains(#"nexjobs_ad_connections{platform="tiktok",status="active"} 1"#), text)
    }

    func testASignedWebhookEnqueuesOneResyncAndARepeatIsADuplicate() async throws {
        let id = try await connection()
        let router = service(secret: secret).router()
        let first = await router.handle(webhook(#"{"connection_id": \#(id)}"#))
        XCTAssertEqual(first.status, 202, String(decoding: first.body, as: UTF8.self))
        let job = try await db.pool.query(
            "SELECT kind, args->>'connection_id', unique_key FROM nexjobs.jobs"
        ).first!
        XCTAssertEqual(try job.decode(0, as: String.self), "sync_connection")
        XCTAssertEqual(try job.decode(1, as: String.self), String(id))
        XCTAssertEqual(try job.decode(2, as: String.self), "sync_connection:\(id)")
        let again = await router.handle(webhook(#"{"connection_id": "\#(id)"}"#))
        XCTAssertEqual(again.status, 202)
        XCTAssertTrue(String(decoding: again.body, as: UTF8.self).contains(#""duplicate":true"#))
        let count = try await jobs()
        XCTAssertEqual(count, 1, "a resync already pending is not doubled")
    }

    /// With `platformQueues` (NEXJOBS_SYNC_QUEUE_*), a resync goes to its connection's platform queue.
    func testAResyncGoesToItsPlatformsQueue() async throws {
        let id = try await connection()
        var s = service(secret: secret)
        s.platformQueues = ["tiktok": "sync.tiktok"]
        let response = await s.router().handle(webhook(#"{"connection_id": \#(id)}"#))
        XCTAssertEqual(response.status, 202, String(decoding: response.body, as: UTF8.self))
        let queue: String = try await db.pool.query("SELECT queue FROM nexjobs.jobs").first!.decode(0)
        XCTAssertEqual(queue, "sync.tiktok")
    }

    func testBadWebhooksAreRefusedAndEnqueueNothing() async throws {
        let id = try await connection()
        let paused = try await connection(status: "needs_reauth")
        let gone = try await connection(status: "disconnected")
        let restricted = try await connection(restricted: true)
        let deleted = try await connection(deleted: true)
        let router = service(secret: secret).router()
        let body = #"{"connection_id": \#(id)}"#
        let now = Int(Date().timeIntervalSince1970)
        let good = webhook(body).headers["X-Nexjobs-Signature"]!
        var signedStamp = webhook(body)
        signedStamp.headers = HTTPHeaders([("X-Nexjobs-Timestamp", "+\(now)"), ("X-Nexjobs-Signature", good)])
        let cases: [(HTTPRequest, Int, String)] = [
            (webhook(body, signature: "sha256=" + String(repeating: "0", count: 64)), 401, "wrong signature"),
            (webhook(body, signature: good.uppercased()), 401, "uppercase hex"),
            (webhook(body, signature: String(good.dropLast())), 401, "truncated signature"),
            (webhook(body, signature: "md5=abc"), 401, "wrong scheme"),
            (webhook(body, timestamp: now - 3600), 401, "an hour-old timestamp (replay)"),
            (webhook(body, timestamp: now + 3600), 401, "a timestamp an hour ahead"),
            (signedStamp, 401, "a signed timestamp with a sign"),
            (webhook(#"{"connection_id": 1.5}"#), 400, "fractional id"),
            (webhook(#"{"connection": 1}"#), 400, "missing id"),
            (webhook("not json"), 400, "not JSON"),
            (webhook(#"{"connection_id": 999999}"#), 404, "unknown connection"),
            (webhook(#"{"connection_id": \#(paused)}"#), 409, "connection needing re-authorization"),
            (webhook(#"{"connection_id": \#(gone)}"#), 409, "disconnected connection"),
            (webhook(#"{"connection_id": \#(restricted)}"#), 409, "restricted organization"),
            (webhook(#"{"connection_id": \#(deleted)}"#), 409, "deleted organization"),
            (HTTPRequest(method: "POST", path: "/webhooks/resync", body: Array(body.utf8)), 401, "unsigned"),
        ]
        for (request, status, what) in cases {
            let response = await router.handle(request)
            XCTAssertEqual(response.status, status, what + ": " + String(decoding: response.body, as: UTF8.self))
        }
        // A body changed after signing fails: the signature covers timestamp and body.
        var tampered = webhook(body)
        tampered.body = Array(#"{"connection_id": \#(paused)}"#.utf8)
        let response = await router.handle(tampered)
        XCTAssertEqual(response.status, 401)
        let disabled = await service(secret: nil).router().handle(webhook(body))
        XCTAssertEqual(disabled.status, 503, "no secret configured: webhooks are off")
        let count = try await jobs()
        XCTAssertEqual(count, 0)
    }

    /// The window is 300 s either way, measured with the service's clock.
    func testTheReplayWindowEdges() async throws {
        let id = try await connection()
        var svc = service(secret: secret)
        let fixed = Date(timeIntervalSince1970: 1_900_000_000)
        svc.now = { fixed }
        let router = svc.router()
        let body = #"{"connection_id": \#(id)}"#
        for (offset, status) in [(-301, 401), (301, 401), (-300, 202), (300, 202)] {
            let response = await router.handle(webhook(body, timestamp: 1_900_000_000 + offset))
            XCTAssertEqual(response.status, status, "offset \(offset) s")
        }
    }

    func testMetricsAreComputedAtMostOncePerInterval() async throws {
        let router = service(secret: nil).router()
        let first = await router.handle(Self.metricsRequest())
        try await JobClient(pool: db.pool).enqueue(NewJob(kind: "noop", queue: "later"))
        let second = await router.handle(Self.metricsRequest())
        XCTAssertEqual(first.body, second.body, "served from the 5 s cache")
        var fresh = service(secret: nil)
        fresh.metricsTTL = .zero
        let third = await fresh.router().handle(Self.metricsRequest())
        XCTAssertTrue(String(decoding: third.body, as: UTF8.self).contains(#"queue="later""#))
    }

    func testSecretMustBeLongEnough() throws {
        XCTAssertNil(try WebService.secret(from: [:]))
        XCTAssertThrowsError(try WebService.secret(from: ["NEXJOBS_WEBHOOK_SECRET": "short"]))
        XCTAssertEqual(
            try WebService.secret(from: ["NEXJOBS_WEBHOOK_SECRET": String(repeating: "k", count: 32)])?.count, 32)
    }
}
