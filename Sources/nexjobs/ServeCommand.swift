import Foundation
import HTTP
import Logs
import NexcometJobs
import Postgres
import Runtime

func serveCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: ["listen"], flags: [])
    if a.wantsHelp {
        print("""
            Usage: nexjobs serve [--listen HOST:PORT]

            Serves HTTP until SIGTERM/SIGINT (then finishes requests in flight, at most 5 s, and exits 0):
              GET  /healthz            200 "ok" when the database answers, else 503
              GET  /metrics            Prometheus text (jobs, duration and wait histograms, outcomes, workers,
                                       leader, connections, platform API calls, privacy deadlines); requires
                                       Authorization: Bearer $NEXJOBS_METRICS_TOKEN (401 otherwise; 503 when unset)
              POST /webhooks/resync    {"connection_id": N}, signed: X-Nexjobs-Timestamp (Unix seconds) and
                                       X-Nexjobs-Signature: sha256=hex(HMAC-SHA256(secret, "<timestamp>.<body>"));
                                       enqueues sync_connection (unique per connection), answers 202
                                       {"job_id": ..., "duplicate": ...}; 401 bad signature or a timestamp more
                                       than 5 min off, 400 bad body, 404 unknown connection, 409 not active

              --listen HOST:PORT   address to bind (default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8080)

            Environment: DATABASE_URL; NEXJOBS_WEBHOOK_SECRET (at least 32 characters; webhooks answer 503 without it);
            NEXJOBS_METRICS_TOKEN (32 to 512 characters; /metrics answers 503 without it).
            Signatures are lowercase hex. /metrics is computed at most once per 5 s; request bodies are limited to
            16 KiB. A captured signed request can be replayed within its 5 minutes: it only enqueues a resync, which
            the unique key keeps to one pending at a time.
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("serve takes no positional arguments") }
    let env = ProcessInfo.processInfo.environment
    let listen = a.options["listen"] ?? env["PORT"].map { "0.0.0.0:\($0)" } ?? "127.0.0.1:8080"
    guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
        (0...65535).contains(port), colon != listen.startIndex
    else { throw UsageError("--listen must be HOST:PORT with a port 0...65535, got '\(listen)'") }
    let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    let secret: [UInt8]?
    do { secret = try WebService.secret(from: env) } catch let e as WebServiceError { throw UsageError(e.description) }
    let metricsToken: [UInt8]?
    do { metricsToken = try WebService.metricsToken(from: env) } catch let e as WebServiceError {
        throw UsageError(e.description)
    }

    let logger = Logger(label: "serve")
    let pool = try openPool(maxConnections: 4)
    var service = WebService(pool: pool, webhookSecret: secret, logger: logger)
    service.metricsToken = metricsToken
    let router = service.router()
    // Webhook bodies are tiny: a small body limit and connection cap bound what an anonymous caller can cost.
    var limits = HTTPServerLimits()
    limits.maxBodyBytes = 16 * 1024
    limits.maxConnections = min(limits.maxConnections, 128)
    let server = HTTPServer(host: host, port: port, limits: limits) { request in await router.handle(request) }
    let bound: Int
    do {
        bound = try server.start()
    } catch {
        await pool.close()
        printErr("error: cannot listen on \(listen): \(error)")
        return Exit.failure
    }
    logger.info("serving", ("address", "\(host):\(bound)"), ("webhooks", secret == nil ? "disabled" : "enabled"),
        ("metrics", metricsToken == nil ? "disabled" : "enabled"))
    let signals = SignalHandler(signals: [SIGTERM, SIGINT]) { sig in
        logger.info("signal received; shutting down", ("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"))
        Task { await server.stop(grace: .seconds(5)) }
    }
    defer { signals.cancel() }
    try await server.run()
    await pool.close()
    logger.info("stopped")
    return Exit.ok
}
