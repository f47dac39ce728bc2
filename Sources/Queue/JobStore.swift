import Foundation
import Postgres

/// The SQL of the job lifecycle, in one place: insert, claim, heartbeat, complete, retry, snooze, discard,
/// hand back, cancel, rescue and prune. `JobClient`, the worker's roles (producer, completer, maintainer) and
/// `JobContext.complete(on:)` run these statements; nothing else writes a job's state.
///
/// Statements that the SQL interface also offers delegate to the same SQL function, so there is one
/// implementation: `insert` calls `nexjobs.insert_jobs` (sql/040), which `nexjobs.enqueue_ex` / `nexjobs.enqueue`
/// and the due-work functions call too; `cancel`, `retry`, `rescue` and `prune` call the sql/001 functions.
/// Every statement is fenced where it must be: a worker's writes apply only to rows still `running` under its id
/// and attempt.
public enum JobStore {
    // MARK: insert

    /// Inserts `jobs` with one statement (unique keys held by a live job are skipped; one NOTIFY per queue with a
    /// job due now). Returns one row `(job_id bigint)` per inserted job, in input order.
    public static func insert(_ jobs: some Collection<NewJob>) -> PGQuery {
        """
        SELECT job_id FROM nexjobs.insert_jobs(
          \(jobs.map(\.kind))::text[], \(jobs.map { PGJSON($0.args) })::jsonb[], \(jobs.map(\.queue))::text[],
          \(jobs.map(\.priority))::smallint[], \(jobs.map(\.runAt))::timestamptz[], \(jobs.map(\.uniqueKey))::text[],
          \(jobs.map(\.maxAttempts))::int[])
        """
    }

    /// Inserts one job, or finds the live job holding its unique key (`nexjobs.enqueue_ex`, which inserts through
    /// `nexjobs.insert_jobs`). Returns one row `(id bigint, duplicate boolean)`.
    public static func insertOrFind(_ job: NewJob) -> PGQuery {
        """
        SELECT id, duplicate FROM nexjobs.enqueue_ex(\(job.kind), \(PGJSON(job.args))::jsonb, \(job.queue),
          \(job.priority), \(job.runAt)::timestamptz, \(job.uniqueKey), \(job.maxAttempts))
        """
    }

    // MARK: claim

    /// Columns returned by `claim`, decoded by `ClaimedJob(row:)`.
    public static let claimedColumns = "j.id, j.kind, j.queue, j.args::text, j.attempt, j.max_attempts"

    /// Claims up to `limit` due jobs of one queue for `worker`, whose attempt may run until `deadline` from now.
    ///
    /// `queue = $n` lets jobs_claim_idx deliver rows already in (priority, run_at, id) order, so LIMIT stops after
    /// `limit` index entries (a worker on several queues runs one claim per queue: `queue = ANY(...)` cannot use the
    /// index order and sorted every claimable row). The update finds its rows through the primary key
    /// (ANY(ARRAY(...))) instead of letting the planner hash-join a seq scan.
    public static func claim(queue: String, worker: String, deadline: Duration, limit: Int) -> PGQuery {
        """
        UPDATE nexjobs.jobs j
           SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), locked_by = \(worker),
               locked_until = now() + \(deadline)::interval
         WHERE j.id = ANY(ARRAY(
          SELECT id FROM nexjobs.jobs
           WHERE state IN ('available', 'retryable') AND queue = \(queue)
             AND run_at <= now()
           ORDER BY priority, run_at, id
           LIMIT \(limit)
           FOR UPDATE SKIP LOCKED))
        RETURNING \(unsafeSQL: claimedColumns)
        """
    }

    // MARK: workers and heartbeat

    /// Registers (or re-registers) a worker process with a lease of `lease` from now.
    public static func registerWorker(
        id: String, host: String, pid: Int, queues: [String], concurrency: Int,
        lease: Duration
    ) -> PGQuery {
        """
        INSERT INTO nexjobs.workers (id, host, pid, queues, concurrency, lease_until)
        VALUES (\(id), \(host), \(pid), \(queues)::text[], \(concurrency), now() + \(lease)::interval)
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lease_until = EXCLUDED.lease_until
        """
    }

