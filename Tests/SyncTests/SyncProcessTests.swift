import Foundation
import PGTestSupport
import Platforms
import Postgres
import Privacy
import XCTest

@testable import Sync

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// End to end with real processes: `nexjobs sandbox`, a scheduler and three workers against one database.
final class SyncProcessTests: XCTestCase {
    /// A running stack; stops every process it started when the test ends.
    final class Stack: @unchecked Sendable {
        // Mutated only by the owning test, sequentially.
        let db: TestDatabase
        var processes: [NexjobsProcess] = []
        var base = ""
        var env: [String: String] = [:]
        var tokens = Set<String>()
        var connectionIDs: [(platform: String, index: Int, id: Int64, accessToken: String)] = []

        init(db: TestDatabase) { self.db = db }

        func start(_ args: [String]) throws -> NexjobsProcess {
            let p = NexjobsProcess(args, databaseURL: db.url, environment: env)
            try p.start()
            processes.append(p)
            return p
        }

        func stop() async {
            for p in processes where p.process.isRunning { p.signal(SIGTERM) }
            for p in processes { _ = await p.wait(timeout: .seconds(30)) }
            await db.drop()
        }

        var logs: String { processes.map(\.text).joined(separator: "\n") }
    }

    func makeStack(_ label: String = #function, sandboxArgs: [String]) async throws -> Stack {
        let stack = Stack(db: try await TestDatabase.create(label))
        let sandbox = try stack.start(["sandbox", "--port", "0"] + sandboxArgs)
        var port: String?
        await assertEventually(timeout: .seconds(20), "sandbox prints its port") {
            port = sandbox.text.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/).map { String($0.1) }
            return port != nil
        }
        stack.base = "http://127.0.0.1:\(try XCTUnwrap(port))"
        stack.env = [
            "NEXJOBS_TOKEN_KEYS": "e2e:" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
            "NEXJOBS_TIKTOK_APP_ID": "e2e-app", "NEXJOBS_TIKTOK_SECRET": "e2e-tiktok-secret",
            "NEXJOBS_TIKTOK_BASE_URL": stack.base + "/open_api/v1.3/",
            "NEXJOBS_SNAP_CLIENT_ID": "e2e-client", "NEXJOBS_SNAP_CLIENT_SECRET": "e2e-snap-secret",
            "NEXJOBS_SNAP_API_BASE_URL": stack.base + "/v1/",
            "NEXJOBS_SNAP_TOKEN_URL": stack.base + "/login/oauth2/access_token",
            "NEXJOBS_SYNC_RATE_LIMIT_SNOOZE": "0.5",
        ]
        stack.tokens = ["e2e-tiktok-secret", "e2e-snap-secret"]
        return stack
    }

    /// Exchanges every sandbox auth code and stores the tokens with `nexjobs connections add` (tokens on stdin).
    func connectAll(_ stack: Stack) async throws {
        let (code, orgText) = try await runWithInput(["orgs", "add", "E2E", "--plan", "pro"], input: "", stack: stack)
        XCTAssertEqual(code, 0, orgText)
        let org = orgText.trimmingCharacters(in: .whitespacesAndNewlines)
        let listing = try JSONValue.parse(try await get(stack.base + "/_sandbox/connections"))
        let provider = PlatformClientProvider.fromEnvironment(stack.env)
        for item in listing["connections"]?.arrayValue ?? [] {
            let platformText = try XCTUnwrap(item["platform"]?.stringValue)
            let platform = try XCTUnwrap(AdPlatform(rawValue: platformText == "snap" ? "snapchat" : platformText))
            let client = try provider.client(for: platform, pool: stack.db.pool)
            let tokens = try await client.exchangeAuthorizationCode(try XCTUnwrap(item["auth_code"]?.stringValue))
            stack.tokens.insert(tokens.accessToken)
            if let r = tokens.refreshToken { stack.tokens.insert(r) }
            var json = #"{"access_token":"\#(tokens.accessToken)","refresh_token":"\#(tokens.refreshToken ?? "")""#
            if let exp = tokens.accessTokenExpiresAt { json += #","expires_in":\#(Int(exp.timeIntervalSinceNow))"# }
            json += "}"
            let (status, out) = try await runWithInput(
                ["connections", "add", "--org", org, "--platform", platform.rawValue], input: json, stack: stack)
            XCTAssertEqual(status, 0, out)
            let index = Int(item["index"]?.idText ?? "") ?? -1
            let id = try XCTUnwrap(Int64(out.trimmingCharacters(in: .whitespacesAndNewlines)))
            stack.connectionIDs.append((platform.rawValue, index, id, tokens.accessToken))
        }
    }

    func startWorkers(_ stack: Stack, count: Int = 3) throws {
        _ = try stack.start(["scheduler", "--tick", "200ms"])
        for _ in 0..<count {
            _ = try stack.start([
                "worker", "--concurrency", "8", "--poll", "200ms", "--retry-base", "200ms", "--retry-max", "2s",
                "--lease", "4s", "--heartbeat", "1s",
            ])
        }
    }

    /// Waits until no sync job is pending and every account of an active connection was synced `runs` times.
    func waitForSyncs(_ stack: Stack, accounts: Int, runs: Int, timeout: Duration = .seconds(240)) async throws {
        try await assertEventually(timeout: timeout, "syncs finish") {
            let r = try await stack.db.pool.query(
                """
                SELECT (SELECT count(*) FROM nexjobs.jobs WHERE kind IN ('sync_connection', 'sync_ad_account')
                          AND state IN ('available', 'running', 'retryable'))::int,
                       (SELECT count(*) FROM (SELECT ad_account_id FROM nexcomet.sync_runs WHERE outcome = 'succeeded'
                          GROUP BY ad_account_id HAVING count(*) >= \(runs)) s)::int
                """
            ).first!
            return try r.decode(0) as Int == 0 && (try r.decode(1) as Int) >= accounts
        }
    }

    /// Metrics of the database and the sandbox's truth over each account's retained days (pro: 90).
    func compare(_ stack: Stack, excludingAccounts excluded: Set<String> = []) async throws
        -> (stored: [String: String], truth: [String: String])
    {
        let accounts = try await stack.db.pool.query("SELECT external_id, timezone FROM nexcomet.ad_accounts")
        var first: [String: String] = [:]
        for r in accounts {
            let id: String = try r.decode(0)
            if excluded.contains(id) { continue }
            first[id] = LocalDate(Date(), in: TimeZone(identifier: try r.decode(1))!).adding(days: -89).description
        }
        let truthDoc = try JSONValue.parse(try await get(stack.base + "/_sandbox/truth"))
        var truth: [String: String] = [:]
        for row in truthDoc["rows"]?.arrayValue ?? [] {
            func t(_ k: String) -> String { row[k]?.idText ?? "?" }
            guard let from = first[t("account_id")], t("date") >= from else { continue }
            let level = t("level") == "adgroup" ? "ad_group" : t("level")
            let key = [t("platform"), t("account_id"), level, t("entity_id"), t("date")].joined(separator: "|")
            truth[key] = [
                t("currency"), norm(t("spend")), t("impressions"), t("clicks"), norm(t("conversions")),
                norm(t("conversion_value")),
            ].joined(separator: "|")
        }
        let rows = try await stack.db.pool.query(
            """
            SELECT m.platform, a.external_id, m.level, m.entity_id, m.date::text, m.currency, m.spend::text,
                   m.impressions::text, m.clicks::text, m.conversions::text, m.conversion_value::text
              FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
            """)
        var stored: [String: String] = [:]
        for r in rows {
            let account: String = try r.decode(1)
            guard first[account] != nil else { continue }
            let key = try (0..<5).map { try r.decode($0) as String }.joined(separator: "|")
            stored[key] = [
                try r.decode(5) as String, norm(try r.decode(6)), try r.decode(7), try r.decode(8),
                norm(try r.decode(9)), norm(try r.decode(10)),
            ].joined(separator: "|")
        }
        return (stored, truth)
    }

    func testEndToEndTwentyConnectionsExactThenIdempotent() async throws {
        let stack = try await makeStack(sandboxArgs: [
            "--seed", "15", "--tiktok-connections", "10", "--snap-connections", "10", "--accounts-per-connection",
            "2-3",
        ])
        do {
            try await connectAll(stack)
            XCTAssertEqual(stack.connectionIDs.count, 20)
            try startWorkers(stack)
            let expected =
                try JSONValue.parse(try await get(stack.base + "/_sandbox/truth?to=1900-01-01"))["totals"]?
                .arrayValue?.count ?? 0
            XCTAssertEqual(expected, 50, "seed 15 gives 50 ad accounts over 20 connections")
            let started = ContinuousClock.now
            // kill -9 a worker while it runs a sync_ad_account job; the job is rescued after its lease and retried.
            var victim: (job: Int64, pid: Int32)?
            try await assertEventually(timeout: .seconds(60), "a worker runs a sync_ad_account job") {
                let rows = try await stack.db.pool.query(
                    "SELECT id, locked_by FROM nexjobs.jobs WHERE kind = 'sync_ad_account' AND state = 'running'")
                for r in rows {
                    let lockedBy: String = try r.decode(1)
                    let parts = lockedBy.split(separator: "-")
                    guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]) else { continue }
                    if stack.processes.contains(where: { $0.process.processIdentifier == pid }) {
                        victim = (try r.decode(0), pid)
                        return true
                    }
                }
                return false
            }
            let killed = try XCTUnwrap(victim)
            kill(killed.pid, SIGKILL)
            _ = try stack.start([
                "worker", "--concurrency", "8", "--poll", "200ms", "--retry-base", "200ms", "--retry-max", "2s",
                "--lease", "4s", "--heartbeat", "1s",
            ])
            try await waitForSyncs(stack, accounts: expected, runs: 1)
            let killedJob = try await stack.db.pool.query(
                "SELECT state, attempt FROM nexjobs.jobs WHERE id = \(killed.job)"
            ).first!
            XCTAssertEqual(try killedJob.decode(0) as String, "completed")
            XCTAssertGreaterThanOrEqual(try killedJob.decode(1) as Int, 2, "the killed attempt was retried")
            let elapsed = ContinuousClock.now - started
            print("e2e: \(expected) ad accounts synced in \(elapsed)")
            let (stored, truth) = try await compare(stack)
            XCTAssertGreaterThan(truth.count, 1000)
            assertSameMetrics(stored, truth, "after the first sync")
            let currencies: Int = try await stack.db.pool.query(
                "SELECT count(DISTINCT currency)::int FROM nexcomet.ad_accounts"
            ).first!.decode(0)
            XCTAssertGreaterThanOrEqual(currencies, 3)

            // A second full sync of every connection rewrites no metric row.
            let versions = Set(
                try await stack.db.pool.query(
                    "SELECT ctid::text || '/' || xmin::text FROM nexcomet.daily_metrics"
                ).map { try $0.decode(0) as String })
            try await stack.db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now()")
            try await waitForSyncs(stack, accounts: expected, runs: 2)
            let after = Set(
                try await stack.db.pool.query(
                    "SELECT ctid::text || '/' || xmin::text FROM nexcomet.daily_metrics"
                ).map { try $0.decode(0) as String })
            XCTAssertEqual(versions, after, "the second sync changed no metric row")
            let written: Int = try await stack.db.pool.query(
                """
                SELECT coalesce(sum(rows_written), 0)::int FROM (
                    SELECT rows_written, row_number() OVER (PARTITION BY ad_account_id ORDER BY id) AS n
                      FROM nexcomet.sync_runs WHERE outcome = 'succeeded') r WHERE n >= 2
                """
            ).first!.decode(0)
            XCTAssertEqual(written, 0)
            let logs = stack.logs
            for secret in stack.tokens { XCTAssertFalse(logs.contains(secret), "a token appears in the logs") }
        } catch {
            XCTFail("\(error)")
        }
        await stack.stop()
    }

    func testEndToEndWithFaultsStaysExactForHealthyConnections() async throws {
        let stack = try await makeStack(sandboxArgs: [
            "--seed", "12", "--tiktok-connections", "10", "--snap-connections", "10", "--accounts-per-connection",
            "2-3",
        ])
        do {
            try await connectAll(stack)
            _ = try await post(
                stack.base + "/_sandbox/faults", #"{"probabilities": {"server_error": 0.1, "rate_limit": 0.05}}"#)
            _ = try await post(stack.base + "/_sandbox/revoke", #"{"platform": "tiktok", "connection": 0}"#)
            try startWorkers(stack)
            let totals =
                try JSONValue.parse(try await get(stack.base + "/_sandbox/truth?to=1900-01-01"))["totals"]?
                .arrayValue ?? []
            let listing = try JSONValue.parse(try await get(stack.base + "/_sandbox/connections"))
            let revokedAccounts = Set(
                (listing["connections"]?.arrayValue ?? []).filter {
                    $0["platform"]?.stringValue == "tiktok" && $0["index"]?.idText == "0"
                }.flatMap { $0["account_ids"]?.arrayValue ?? [] }.compactMap(\.idText))
            XCTAssertFalse(revokedAccounts.isEmpty)
            // A Snap token expires while syncs run.
            try await assertEventually(timeout: .seconds(120), "some account synced") {
                try await stack.db.pool.query(
                    "SELECT count(*)::int FROM nexcomet.sync_runs WHERE outcome = 'succeeded'"
                )
                .first!.decode(0) as Int > 0
            }
            _ = try await post(stack.base + "/_sandbox/expire", #"{"connection": 0}"#)
            // Its syncs may all have finished before the expiry: make the connection due again, so that a sync
            // meets the expired token whatever the timing, and wait until the refreshed token is stored.
            let snap = try XCTUnwrap(stack.connectionIDs.first { $0.platform == "snapchat" && $0.index == 0 })
            try await stack.db.pool.execute(
                "UPDATE nexcomet.ad_connections SET next_sync_at = now() WHERE id = \(snap.id)")
            let ring = try KeyRing.fromEnvironment(environment: stack.env)
            let vault = ConnectionStore(vault: TokenVault(keyRing: ring))
            try await assertEventually(timeout: .seconds(120), "the expired Snap token was refreshed and stored") {
                let current = try await stack.db.pool.withConnection { c in try await vault.load(snap.id, on: c) }
                return current.tokens?.accessToken != snap.accessToken
            }
            try await waitForSyncs(
                stack, accounts: totals.count - revokedAccounts.count, runs: 1, timeout: .seconds(400))

            let (stored, truth) = try await compare(stack, excludingAccounts: revokedAccounts)
            XCTAssertGreaterThan(truth.count, 1000)
            assertSameMetrics(stored, truth, "healthy connections under faults")
            let revoked = try XCTUnwrap(stack.connectionIDs.first { $0.platform == "tiktok" && $0.index == 0 }).id
            let status: String = try await stack.db.pool.query(
                "SELECT status FROM nexcomet.ad_connections WHERE id = \(revoked)"
            ).first!.decode(0)
            XCTAssertEqual(status, "needs_reauth")
            let notes: Int = try await stack.db.pool.query(
                "SELECT count(*)::int FROM nexcomet.notifications WHERE connection_id = \(revoked)"
            ).first!.decode(0)
            XCTAssertEqual(notes, 1)
            let others: Int = try await stack.db.pool.query(
                "SELECT count(*)::int FROM nexcomet.ad_connections WHERE id <> \(revoked) AND status <> 'active'"
            ).first!.decode(0)
            XCTAssertEqual(others, 0, "faults did not push healthy connections into needs_reauth")
            let snoozedOrRetried: Int = try await stack.db.pool.query(
                "SELECT count(*)::int FROM nexcomet.sync_runs WHERE outcome IN ('rate_limited', 'failed')"
            ).first!.decode(0)
            XCTAssertGreaterThan(snoozedOrRetried, 0, "faults were actually hit")
            // The expired Snap token was refreshed and the new one stored (sealed).
            let now = try await stack.db.pool.withConnection { c in try await vault.load(snap.id, on: c) }
            XCTAssertNotEqual(now.tokens?.accessToken, snap.accessToken, "the expired Snap token was refreshed")
            if let t = now.tokens?.accessToken { stack.tokens.insert(t) }
            if let t = now.tokens?.refreshToken { stack.tokens.insert(t) }
            let logs = stack.logs
            for secret in stack.tokens { XCTAssertFalse(logs.contains(secret), "a token appears in the logs") }
            // Nor in the database, job error history included.
            let tables: [String] = try await stack.db.pool.query(
                """
                SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
                 WHERE table_schema IN ('nexcomet', 'nexjobs') AND table_type = 'BASE TABLE'
                """
            ).map { try $0.decode(0) }
            var dump = ""
            for table in tables {
                for r in try await stack.db.pool.query(PGQuery(unsafeSQL: "SELECT t::text FROM \(table) t")) {
                    dump += (r.text(0) ?? "") + "\n"
                }
            }
            XCTAssertTrue(dump.contains("re-authorization required"), "the error history is part of the dump")
            for secret in stack.tokens { XCTAssertFalse(dump.contains(secret), "a token appears in the database") }
        } catch {
            XCTFail("\(error)")
        }
        await stack.stop()
    }

    // MARK: Helpers

    func get(_ url: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: url)!)
        return String(decoding: data, as: UTF8.self)
    }

    func post(_ url: String, _ body: String) async throws -> String {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, _) = try await URLSession.shared.data(for: request)
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs `nexjobs` with `input` on its stdin, off the cooperative pool (the pipe reads block).
    func runWithInput(_ args: [String], input: String, stack: Stack) async throws -> (Int32, String) {
        try await NexjobsProcess.run(
            args, input: input, environment: stack.env.merging(["DATABASE_URL": stack.db.url]) { $1 })
    }
}
