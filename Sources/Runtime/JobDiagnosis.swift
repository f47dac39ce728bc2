import Foundation
import Postgres

/// "Why is this job not running?": the engine's part of the answer, read from the queue's own tables.
///
/// The application adds its own reasons (rate limits, restricted organizations) on top. Used by the console's job
/// page and by `nexjobs jobs why ID`.
public struct JobDiagnosis: Sendable {
    /// One finding. `code` is stable (for `--json` and tests); `text` is for people.
    public struct Reason: Sendable, Equatable {
        public var code: String
        public var text: String
        public init(_ code: String, _ text: String) {
            self.code = code
            self.text = text
        }
    }

    public var jobID: Int64
    public var kind: String
    public var queue: String
    public var state: String
    public var args: String
    /// The findings, most important first. Never empty.
    public var reasons: [Reason]

    /// Reads the job and explains its state; nil when no job has this id.
    public static func load(_ id: Int64, on pool: PGPool) async throws -> JobDiagnosis? {
        guard
            let r = try await pool.query(
                """
                SELECT j.kind, j.queue, j.state, j.args::text, j.run_at, j.run_at > now(), j.attempt, j.max_attempts,
                       j.snoozes, j.unique_key, j.locked_by, j.attempted_at, j.finished_at,
                       (SELECT count(*) FROM nexjobs.workers w WHERE w.lease_until > now() AND j.queue = ANY(w.queues)),
                       (SELECT w.lease_until > now() FROM nexjobs.workers w WHERE w.id = j.locked_by),
                       (SELECT d.id FROM nexjobs.jobs d
                         WHERE j.unique_key IS NOT NULL AND d.unique_key = j.unique_key AND d.id <> j.id
                           AND d.state IN ('available', 'retryable', 'running') LIMIT 1),
                       (SELECT count(*) FROM (SELECT 1 FROM nexjobs.jobs a
                         WHERE a.queue = j.queue AND a.state IN ('available', 'retryable') AND a.run_at <= now()
                           AND (a.priority, a.run_at, a.id) < (j.priority, j.run_at, j.id) LIMIT 10001) ahead),
                       jsonb_array_length(j.errors)
                  FROM nexjobs.jobs j WHERE j.id = \(id)
                """
            ).first
        else { return nil }
        let kind: String = try r.decode(0)
        let queue: String = try r.decode(1)
        let state: String = try r.decode(2)
        let args: String = try r.decode(3)
        let runAt: Date = try r.decode(4)
        let later: Bool = try r.decode(5)
        let attempt: Int = try r.decode(6)
        let maxAttempts: Int = try r.decode(7)
        let snoozes: Int = try r.decode(8)
        let uniqueKey: String? = try r.decode(9)
        let lockedBy: String? = try r.decode(10)
        let attemptedAt: Date? = try r.decode(11)
        let finishedAt: Date? = try r.decode(12)
        let liveWorkers: Int = try r.decode(13)
        let workerAlive: Bool? = try r.decode(14)
        let duplicateOf: Int64? = try r.decode(15)
        let ahead: Int = try r.decode(16)
        let errorCount: Int = try r.decode(17)
        let t = PGTimestamp.format

        var reasons: [Reason] = []
        switch state {
        case "completed":
            reasons.append(Reason("finished", "It is not waiting: it completed at \(finishedAt.map(t) ?? "?")."))
        case "failed":
            reasons.append(
                Reason(
                    "finished",
                    "It is not waiting: it failed at \(finishedAt.map(t) ?? "?") after attempt \(attempt) of "
                        + "\(maxAttempts) (\(errorCount) error\(errorCount == 1 ? "" : "s") recorded). Retry it to run it again."
                ))
        case "cancelled":
            reasons.append(
                Reason("finished", "It is not waiting: an operator cancelled it at \(finishedAt.map(t) ?? "?")."))
        case "running":
            if workerAlive == true {
                reasons.append(
                    Reason(
                        "running",
                        "It is running: attempt \(attempt) on worker \(lockedBy ?? "?") since \(attemptedAt.map(t) ?? "?")."
                    ))
            } else {
                reasons.append(
                    Reason(
                        "worker_lost",
                        "It is marked running on worker \(lockedBy ?? "?"), whose lease has expired: the next rescue "
                            + "puts it back in the queue."))
            }
        default:  // available, retryable
            if later {
                if snoozes > 0 && state == "available" {
                    reasons.append(
                        Reason(
                            "snoozed",
                            "It was snoozed \(snoozes) time\(snoozes == 1 ? "" : "s") (no attempt charged); it runs again at \(t(runAt))."
                        ))
                } else if state == "retryable" {
                    reasons.append(
                        Reason(
                            "backoff",
                            "It is in backoff after failed attempt \(attempt) of \(maxAttempts), until \(t(runAt))."))
                } else {
                    reasons.append(Reason("scheduled", "It is scheduled for later: \(t(runAt))."))
                }
            }
            if snoozes > 0 && !(later && state == "available") {
                reasons.append(
                    Reason(
                        "snoozed", "It has been snoozed \(snoozes) time\(snoozes == 1 ? "" : "s") (no attempt charged)."
                    ))
            }
            if liveWorkers == 0 {
                reasons.append(Reason("no_worker", "No live worker listens on its queue '\(queue)'."))
            }
            if !later && ahead > 0 {
                reasons.append(
                    Reason(
                        "queued",
                        "\(ahead > 10_000 ? "More than 10000" : String(ahead)) job\(ahead == 1 ? " is" : "s are") due before it in queue '\(queue)'."
                    ))
            }
        }
        if let duplicateOf, let uniqueKey {
            reasons.append(
                Reason(
                    "duplicate",
                    "It is a duplicate of live job \(duplicateOf), which holds its unique key '\(uniqueKey)'; "
                        + "an enqueue with this key returns that job instead."))
        }
        if reasons.isEmpty {
            reasons.append(
                Reason("due", "It is due now and a worker listens on '\(queue)': it should start within moments."))
        }
        return JobDiagnosis(jobID: id, kind: kind, queue: queue, state: state, args: args, reasons: reasons)
    }
}
