import Foundation
import Logs
import Postgres
import Queue

/// Runs one job without a worker: claims it as worker `workerID`, runs `handler` on it, and completes it unless the
/// handler did (`JobContext.complete(on:)`). Throws whatever the handler throws; the job row is then left running,
/// as after a crash. For handler tests that need no worker process.
public func runAsFakeWorker<H: JobHandler>(
    _ handler: H, jobID: Int64, pool: PGPool, workerID: String = "test-worker",
    logger: Logger = Logger(label: "test", minimum: .error)
) async throws {
    let rows = try await pool.query(
        """
        UPDATE nexjobs.jobs SET state = 'running', attempt = attempt + 1, locked_by = \(workerID),
               locked_until = now() + interval '1 hour', attempted_at = now()
         WHERE id = \(jobID) RETURNING attempt, args::text
        """)
    guard let row = rows.first else { throw TestEnvironmentError(description: "job \(jobID) does not exist") }
    let attempt: Int = try row.decode(0)
    let args: String = try row.decode(1)
    let context = JobContext(
        id: jobID, kind: H.kind, queue: "default", attempt: attempt, maxAttempts: 20, workerID: workerID,
        pool: pool, logger: logger)
    try await AnyJobHandler(handler).run(argsJSON: args, context: context)
    if !context.completedByHandler {
        try await pool.execute("UPDATE nexjobs.jobs SET state = 'completed', finished_at = now() WHERE id = \(jobID)")
    }
}

/// Enqueues a job of `handler`'s kind with `args` and runs it with ``runAsFakeWorker(_:jobID:pool:workerID:logger:)``.
@discardableResult
public func enqueueAndRun<H: JobHandler>(_ handler: H, args: String, pool: PGPool) async throws -> Int64 {
    let job = try await JobClient(pool: pool).enqueue(NewJob(kind: H.kind, args: args))
    try await runAsFakeWorker(handler, jobID: job.id, pool: pool)
    return job.id
}