    /// Extends a worker's lease (which covers all its running jobs); affects 0 rows when it is not registered.
    public static func heartbeat(worker: String, lease: Duration) -> PGQuery {
        """
        UPDATE nexjobs.workers SET heartbeat_at = now(), lease_until = now() + \(lease)::interval
         WHERE id = \(worker)
        """
    }

    /// Of the given (id, attempt) pairs, the ids no longer running under `worker` (cancelled, rescued).
    public static func lostJobs(ids: [Int64], attempts: [Int], worker: String) -> PGQuery {
        """
        SELECT d.id FROM unnest(\(ids)::bigint[], \(attempts)::int[]) AS d(id, attempt)
         WHERE NOT EXISTS (SELECT 1 FROM nexjobs.jobs j WHERE j.id = d.id AND j.attempt = d.attempt
                             AND j.state = 'running' AND j.locked_by = \(worker))
        """
    }

    /// Removes a worker's row (on a clean stop).
    public static func unregisterWorker(id: String) -> PGQuery {
        "DELETE FROM nexjobs.workers WHERE id = \(id)"
    }

    /// Forgets workers whose lease expired over an hour ago.
    public static let forgetDeadWorkers: PGQuery =
        "DELETE FROM nexjobs.workers WHERE lease_until < now() - interval '1 hour'"

    // MARK: outcomes

    /// Completes the given attempts, fenced on (attempt, running, `worker`).
    public static func complete(ids: [Int64], attempts: [Int], worker: String) -> PGQuery {
        """
        UPDATE nexjobs.jobs j
           SET state = 'completed', finished_at = now(), locked_by = NULL, locked_until = NULL
          FROM unnest(\(ids)::bigint[], \(attempts)::int[]) AS d(id, attempt)
         WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running' AND j.locked_by = \(worker)
        """
    }

    /// Completes one attempt, fenced like `complete(ids:attempts:worker:)` (a handler's own transaction).
    public static func completeOne(id: Int64, attempt: Int, worker: String) -> PGQuery {
        """
        UPDATE nexjobs.jobs SET state = 'completed', finished_at = now(), locked_by = NULL, locked_until = NULL
         WHERE id = \(id) AND attempt = \(attempt) AND state = 'running' AND locked_by = \(worker)
        """
    }

    /// An attempt that did not complete: retried later, failed, snoozed or handed back.
    public struct Unfinished: Sendable, Equatable {
        public var id: Int64
        public var attempt: Int
        /// `retryable`, `failed` or `available`.
        public var state: String
        /// Appended to the job's error history when set.
        public var error: String?
        /// The job runs again this long from now.
        public var delay: Duration
        /// True for a snooze or a hand-back: the attempt is not charged.
        public var uncharge: Bool

        /// Retry after `delay`, or fail when this was the last attempt.
        public static func retry(id: Int64, attempt: Int, maxAttempts: Int, error: String, delay: Duration)
            -> Unfinished
        {
            let last = attempt >= maxAttempts
            return Unfinished(
                id: id, attempt: attempt, state: last ? "failed" : "retryable",
                error: String(error.prefix(2000)), delay: last ? .zero : delay, uncharge: false)
        }
        /// Fail now, without further attempts.
        public static func discard(id: Int64, attempt: Int, error: String) -> Unfinished {
            Unfinished(
                id: id, attempt: attempt, state: "failed", error: String(error.prefix(2000)), delay: .zero,
                uncharge: false)
        }
        /// Run again after `delay` without charging the attempt.
        public static func snooze(id: Int64, attempt: Int, delay: Duration) -> Unfinished {
            Unfinished(id: id, attempt: attempt, state: "available", error: nil, delay: delay, uncharge: true)
        }
        /// Hand back at once (shutdown), without charging the attempt.
        public static func handBack(id: Int64, attempt: Int) -> Unfinished {
            Unfinished(id: id, attempt: attempt, state: "available", error: nil, delay: .zero, uncharge: true)
        }
    }

