import Foundation
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Queue
import Synchronization
import XCTest

@testable import Privacy
@testable import Runtime
@testable import Sync

/// Issue 12: the privacy request lifecycle (due dates, refusals and exhausted jobs end `failed`, operator retry,
/// objection and lifting, audit of every state change, deadline gauges) and the token obligations (deleted
/// organizations' tokens wiped within one tick, dead grants keep no ciphertext, no platform call for a deleted,
/// restricted or inactive connection).
final class PrivacyLifecycleTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func int(_ sql: PGQuery) async throws -> Int { try await db.pool.query(sql).first!.decode(0) }

    var tick: DueWorkContext {
        DueWorkContext(pool: db.pool, logger: Logger(label: "t", minimum: .error), holder: "t", isLeader: { true })
    }

    /// An organization with one user and one active connection holding (fake) sealed tokens, due to sync.
    func tenant(_ name: String) async throws -> (org: Int64, user: Int64, connection: Int64) {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name) VALUES (\(name)) RETURNING id"
        ).first!.decode(0)
        let user: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.users (organization_id, email) VALUES (\(org), \(name + "@example.com")) RETURNING id
            """
        ).first!.decode(0)
        let connection: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, access_token_ciphertext,
                                                 refresh_token_ciphertext, token_key_id, next_sync_at)
            VALUES (\(org), 'tiktok', '\\x01deadbeef'::bytea, '\\x01cafebabe'::bytea, 'k1', now() - interval '1 minute')
            RETURNING id
            """
        ).first!.decode(0)
        return (org, user, connection)
    }

    func request(_ org: Int64, user: Int64? = nil, kind: String, requestedDaysAgo: Int = 0) async throws -> Int64 {
        try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind, requested_at)
            VALUES (\(org), \(user), \(kind), now() - \(requestedDaysAgo) * interval '1 day') RETURNING id
            """
        ).first!.decode(0)
    }

    func status(_ id: Int64) async throws -> (String, String?) {
        let r = try await db.pool.query("SELECT status, error FROM nexcomet.privacy_requests WHERE id = \(id)").first!
        return (try r.decode(0), try r.decode(1))
    }

    /// The audited status transitions of a request, as "from>to".
    func transitions(_ id: Int64) async throws -> [String] {
        try await db.pool.query(
            """
            SELECT coalesce(details->>'from', '') || '>' || (details->>'to') FROM nexcomet.privacy_audit
             WHERE action = 'request_status' AND request_id = \(id) ORDER BY id
            """
        ).map { try $0.decode(0) }
    }

    func jobID(forRequest id: Int64) async throws -> Int64 {
        try await db.pool.query(
            "SELECT id FROM nexjobs.jobs WHERE unique_key = \("privacy_request:\(id)") ORDER BY id DESC LIMIT 1"
        ).first!.decode(0)
    }

    func testDueAtIsRequestedAtPlus30DaysSetByTheDatabase() async throws {
        let (org, _, _) = try await tenant("a")
        let id: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, kind, requested_at, due_at)
            VALUES (\(org), 'export', '2026-03-01T10:00:00Z', '2099-01-01T00:00:00Z') RETURNING id
            """
        ).first!.decode(0)
        func due() async throws -> Bool {
            try await db.pool.query(
                "SELECT due_at = requested_at + interval '30 days' FROM nexcomet.privacy_requests WHERE id = \(id)"
            ).first!.decode(0)
        }
        let setOnInsert = try await due()
        XCTAssertTrue(setOnInsert, "a writer's due_at is overridden")
        try await db.pool.execute("UPDATE nexcomet.privacy_requests SET due_at = now() WHERE id = \(id)")
        let setOnUpdate = try await due()
        XCTAssertTrue(setOnUpdate, "due_at cannot be moved")
    }

    func testARefusedRequestEndsFailedWithItsReasonAndCanBeRetried() async throws {
        let (a, _, _) = try await tenant("a")
        let (_, bUser, _) = try await tenant("b")
        let id = try await request(a, user: bUser, kind: "export")
        _ = try await PrivacyRequestSource().run(tick)
        let (running, _) = try await status(id)
        XCTAssertEqual(running, "running")
        let job = try await jobID(forRequest: id)
        do {
            try await runAsFakeWorker(GDPRExportHandler(), jobID: job, pool: db.pool)
            XCTFail("the export of another organization's user must be refused")
        } catch is JobDiscard {}
        // What the worker runtime does with a discarded job.
        try await db.pool.execute("UPDATE nexjobs.jobs SET state = 'failed', finished_at = now() WHERE id = \(job)")
        let (failed, error) = try await status(id)
        XCTAssertEqual(failed, "failed")
        XCTAssertTrue(error?.contains("does not belong to organization \(a)") == true, "\(error ?? "nil")")
        // An erase of a user who no longer exists is refused the same way.
        let (c, cUser, _) = try await tenant("c")
        let gone = try await request(c, user: cUser, kind: "erase")
        try await db.pool.execute("DELETE FROM nexcomet.users WHERE id = \(cUser)")
        _ = try await PrivacyRequestSource().run(tick)
        do {
            try await runAsFakeWorker(GDPREraseHandler(), jobID: try await jobID(forRequest: gone), pool: db.pool)
            XCTFail("the erase of a user who no longer exists must be refused")
        } catch is JobDiscard {}
        let (goneStatus, goneError) = try await status(gone)
        XCTAssertEqual(goneStatus, "failed")
        XCTAssertTrue(goneError?.contains("no longer exists") == true, "\(goneError ?? "nil")")
        // The operator retries: pending again, then running with a new job.
        let before = try await PrivacyRequests.retry(id, pool: db.pool)
        XCTAssertEqual(before, "failed")
        let again = try await PrivacyRequests.retry(id, pool: db.pool)
        XCTAssertEqual(again, "pending", "only a failed request moves")
        _ = try await PrivacyRequestSource().run(tick)
        let (rerun, _) = try await status(id)
        XCTAssertEqual(rerun, "running")
        let newJob = try await jobID(forRequest: id)
        XCTAssertNotEqual(newJob, job, "a new job")
        let history = try await transitions(id)
        XCTAssertEqual(history, [">pending", "pending>running", "running>failed", "failed>pending", "pending>running"])
    }

    func testARequestWhoseJobExhaustedItsAttemptsEndsFailed() async throws {
        let (org, _, _) = try await tenant("a")
        let id = try await request(org, kind: "export")
        _ = try await PrivacyRequestSource().run(tick)
        // The worker died on the last attempt: the job is failed, the request was never told.
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'failed', attempt = 5, finished_at = now(),
                   errors = '[{"attempt": 5, "error": "statement timeout"}]'
             WHERE id = \(try await jobID(forRequest: id))
            """)
        _ = try await PrivacyRequestSource().run(tick)
        let (s, error) = try await status(id)
        XCTAssertEqual(s, "failed")
        XCTAssertTrue(
            error?.contains("statement timeout") == true && error?.contains("5 attempt") == true, "\(error ?? "")")
        // And in the handler: a failure on the last attempt ends the request at once.
        let other = try await request(org, kind: "export")
        let context = JobContext(
            id: 0, kind: "gdpr_export", queue: "default", attempt: 5, maxAttempts: 5, workerID: "w", pool: db.pool,
            logger: Logger(label: "t", minimum: .error))
        struct Boom: Error {}
        do {
            try await PrivacyRequests.failOnRefusal(other, context: context) { throw Boom() }
            XCTFail("rethrows")
        } catch is Boom {}
        let (s2, e2) = try await status(other)
        XCTAssertEqual(s2, "failed")
        XCTAssertTrue(e2?.contains("exhausted its 5 attempts") == true, "\(e2 ?? "")")
    }

    func testObjectionStopsProcessingUntilLiftedAndRefusesForeignUsers() async throws {
        let (org, user, _) = try await tenant("a")
        let (_, foreign, _) = try await tenant("b")
        func enqueuedSyncs() async throws -> Int {
            try await int("SELECT enqueued FROM nexcomet.enqueue_due_syncs()")
        }
        let object = try await request(org, user: user, kind: "object")
        let refused = try await request(org, user: foreign, kind: "restrict")
        _ = try await PrivacyRequestSource().run(tick)
        let (objected, _) = try await status(object)
        XCTAssertEqual(objected, "completed")
        let (refusedStatus, refusedError) = try await status(refused)
        XCTAssertEqual(refusedStatus, "failed")
        XCTAssertTrue(refusedError?.contains("does not belong") == true, "\(refusedError ?? "")")
        let by: String? = try await db.pool.query(
            "SELECT processing_restricted_by FROM nexcomet.organizations WHERE id = \(org)"
        ).first!.decode(0)
        XCTAssertEqual(by, "object")
        // b's connection is synced; a's (objecting) is not.
        let first = try await enqueuedSyncs()
        XCTAssertEqual(first, 1)
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now() - interval '1 minute'")
        try await db.pool.execute("DELETE FROM nexjobs.jobs WHERE kind = 'sync_connection'")
        let lift = try await request(org, kind: "lift_restriction")
        _ = try await PrivacyRequestSource().run(tick)
        let (lifted, _) = try await status(lift)
        XCTAssertEqual(lifted, "completed")
        let after = try await enqueuedSyncs()
        XCTAssertEqual(after, 2, "after the lift both connections are due")
        let audited = try await int(
            "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action IN ('object', 'lift_restriction')")
        XCTAssertEqual(audited, 2)
        let history = try await transitions(object)
        XCTAssertEqual(history, [">pending", "pending>completed"])
    }

    func testDeadlinesShowOpenOverdueAndOldestAge() async throws {
        let (org, _, _) = try await tenant("a")
        _ = try await request(org, kind: "export", requestedDaysAgo: 21)
        _ = try await request(org, kind: "erase", requestedDaysAgo: 31)
        let done = try await request(org, kind: "export", requestedDaysAgo: 40)
        try await db.pool.execute("UPDATE nexcomet.privacy_requests SET status = 'completed' WHERE id = \(done)")
        let d = try await PrivacyDeadlines.load(on: db.pool)
        XCTAssertEqual(d.overdue, 1)
        XCTAssertEqual(d.openByKind.first { $0.kind == "export" }?.count, 1)
        XCTAssertEqual(d.openByKind.first { $0.kind == "erase" }?.count, 1)
        XCTAssertEqual(d.oldestOpenAgeSeconds, 31 * 86_400, accuracy: 120)
        let text = d.prometheusText
        XCTAssertTrue(text.contains("nexjobs_privacy_requests_open{kind=\"export\"} 1\n"), text)
        XCTAssertTrue(text.contains("nexjobs_privacy_requests_overdue 1\n"), text)
        XCTAssertTrue(text.contains("nexjobs_privacy_request_oldest_open_age_seconds 26784"), text)
        // The alert rule fires at 20 days.
        let rules = try String(
            contentsOf: TestDatabase.repositoryRoot.appendingPathComponent("deploy/prometheus/nexjobs-rules.yml"),
            encoding: .utf8)
        XCTAssertTrue(rules.contains("nexjobs_privacy_request_oldest_open_age_seconds >= 1728000"), rules)
    }

    func testDeletedOrganizationsTokensGoWithinOneTickAndDeadGrantsKeepNoCiphertext() async throws {
        let (deleted, _, deletedConnection) = try await tenant("deleted")
        let (_, _, kept) = try await tenant("kept")
        let (_, _, dead) = try await tenant("dead")
        try await db.pool.execute("UPDATE nexcomet.organizations SET deleted_at = now() WHERE id = \(deleted)")
        _ = try await PrivacyRequestSource().run(tick)
        func ciphertexts(_ id: Int64) async throws -> Int {
            try await int(
                """
                SELECT (access_token_ciphertext IS NOT NULL)::int + (refresh_token_ciphertext IS NOT NULL)::int
                  FROM nexcomet.ad_connections WHERE id = \(id)
                """)
        }
        let wiped = try await ciphertexts(deletedConnection)
        XCTAssertEqual(wiped, 0)
        let untouched = try await ciphertexts(kept)
        XCTAssertEqual(untouched, 2)
        let audit = try await int(
            "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'token_wipe' AND organization_id = \(deleted)"
        )
        XCTAssertEqual(audit, 1)
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET access_token_expires_at = now()")
        let refreshes = try await int("SELECT nexcomet.enqueue_due_refreshes()")
        XCTAssertEqual(refreshes, 2, "only the live organizations' connections are refreshed")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(dead)")
        let deadLeft = try await ciphertexts(dead)
        XCTAssertEqual(deadLeft, 0, "a dead grant's ciphertext is deleted at once")
    }

    /// refresh_token and sync_connection jobs already queued make no platform call once the organization is
    /// deleted or restricted or the connection is not active.
    func testQueuedPlatformJobsMakeNoCallForDeletedRestrictedOrInactive() async throws {
        let ring = try KeyRing(keys: [(id: "k1", key: Array(repeating: 7, count: 32))])
        let store = ConnectionStore(vault: TokenVault(keyRing: ring))
        let calls = Atomic<Int>(0)
        struct NoCallsAllowed: Error {}
        let environment = SyncEnvironment(
            keyRing: .success(ring),
            clients: PlatformClientProvider { _, _ in
                calls.add(1, ordering: .relaxed)
                throw NoCallsAllowed()
            })
        for state in ["deleted", "restricted", "needs_reauth"] {
            let (org, _, connection) = try await tenant(state)
            try await db.pool.withConnection { c in
                try await store.saveTokens(
                    connection,
                    OAuthTokens(
                        accessToken: "access-\(state)", refreshToken: "refresh-\(state)",
                        accessTokenExpiresAt: Date().addingTimeInterval(60)), on: c)
            }
            switch state {
            case "deleted":
                try await db.pool.execute(
                    "UPDATE nexcomet.organizations SET deleted_at = now() WHERE id = \(org)")
            case "restricted":
                try await db.pool.execute(
                    "UPDATE nexcomet.organizations SET processing_restricted = true WHERE id = \(org)")
            default:
                try await db.pool.execute(
                    "UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(connection)")
            }
            try await enqueueAndRun(
                RefreshTokenHandler(environment: environment), args: #"{"connection_id":"\#(connection)"}"#,
                pool: db.pool)
            try await enqueueAndRun(
                SyncConnectionHandler(environment: environment), args: #"{"connection_id":"\#(connection)"}"#,
                pool: db.pool)
        }
        XCTAssertEqual(calls.load(ordering: .relaxed), 0)
        // Control: an active connection of a live organization does reach the client.
        let (_, _, live) = try await tenant("live")
        try await db.pool.withConnection { c in
            try await store.saveTokens(
                live, OAuthTokens(accessToken: "a", refreshToken: "r", accessTokenExpiresAt: Date()), on: c)
        }
        _ = try? await enqueueAndRun(
            RefreshTokenHandler(environment: environment), args: #"{"connection_id":"\#(live)"}"#, pool: db.pool)
        XCTAssertEqual(calls.load(ordering: .relaxed), 1)
    }

    func runRequest(_ id: Int64) async throws {
        _ = try await PrivacyRequestSource().run(tick)
        let job = try await jobID(forRequest: id)
        let kind: String = try await db.pool.query("SELECT kind FROM nexjobs.jobs WHERE id = \(job)").first!.decode(0)
        if kind == "gdpr_erase" {
            try await runAsFakeWorker(GDPREraseHandler(), jobID: job, pool: db.pool)
        } else {
            try await runAsFakeWorker(GDPRExportHandler(), jobID: job, pool: db.pool)
        }
    }

    func testErasingTheLastMemberDeletesTheOrganizationAndItsTokensAndExternalUserID() async throws {
        let (org, user, connection) = try await tenant("solo")
        let (_, _, otherConnection) = try await tenant("other")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET external_user_id = 'ext-user-1'")
        try await runRequest(try await request(org, user: user, kind: "erase"))
        let r = try await db.pool.query(
            """
            SELECT o.deleted_at IS NOT NULL, c.access_token_ciphertext IS NULL AND c.refresh_token_ciphertext IS NULL,
                   c.external_user_id IS NULL, c.status
              FROM nexcomet.organizations o JOIN nexcomet.ad_connections c ON c.organization_id = o.id
             WHERE c.id = \(connection)
            """
        ).first!
        XCTAssertTrue(try r.decode(0) as Bool, "the organization without members is deleted")
        XCTAssertTrue(try r.decode(1) as Bool, "its tokens are gone at once")
        XCTAssertTrue(try r.decode(2) as Bool, "external_user_id is cleared")
        XCTAssertEqual(try r.decode(3) as String, "disconnected")
        let other = try await int(
            """
            SELECT (access_token_ciphertext IS NOT NULL AND external_user_id IS NOT NULL)::int
              FROM nexcomet.ad_connections WHERE id = \(otherConnection)
            """)
        XCTAssertEqual(other, 1, "another organization is untouched")
    }

    func testErasingAnOrganizationKeepsAnotherOrganizationsLogsNamingItsUsers() async throws {
        let (a, aUser, _) = try await tenant("a")
        let (b, bUser, _) = try await tenant("b")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.usage_logs (organization_id, user_id, event)
            VALUES (\(a), \(aUser), 'own'), (NULL, \(aUser), 'no-org'), (\(b), \(aUser), 'visit-of-b'),
                   (\(b), \(bUser), 'b-own')
            """)
        try await runRequest(try await request(a, kind: "erase"))
        let left: [String] = try await db.pool.query(
            "SELECT event || ':' || coalesce(user_id::text, 'unlinked') FROM nexcomet.usage_logs ORDER BY event"
        ).map { try $0.decode(0) }
        XCTAssertEqual(left, ["b-own:\(bUser)", "visit-of-b:unlinked"])
        let history =
            try await db.pool.query(
                "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'request_status' AND details->>'to' = 'completed'"
            ).first!.decode(0) as Int
        XCTAssertEqual(history, 1, "the erased organization's request is audited as completed")
    }
}
