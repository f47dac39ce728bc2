import Foundation
import PGTestSupport
import Postgres
import Queue
import XCTest

/// Typed job args: the kind, default options and unique key come from the type, `check()` runs before the insert,
/// and a handler with typed args takes its kind from them.
final class TypedArgsTests: XCTestCase {
    struct Digest: JobArgs {
        static let kind = "send_digest"
        static let defaultOptions = JobOptions(queue: "digests", priority: 3, maxAttempts: 5)
        var organizationID: Int64
        var uniqueKey: String? { "send_digest:\(organizationID)" }
        func check() throws {
            guard organizationID >= 1 else { throw InputError("organization_id must be in 1...\(Int64.max)") }
        }
    }

    struct DigestHandler: JobHandler {
        func run(_ args: Digest, context: JobContext) async throws {}
    }

    func testNewJobFromTypedArgsCarriesKindOptionsAndKey() throws {
        let job = try NewJob(Digest(organizationID: 42))
        XCTAssertEqual(job.kind, "send_digest")
        XCTAssertEqual(job.args, #"{"organizationID":42}"#)
        XCTAssertEqual(job.queue, "digests")
        XCTAssertEqual(job.priority, 3)
        XCTAssertEqual(job.maxAttempts, 5)
        XCTAssertEqual(job.uniqueKey, "send_digest:42")
        let overridden = try NewJob(Digest(organizationID: 42), options: JobOptions(queue: "other", uniqueKey: "k"))
        XCTAssertEqual(overridden.queue, "other")
        XCTAssertEqual(overridden.uniqueKey, "k")
        XCTAssertThrowsError(try NewJob(Digest(organizationID: 0))) { error in
            XCTAssertEqual((error as? InputError)?.message, "organization_id must be in 1...\(Int64.max)")
        }
        XCTAssertEqual(DigestHandler.kind, "send_digest")
    }

    func testTypedEnqueueInsertsOnceAndRefusesOutOfRangeArgs() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let client = JobClient(pool: db.pool)
        let first = try await client.enqueue(Digest(organizationID: 7))
        let second = try await client.enqueue(Digest(organizationID: 7))
        XCTAssertFalse(first.duplicate)
        XCTAssertTrue(second.duplicate)
        XCTAssertEqual(first.id, second.id)
        let row = try await db.pool.query(
            "SELECT kind, queue, priority, max_attempts, args->>'organizationID' FROM nexjobs.jobs WHERE id = \(first.id)"
        ).first!
        XCTAssertEqual(try row.decode(0, as: String.self), "send_digest")
        XCTAssertEqual(try row.decode(1, as: String.self), "digests")
        XCTAssertEqual(try row.decode(2, as: Int.self), 3)
        XCTAssertEqual(try row.decode(3, as: Int.self), 5)
        XCTAssertEqual(try row.decode(4, as: String.self), "7")
        do {
            try await client.enqueue(Digest(organizationID: -1))
            XCTFail("expected a refusal")
        } catch is InputError {}
        let ids = try await client.enqueueMany([Digest(organizationID: 8), Digest(organizationID: 9)])
        XCTAssertEqual(ids.count, 2)
        let count: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs").first!.decode(0)
        XCTAssertEqual(count, 3)
    }
}