    /// Records unfinished attempts with one statement, fenced on (attempt, running, `worker`).
    public static func finish(_ rows: [Unfinished], worker: String) -> PGQuery {
        // Bounded: a handler's absurd snooze (e.g. `.seconds(Int64.max)`) must neither trap the worker nor make
        // `now() + delay` leave timestamptz's range (the batch's write would then fail for good). At most 10 years.
        func ms(_ d: Duration) -> Int64 { min(max(d.microsecondsSaturating / 1000, 0), 10 * 365 * 86_400_000) }
        return """
            UPDATE nexjobs.jobs j
               SET state = d.state,
                   run_at = now() + d.delay_ms * interval '1 millisecond',
                   attempt = j.attempt - d.uncharge,
                   finished_at = CASE WHEN d.state = 'failed' THEN now() END,
                   errors = CASE WHEN d.error IS NULL THEN j.errors
                            ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                'at', now(), 'attempt', j.attempt, 'error', d.error, 'worker', \(worker)::text)) END,
                   locked_by = NULL, locked_until = NULL
              FROM unnest(\(rows.map(\.id))::bigint[], \(rows.map(\.attempt))::int[], \(rows.map(\.state))::text[],
                          \(rows.map(\.error))::text[], \(rows.map { ms($0.delay) })::bigint[],
                          \(rows.map { $0.uncharge ? 1 : 0 })::int[])
                   AS d(id, attempt, state, error, delay_ms, uncharge)
             WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running' AND j.locked_by = \(worker)
            """
    }

    // MARK: operator actions and maintenance

    /// Cancels a job that has not finished (`nexjobs.cancel`); one boolean row, false when finished or missing.
    public static func cancel(_ id: Int64) -> PGQuery { "SELECT nexjobs.cancel(\(id))" }

    /// Makes a job run again now (`nexjobs.retry`); one boolean row, false when running or missing.
    public static func retry(_ id: Int64) -> PGQuery { "SELECT nexjobs.retry(\(id))" }

    /// Rescues up to `batchSize` running jobs whose lease expired (`nexjobs.rescue`); one integer row.
    public static func rescue(batchSize: Int) -> PGQuery { "SELECT nexjobs.rescue(\(batchSize))" }

    /// Deletes up to `batchSize` finished jobs past their retention (`nexjobs.prune`); one integer row.
    public static func prune(completedRetention: Duration, failedRetention: Duration, batchSize: Int) -> PGQuery {
        "SELECT nexjobs.prune(\(completedRetention)::interval, \(failedRetention)::interval, \(batchSize))"
    }

    /// Deletes up to 5,000 schedule fire records older than `retention`; returns the rows deleted (execute).
    public static func pruneScheduleFires(retention: Duration) -> PGQuery {
        """
        DELETE FROM nexjobs.schedule_fires
         WHERE ctid IN (SELECT ctid FROM nexjobs.schedule_fires WHERE fired_at < now() - \(retention)::interval
                         LIMIT 5000)
        """
    }
}

/// A job as claimed by a worker: what the executor needs to run it.
public struct ClaimedJob: Sendable, Equatable {
    public var id: Int64
    public var kind: String
    public var queue: String
    public var args: String
    public var attempt: Int
    public var maxAttempts: Int

    public init(id: Int64, kind: String, queue: String, args: String, attempt: Int, maxAttempts: Int) {
        self.id = id
        self.kind = kind
        self.queue = queue
        self.args = args
        self.attempt = attempt
        self.maxAttempts = maxAttempts
    }

    /// Decodes a row of `JobStore.claim` (`JobStore.claimedColumns`).
    public init(row: PGRow) throws {
        self.init(
            id: try row.decode(0), kind: try row.decode(1), queue: try row.decode(2), args: try row.decode(3),
            attempt: try row.decode(4), maxAttempts: try row.decode(5))
    }
}
