import Foundation
import PGTestSupport
import Platforms
import XCTest

@testable import Sync

/// Issue 14, resumable syncs: kill -9 a worker in the middle of a backfill; the retried job resumes after the last
/// committed report window and asks the sandbox for no committed window again.
extension SyncProcessTests {
    func testKilledBackfillResumesAfterTheLastCommittedWindow() async throws {
        let stack = try await makeStack(sandboxArgs: [
            "--seed", "21", "--tiktok-connections", "1", "--snap-connections", "0", "--accounts-per-connection", "1",
        ])
        do {
            try await connectAll(stack)
            // 700 ms per API call: the 90-day backfill (3 entity lists, then 3 report windows of 30 days) takes
            // several seconds, and each window commits about 0.7 s after the previous one.
            _ = try await post(
                stack.base + "/_sandbox/faults", #"{"probabilities": {"slow": 1.0}, "slow_delay_ms": 700}"#)
            _ = try stack.start(["scheduler", "--tick", "200ms"])
            let workerArgs = [
                "worker", "--concurrency", "4", "--poll", "200ms", "--retry-base", "200ms", "--retry-max", "2s",
                "--lease", "3s", "--heartbeat", "1s",
            ]
            _ = try stack.start(workerArgs)

            // Wait until the first report window is committed, then kill -9 the worker running the job.
            var victim: (job: Int64, pid: Int32)?
            try await assertEventually(timeout: .seconds(60), "a report window is committed mid-backfill") {
                let rows = try await stack.db.pool.query(
                    """
                    SELECT j.id, j.locked_by FROM nexcomet.sync_progress p JOIN nexjobs.jobs j ON j.id = p.job_id
                     WHERE p.committed_through IS NOT NULL AND p.committed_through < p.window_end
                       AND j.state = 'running'
                    """)
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
            if let p = stack.processes.first(where: { $0.process.processIdentifier == killed.pid }) {
                _ = await p.wait(timeout: .seconds(10))
            }
            // What the killed attempt committed (durable), and a clean request log from here on.
            let progress = try await stack.db.pool.query(
                "SELECT committed_through::text, window_start::text, window_end::text FROM nexcomet.sync_progress"
            ).first!
            let committed: String = try XCTUnwrap(try progress.decode(0) as String?)
            let windowStart: String = try progress.decode(1)
            let windowEnd: String = try progress.decode(2)
            XCTAssertLessThan(committed, windowEnd, "killed mid-backfill")
            _ = try await post(stack.base + "/_sandbox/requests/reset", "{}")
            _ = try await post(stack.base + "/_sandbox/faults", "{}")

            _ = try stack.start(workerArgs)
            try await waitForSyncs(stack, accounts: 1, runs: 1, timeout: .seconds(120))
            let job = try await stack.db.pool.query(
                "SELECT state, attempt FROM nexjobs.jobs WHERE id = \(killed.job)"
            ).first!
            XCTAssertEqual(try job.decode(0) as String, "completed")
            XCTAssertGreaterThanOrEqual(try job.decode(1) as Int, 2, "the killed attempt was retried")

            let log = try JSONValue.parse(try await get(stack.base + "/_sandbox/report-requests"))
            // Entity-level reports only: reconciliation's account-totals requests (AUCTION_ADVERTISER) cover the whole
            // window by design and fetch no metrics rows.
            let all = log["requests"]?.arrayValue ?? []
            let requests = all.filter { $0["level"]?.stringValue != "AUCTION_ADVERTISER" }
            XCTAssertFalse(requests.isEmpty, "the resumed attempt fetched the remaining windows")
            XCTAssertEqual(all.count - requests.count, 1, "one totals request over the whole window")
            let reconcile: String? = try await stack.db.pool.query(
                "SELECT reconcile_status FROM nexcomet.sync_runs WHERE job_id = \(killed.job) AND outcome = 'succeeded'"
            ).first?.decode(0)
            XCTAssertEqual(reconcile, "ok", "no re-sync: the totals matched")
            // Every HTTP request of the resumed attempt (`sync_runs.api_calls`: pages, retries, lists, refreshes)
            // is one of those reports: the totals and each remaining window once. The entity lists the killed
            // attempt committed are reused, not fetched again (3 more requests otherwise). The log may also hold the
            // killed attempt's last window request, answered after the reset (the sandbox logs a report when it
            // answers), hence distinct windows.
            let resumedCalls: Int = try await stack.db.pool.query(
                "SELECT api_calls FROM nexcomet.sync_runs WHERE job_id = \(killed.job) AND outcome = 'succeeded'"
            ).first!.decode(0)
            let remaining = Set(requests.map { "\($0["first"]?.stringValue ?? "")|\($0["last"]?.stringValue ?? "")" })
            XCTAssertEqual(resumedCalls, remaining.count + 1, "the resumed attempt fetched no list again: \(log)")
            for r in requests {
                let first = r["first"]?.stringValue ?? ""
                XCTAssertGreaterThan(first, committed, "a committed window (through \(committed)) was fetched again")
            }
            // The remaining windows are contiguous from the day after the committed one to the window's end.
            let firsts = requests.compactMap { $0["first"]?.stringValue }.sorted()
            let lasts = requests.compactMap { $0["last"]?.stringValue }.sorted()
            XCTAssertEqual(
                firsts.first, LocalDate(parsing: committed)!.adding(days: 1).description, "resumes the day after")
            XCTAssertEqual(lasts.last.map { $0 >= windowEnd }, true)
            XCTAssertLessThan(windowStart, committed)
            let leftover: Int = try await stack.db.pool.query("SELECT count(*)::int FROM nexcomet.sync_progress")
                .first!.decode(0)
            XCTAssertEqual(leftover, 0, "the completed job cleared its progress")

            let (stored, truth) = try await compare(stack)
            XCTAssertGreaterThan(truth.count, 100)
            assertSameMetrics(stored, truth, "after the resumed backfill")
        } catch {
            XCTFail("\(error)")
        }
        await stack.stop()
    }
}
