import Foundation
import HTTP
import Platforms
import Postgres
import Privacy

/// `GET /metrics`: the Prometheus text exposition of `nexjobs serve`, behind a bearer token.
///
/// Everything is read from the database, so every serve process reports the same values: gauges from the live
/// tables, counters and histograms from cumulative tables that only grow: job events staged by a trigger and
/// folded in at each scrape (sql/045_job_stats.sql), API calls added by a trigger (sql/046_api_call_stats.sql).
/// Counter sums over shards are held at Int64.max (in SQL and when buckets are accumulated), never an
/// out-of-range error or a trap.
/// Series (all prefixed `nexjobs_`):
/// - `jobs{queue,state}` (gauge): queue depth by state; `oldest_due_seconds{queue}` (gauge): age of the oldest
///   job that is due and not started (0 when none);
/// - `job_duration_seconds{kind,queue}` (histogram): attempt run time; `job_wait_seconds{kind,queue}`
///   (histogram): from due (`run_at`) to the attempt's start;
/// - `job_outcomes_total{kind,queue,outcome}` (counter): completed, failed, retried, snoozed, handed_back,
///   cancelled;
/// - `workers` (gauge): live worker leases; `leader{role}` (gauge): 1 while a live leader term exists;
/// - `ad_connections{platform,status}` (gauge); `connections_behind_cadence{platform}` (gauge): active
///   connections whose last sync is older than twice their cadence;
/// - `platform_api_calls_total{platform,status_class}` (counter): `2xx`...`5xx`, `error` (no response);
/// - the privacy request gauges (`privacy_requests_open`, `privacy_requests_overdue`,
///   `privacy_request_oldest_open_age_seconds`).
enum Metrics {
    /// The Prometheus content type of the text format.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static func label(_ v: String) -> String {
        v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        return String(format: "%.6f", v)
    }

    static func header(_ name: String, _ type: String, _ help: String) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// Renders every series; throws when the database does not answer.
    static func render(pool: PGPool) async throws -> String {
        // Staged job events (sql/045's trigger) become counts first, so this scrape includes them.
        _ = try await pool.query("SELECT nexjobs.job_stats_fold()")
        var out = header("nexjobs_jobs", "gauge", "Jobs by queue and state.")
        var queues = Set<String>()
        for r in try await pool.query(
            "SELECT queue, state, count(*)::bigint FROM nexjobs.jobs GROUP BY 1, 2 ORDER BY 1, 2")
        {
            let queue: String = try r.decode(0)
            let state: String = try r.decode(1)
            let n: Int64 = try r.decode(2)
            queues.insert(queue)
            out += "nexjobs_jobs{queue=\"\(label(queue))\",state=\"\(label(state))\"} \(n)\n"
        }
        out += header(
            "nexjobs_oldest_due_seconds", "gauge",
            "Age of the oldest job due and not yet started, per queue (0 when none is waiting).")
        var ages: [String: Double] = [:]
        for r in try await pool.query(
            """
            SELECT queue, greatest(extract(epoch FROM now())::float8 - extract(epoch FROM min(run_at))::float8, 0)
              FROM nexjobs.jobs
             WHERE state IN ('available', 'retryable') AND run_at <= now() GROUP BY 1
            """)
        {
            ages[try r.decode(0)] = try r.decode(1)
        }
        for queue in queues.union(ages.keys).sorted() {
            out += "nexjobs_oldest_due_seconds{queue=\"\(label(queue))\"} \(number(ages[queue] ?? 0))\n"
        }
        out += try await histograms(pool: pool)
        out += header(
            "nexjobs_job_outcomes_total", "counter",
            "Job attempt outcomes: completed, failed, retried, snoozed, handed_back, cancelled.")
        for r in try await pool.query(
            """
            SELECT kind, queue, outcome, least(sum(count), 9223372036854775807)::bigint FROM nexjobs.job_stats_outcomes
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            """)
        {
            let kind: String = try r.decode(0)
            let queue: String = try r.decode(1)
            let outcome: String = try r.decode(2)
            let n: Int64 = try r.decode(3)
            out +=
                "nexjobs_job_outcomes_total{kind=\"\(label(kind))\",queue=\"\(label(queue))\","
                + "outcome=\"\(label(outcome))\"} \(n)\n"
        }
        let workers: Int64 = try await pool.query(
            "SELECT count(*)::bigint FROM nexjobs.workers WHERE lease_until > now()"
        ).first!.decode(0)
        out += header("nexjobs_workers", "gauge", "Worker processes holding a live lease.")
        out += "nexjobs_workers \(workers)\n"
        let leader: Int64 = try await pool.query(
            "SELECT count(*)::bigint FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
        ).first!.decode(0)
        out += header("nexjobs_leader", "gauge", "1 while the role has a leader with a live term, else 0.")
        out += "nexjobs_leader{role=\"scheduler\"} \(leader)\n"
        out += header("nexjobs_ad_connections", "gauge", "Ad-platform connections by platform and status.")
        for r in try await pool.query(
            "SELECT platform, status, count(*)::bigint FROM nexcomet.ad_connections GROUP BY 1, 2 ORDER BY 1, 2")
        {
            let platform: String = try r.decode(0)
            let status: String = try r.decode(1)
            let n: Int64 = try r.decode(2)
            out += "nexjobs_ad_connections{platform=\"\(label(platform))\",status=\"\(label(status))\"} \(n)\n"
        }
        out += header(
            "nexjobs_connections_behind_cadence", "gauge",
            "Active connections whose last sync (or creation, if never synced) is older than twice their cadence.")
        for r in try await pool.query(
            """
            SELECT p.platform, count(c.id)::bigint
              FROM (VALUES ('snapchat'), ('tiktok')) AS p(platform)
              LEFT JOIN nexcomet.ad_connections c
                ON c.platform = p.platform AND c.status = 'active'
               AND coalesce(c.last_synced_at, c.created_at) < now() - 2 * c.sync_cadence
             GROUP BY 1 ORDER BY 1
            """)
        {
            let platform: String = try r.decode(0)
            let n: Int64 = try r.decode(1)
            out += "nexjobs_connections_behind_cadence{platform=\"\(label(platform))\"} \(n)\n"
        }
        out += header(
            "nexjobs_platform_api_calls_total", "counter",
            "Ad-platform API requests by platform and HTTP status class (error: no response).")
        for r in try await pool.query(
            """
            SELECT platform, status_class, least(sum(count), 9223372036854775807)::bigint FROM nexcomet.api_call_totals
             GROUP BY 1, 2 ORDER BY 1, 2
            """)
        {
            let platform: String = try r.decode(0)
            let status: String = try r.decode(1)
            let n: Int64 = try r.decode(2)
            out +=
                "nexjobs_platform_api_calls_total{platform=\"\(label(platform))\","
                + "status_class=\"\(label(status))\"} \(n)\n"
        }
        out += header(
            "nexjobs_sync_reconcile_mismatch_total", "counter",
            "Account syncs whose totals still differed from the platform's after one re-sync, by platform.")
        for r in try await pool.query(
            """
            SELECT p.platform, coalesce(c.mismatches, 0)::bigint
              FROM (VALUES ('snapchat'), ('tiktok')) AS p(platform)
              LEFT JOIN nexcomet.sync_reconcile_counters c ON c.platform = p.platform ORDER BY 1
            """)
        {
            let platform: String = try r.decode(0)
            let n: Int64 = try r.decode(1)
            out += "nexjobs_sync_reconcile_mismatch_total{platform=\"\(label(platform))\"} \(n)\n"
        }
        out += try await PrivacyDeadlines.load(on: pool).prometheusText
        return out
    }

    /// `nexjobs_job_duration_seconds` and `nexjobs_job_wait_seconds`, cumulative buckets from job_stats_buckets.
    static func histograms(pool: PGPool) async throws -> String {
        let bounds: [Double] = try await pool.query(
            "SELECT b FROM unnest(nexjobs.job_stats_bounds()) WITH ORDINALITY AS u(b, i) ORDER BY i"
        ).map { try $0.decode(0) }
        struct Series {
            var buckets: [Int64]
            var sum: Double
        }
        var series: [String: [String: Series]] = ["duration": [:], "wait": [:]]  // metric -> labels -> series
        for r in try await pool.query(
            """
            SELECT metric, kind, queue, bucket::int, least(sum(count), 9223372036854775807)::bigint, sum(sum)::float8
              FROM nexjobs.job_stats_buckets GROUP BY 1, 2, 3, 4
            """)
        {
            let metric: String = try r.decode(0)
            let kind: String = try r.decode(1)
            let queue: String = try r.decode(2)
            let bucket: Int = try r.decode(3)
            let count: Int64 = try r.decode(4)
            let sum: Double = try r.decode(5)
            guard (0...bounds.count).contains(bucket) else { continue }
            let key = "kind=\"\(label(kind))\",queue=\"\(label(queue))\""
            var s = series[metric]?[key] ?? Series(buckets: Array(repeating: 0, count: bounds.count + 1), sum: 0)
            s.buckets[bucket] = s.buckets[bucket].saturatingAdding(count)
            s.sum += sum
            series[metric, default: [:]][key] = s
        }
        var out = ""
        for (metric, name, help) in [
            ("duration", "nexjobs_job_duration_seconds", "Run time of job attempts, per kind and queue."),
            ("wait", "nexjobs_job_wait_seconds", "Wait from a job being due (run_at) to its attempt's start."),
        ] {
            out += header(name, "histogram", help)
            for (key, s) in (series[metric] ?? [:]).sorted(by: { $0.key < $1.key }) {
                var cumulative: Int64 = 0
                for (i, bound) in bounds.enumerated() {
                    cumulative = cumulative.saturatingAdding(s.buckets[i])
                    out += "\(name)_bucket{\(key),le=\"\(bound)\"} \(cumulative)\n"
                }
                cumulative = cumulative.saturatingAdding(s.buckets[bounds.count])
                out += "\(name)_bucket{\(key),le=\"+Inf\"} \(cumulative)\n"
                out += "\(name)_sum{\(key)} \(number(s.sum))\n"
                out += "\(name)_count{\(key)} \(cumulative)\n"
            }
        }
        return out
    }

    /// The token from `NEXJOBS_METRICS_TOKEN`: nil when unset (then /metrics answers 503); at least 32 characters.
    static func token(from environment: [String: String]) throws -> [UInt8]? {
        guard let text = environment["NEXJOBS_METRICS_TOKEN"], !text.isEmpty else { return nil }
        guard text.utf8.count >= 32, text.utf8.count <= 512 else {
            throw WebServiceError("NEXJOBS_METRICS_TOKEN must be 32 to 512 characters")
        }
        return Array(text.utf8)
    }

    /// Whether `request` carries `Authorization: Bearer <token>`. Compares HMAC digests (keyed by the token) of
    /// both values in constant time, so neither the content nor the length of the token leaks through timing.
    static func authorized(_ request: HTTPRequest, token: [UInt8]) -> Bool {
        guard let header = request.headers["Authorization"] else { return false }
        let prefix = "Bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased() else {
            return false
        }
        let given = Array(header.dropFirst(prefix.count).utf8)
        return constantTimeEquals(hmacSHA256(key: token, message: given), hmacSHA256(key: token, message: token))
    }
}

