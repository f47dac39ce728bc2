// queue-bench: the client side of the queue benchmark, through the product's own enqueue path (JobClient).
//
//   queue-bench enqueue N [--queue Q] [--args JSON] [--profile]
//       Enqueues N `noop` jobs with JobClient.enqueueMany (one statement per 5,000 jobs) and prints
//       `enqueued=N seconds=S jobs_per_s=R`. Validation of every job is part of the timed path, as for users;
//       --profile first times that validation alone (untimed pass) and prints it to stderr.
//   queue-bench latency N INTERVAL_MS [--queue Q] [--timeout SECONDS]
//       With workers already idle on Q, enqueues N jobs one at a time (JobClient.enqueue, one autocommit
//       statement each) INTERVAL_MS apart, waits until all have started, and prints enqueue-to-start percentiles
//       `p50_ms=.. p95_ms=.. p99_ms=.. max_ms=..` from attempted_at - created_at (both server clocks).
// DATABASE_URL names the database.
import Foundation
import Postgres
import Queue

struct BenchError: Error, CustomStringConvertible {
    var description: String
}

func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: "--\(name)"), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func positionals(_ args: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < args.count {
        if args[i] == "--profile" {
            i += 1
            continue
        }
        if args[i].hasPrefix("--") {
            i += 2
            continue
        }
        out.append(args[i])
        i += 1
    }
    return out
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func enqueueBench(pool: PGPool, n: Int, queue: String, args: String, profile: Bool) async throws {
    let client = JobClient(pool: pool)
    // Building the values is the caller's own work, not the queue's: kept out of the timed section.
    let jobs = (0..<n).map { _ in NewJob(kind: "noop", args: args, queue: queue) }
    let clock = ContinuousClock()
    if profile {
        // What enqueueMany spends on client-side validation alone (it validates every job again when timed).
        let v0 = clock.now
        for j in jobs { try j.validate() }
        let vs = seconds(clock.now - v0)
        FileHandle.standardError.write(
            Data(
                String(
                    format: "validate: %.4f s for %d jobs (%.1f us/job)\n",
                    vs, n, vs * 1e6 / Double(n)
                ).utf8))
    }
    let began = clock.now
    let ids = try await client.enqueueMany(jobs)
    let took = seconds(clock.now - began)
    guard ids.count == n else { throw BenchError(description: "enqueued \(ids.count) of \(n)") }
    print(String(format: "enqueued=%d seconds=%.4f jobs_per_s=%.0f", n, took, Double(n) / took))
}

func latencyBench(pool: PGPool, n: Int, intervalMs: Int, queue: String, timeout: Double) async throws {
    let client = JobClient(pool: pool)
    var ids: [Int64] = []
    ids.reserveCapacity(n)
    let clock = ContinuousClock()
    // Paced against a fixed schedule so a slow enqueue does not stretch the whole run.
    let start = clock.now
    for i in 0..<n {
        let due = start + .milliseconds(i * intervalMs)
        if clock.now < due { try await Task.sleep(until: due, clock: clock) }
        ids.append(try await client.enqueue(NewJob(kind: "noop", queue: queue)).id)
    }
    let deadline = clock.now + .seconds(timeout)
    while true {
        let started: Int = try await pool.query(
            """
            SELECT count(*)::int FROM nexjobs.jobs WHERE id = ANY(\(ids)::bigint[]) AND attempted_at IS NOT NULL
            """
        ).first!.decode(0)
        if started == n { break }
        guard clock.now < deadline else { throw BenchError(description: "only \(started) of \(n) jobs started") }
        try await Task.sleep(for: .milliseconds(50))
    }
    let row = try await pool.query(
        """
        WITH l AS (SELECT extract(epoch FROM attempted_at - created_at) * 1000 AS ms
                     FROM nexjobs.jobs WHERE id = ANY(\(ids)::bigint[]))
        SELECT (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::float8,
               (percentile_cont(0.95) WITHIN GROUP (ORDER BY ms))::float8,
               (percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::float8,
               max(ms)::float8 FROM l
        """
    ).first!
    let p50: Double = try row.decode(0)
    let p95: Double = try row.decode(1)
    let p99: Double = try row.decode(2)
    let mx: Double = try row.decode(3)
    print(String(format: "jobs=%d p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f", n, p50, p95, p99, mx))
}

let argv = Array(CommandLine.arguments.dropFirst())
let pos = positionals(argv)
guard let mode = pos.first else {
    FileHandle.standardError.write(Data("usage: queue-bench enqueue N | latency N INTERVAL_MS\n".utf8))
    exit(2)
}
guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
    FileHandle.standardError.write(Data("DATABASE_URL is not set\n".utf8))
    exit(2)
}
let queue = option(argv, "queue") ?? "bench"
do {
    let pool = try PGPool(url: url, maxConnections: 2, applicationName: "queue-bench")
    switch mode {
    case "enqueue":
        guard pos.count == 2, let n = Int(pos[1]), n > 0 else { throw BenchError(description: "enqueue N") }
        try await enqueueBench(
            pool: pool, n: n, queue: queue, args: option(argv, "args") ?? "{}",
            profile: argv.contains("--profile"))
    case "latency":
        guard pos.count == 3, let n = Int(pos[1]), let ms = Int(pos[2]), n > 0, ms >= 0 else {
            throw BenchError(description: "latency N INTERVAL_MS")
        }
        try await latencyBench(
            pool: pool, n: n, intervalMs: ms, queue: queue,
            timeout: Double(option(argv, "timeout") ?? "60") ?? 60)
    default:
        throw BenchError(description: "unknown mode \(mode)")
    }
    await pool.close()
} catch {
    FileHandle.standardError.write(Data("queue-bench: \(error)\n".utf8))
    exit(1)
}
