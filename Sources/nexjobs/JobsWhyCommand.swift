import Foundation
import NexcometJobs
import Runtime

/// `nexjobs jobs why ID [--json]`: why the job is not running, explained from the data (the same explanation as
/// the console's job page: `JobWhy.explain`). Exit 3 when no job has this id.
func jobsWhyCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: [], flags: ["json"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs jobs why ID [--json]

            Explains why job ID is not running, from the database: finished (completed, failed, cancelled),
            running (or its worker's lease expired), scheduled later, in backoff until a time, snoozed N times, no
            live worker on its queue, jobs due before it, a duplicate of a live job (unique key), rate-limited for
            its advertiser, its organization restricted or deleted, its connection not active.
            Each finding has a stable code (scheduled, backoff, snoozed, no_worker, queued, duplicate,
            rate_limited, org_restricted, org_deleted, connection_inactive, running, worker_lost, finished, due).

              --json   {"id", "kind", "queue", "state", "reasons": [{"code", "text"}]}

            ID is a positive integer. Exit codes: 0 ok, 1 database failure, 2 bad ID, 3 no job with this ID.
            """)
        return Exit.ok
    }
    guard a.positionals.count == 1 else { throw UsageError("jobs why needs exactly one ID") }
    guard let id = Int64(a.positionals[0]), id > 0 else {
        throw UsageError("job id must be a positive integer, got '\(a.positionals[0])'")
    }
    let pool = try openPool(maxConnections: 1)
    let found = try await JobWhy.explain(id, on: pool)
    await pool.close()
    guard let d = found else {
        printErr("error: no job has id \(id)")
        return Exit.notFound
    }
    if a.flag("json") {
        let object: [String: Any] = [
            "id": d.jobID, "kind": d.kind, "queue": d.queue, "state": d.state,
            "reasons": d.reasons.map { ["code": $0.code, "text": $0.text] },
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        print("job \(d.jobID) (\(d.kind), queue \(d.queue)) is \(d.state):")
        for r in d.reasons { print("  - [\(r.code)] \(r.text)") }
    }
    return Exit.ok
}