extension WebService {
    /// Builds a `WebService` reading `NEXJOBS_WEBHOOK_SECRET` and `NEXJOBS_METRICS_TOKEN` from `environment`.
    public static func metricsToken(from environment: [String: String]) throws -> [UInt8]? {
        try Metrics.token(from: environment)
    }

    /// `GET /metrics`: 503 when no token is configured, 401 (with `WWW-Authenticate: Bearer`) without the right
    /// bearer token, else the metrics (computed at most once per `metricsTTL`).
    func metrics(_ request: HTTPRequest) async -> HTTPResponse {
        guard let token = metricsToken else {
            return .text("metrics are disabled: set NEXJOBS_METRICS_TOKEN\n", status: 503)
        }
        guard Metrics.authorized(request, token: token) else {
            var response = HTTPResponse.text("a bearer token is required\n", status: 401)
            response.headers["WWW-Authenticate"] = "Bearer realm=\"nexjobs-metrics\""
            return response
        }
        return await metricsCache.get(ttl: metricsTTL) {
            do {
                return .text(try await Metrics.render(pool: self.pool), contentType: Metrics.contentType)
            } catch {
                self.logger.warning("metrics failed", ("error", "\(error)"))
                return .text("database unavailable\n", status: 503)
            }
        }
    }
}

/// The last metrics response and when it was made; one computation at a time, callers meanwhile wait for it.
actor MetricsCache {
    private var last: (at: ContinuousClock.Instant, response: HTTPResponse)?
    private var inFlight: Task<HTTPResponse, Never>?

    func get(ttl: Duration, compute: @escaping @Sendable () async -> HTTPResponse) async -> HTTPResponse {
        if let last, ContinuousClock.now - last.at < ttl { return last.response }
        if let inFlight { return await inFlight.value }
        let task = Task { await compute() }
        inFlight = task
        let response = await task.value
        inFlight = nil
        if response.status == 200 { last = (.now, response) }
        return response
    }
}
