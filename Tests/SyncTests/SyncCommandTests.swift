import Foundation
import PGTestSupport
import Postgres
import Privacy
import XCTest

@testable import Sync

/// The operator commands, run as the built binary: orgs add, connections add (stdin) | list, keys rotate.
final class SyncCommandTests: XCTestCase {
    func key() -> String { Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString() }

    func testConnectionsAddReadsStdinListNeverShowsTokensAndKeysRotate() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let old = "old:" + key()
        let env = ["NEXJOBS_TOKEN_KEYS": old]
        for command in [["orgs", "--help"], ["connections", "--help"], ["keys", "--help"]] {
            let (status, out) = try await NexjobsProcess.run(command, databaseURL: db.url, environment: env)
            XCTAssertEqual(status, 0, out)
            XCTAssertTrue(out.contains("Usage: nexjobs \(command[0])"), out)
        }
        let (orgStatus, org) = try await runNexjobs(["orgs", "add", "Acme", "--plan", "pro"], db: db, env: env)
        XCTAssertEqual(orgStatus, 0, org)
        let orgID = org.trimmingCharacters(in: .whitespacesAndNewlines)

        let (s1, c1) = try await runNexjobs(
            ["connections", "add", "--org", orgID, "--platform", "tiktok"],
            input: "line-access-token-1\nline-refresh-1\n",
            db: db, env: env)
        XCTAssertEqual(s1, 0, c1)
        let (s2, c2) = try await runNexjobs(
            ["connections", "add", "--org", orgID, "--platform", "snapchat", "--expires-in", "3600"],
            input: #"{"access_token":"json-access-token-2","refresh_token":"json-refresh-2"}"#, db: db, env: env)
        XCTAssertEqual(s2, 0, c2)
        let (s3, c3) = try await runNexjobs(
            ["connections", "add", "--org", orgID, "--platform", "tiktok"],
            input:
                #"{"code":0,"message":"OK","data":{"access_token":"envelope-access-3","refresh_token":"envelope-refresh-3"}}"#,
            db: db, env: env)
        XCTAssertEqual(s3, 0, c3)
        let (s4, c4) = try await runNexjobs(
            ["connections", "add", "--org", orgID, "--platform", "myspace"], input: "x", db: db, env: env)
        XCTAssertEqual(s4, 2, c4)
        let (s5, c5) = try await runNexjobs(
            ["connections", "add", "--org", "999", "--platform", "tiktok"], input: "x", db: db, env: env)
        XCTAssertEqual(s5, 3, c5)

        let ring = try KeyRing(parsing: old)
        let store = ConnectionStore(vault: TokenVault(keyRing: ring))
        let ids = [c1, c2, c3].map { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
        let loaded = try await db.pool.withConnection { c in
            try await ids.asyncMap { try await store.load($0, on: c).tokens! }
        }
        XCTAssertEqual(loaded.map(\.accessToken), ["line-access-token-1", "json-access-token-2", "envelope-access-3"])
        XCTAssertEqual(loaded.map(\.refreshToken), ["line-refresh-1", "json-refresh-2", "envelope-refresh-3"])
        XCTAssertNotNil(loaded[1].accessTokenExpiresAt)

        let (listStatus, list) = try await runNexjobs(["connections", "list"], db: db, env: env)
        XCTAssertEqual(listStatus, 0, list)
        XCTAssertEqual(list.split(separator: "\n").count, 4, list)
        for secret in ["line-access", "json-access", "envelope-access", "refresh"] {
            XCTAssertFalse(list.contains(secret), list)
        }

        // connections reauthorize ID: new tokens on stdin for the existing connection; 3 for unknown, 2 for usage.
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(ids[0])")
        let (ra, oa) = try await runNexjobs(
            ["connections", "reauthorize", String(ids[0])], input: "reauth-access-9\nreauth-refresh-9\n", db: db,
            env: env)
        XCTAssertEqual(ra, 0, oa)
        XCTAssertFalse(oa.contains("reauth-access"), oa)
        let reauthorized = try await db.pool.withConnection { c in try await store.load(ids[0], on: c) }
        XCTAssertEqual(reauthorized.status, "active")
        XCTAssertEqual(reauthorized.tokens?.accessToken, "reauth-access-9")
        XCTAssertEqual(reauthorized.tokens?.refreshToken, "reauth-refresh-9")
        let (rb, ob) = try await runNexjobs(
            ["connections", "reauthorize", "999999"], input: "x\n", db: db, env: env)
        XCTAssertEqual(rb, 3, ob)
        let (rc, oc) = try await runNexjobs(["connections", "reauthorize", "abc"], input: "x\n", db: db, env: env)
        XCTAssertEqual(rc, 2, oc)
        // A restricted organization's connection: exit 3, a clear message, nothing changed.
        try await db.pool.execute(
            """
            UPDATE nexcomet.organizations SET processing_restricted = true, processing_restricted_by = 'restrict'
             WHERE id = \(Int64(orgID)!)
            """)
        let (rd, od) = try await runNexjobs(
            ["connections", "reauthorize", String(ids[1])], input: "restricted-access-9\n", db: db, env: env)
        XCTAssertEqual(rd, 3, od)
        XCTAssertTrue(od.contains("restricted organization") && od.contains("nothing changed"), od)
        let kept = try await db.pool.withConnection { c in try await store.load(ids[1], on: c) }
        XCTAssertEqual(kept.tokens?.accessToken, "json-access-token-2")
        try await db.pool.execute(
            """
            UPDATE nexcomet.organizations SET processing_restricted = false, processing_restricted_by = NULL
             WHERE id = \(Int64(orgID)!)
            """)
        let count: Int = try await db.pool.query("SELECT count(*)::int FROM nexcomet.ad_connections").first!.decode(0)
        XCTAssertEqual(count, 3, "reauthorize creates no connection")

        let new = "new:" + key()
        let (r1, o1) = try await runNexjobs(
            ["keys", "rotate", "--batch", "2"], db: db, env: ["NEXJOBS_TOKEN_KEYS": "\(new),\(old)"])
        XCTAssertEqual(r1, 0, o1)
        XCTAssertTrue(o1.contains("resealed 3, already current 0, failed 0"), o1)
        let (r2, o2) = try await runNexjobs(["keys", "rotate"], db: db, env: ["NEXJOBS_TOKEN_KEYS": new])
        XCTAssertEqual(r2, 0, o2)
        XCTAssertTrue(o2.contains("resealed 0, already current 3, failed 0"), o2)
        let (r3, o3) = try await runNexjobs(["keys", "rotate"], db: db, env: ["NEXJOBS_TOKEN_KEYS": old])
        XCTAssertEqual(r3, 1, "the old ring cannot open rows sealed under the new key: \(o3)")
        XCTAssertTrue(o3.contains("unknownKeyID"), o3)
    }

    /// Runs `nexjobs` with `input` on stdin, off the cooperative pool (pipe reads block).
    func runNexjobs(_ args: [String], input: String = "", db: TestDatabase, env: [String: String]) async throws
        -> (Int32, String)
    {
        try await NexjobsProcess.run(args, input: input, environment: env.merging(["DATABASE_URL": db.url]) { $1 })
    }
}
