import Foundation
import HTTP
import Logs
import NexcometJobs
import Postgres
import Privacy
import Runtime
import Sync

func serveCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: ["listen", "max-connections", "max-client-connections"], flags: [])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs serve [--listen HOST:PORT] [--max-connections N] [--max-client-connections N]

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
              POST /webhooks/reauthorized  {"connection_id": N, "sealed_tokens": "<base64>"}, signed the same way;
                                       the tokens sealed with the NEXJOBS_TOKEN_KEYS ring: replaces the
                                       connection's tokens, clears needs_reauth, keeps its ad accounts and
                                       history (as nexjobs connections reauthorize); 200, or 400/401/404/409/503;
                                       the same signed request again answers 409 "already processed" and
                                       changes nothing (deliveries recorded in nexjobs.webhook_deliveries)
              GET  /login, /, /jobs, /schedules, /connections, /privacy   operator console (README.md, "Console")

              --listen HOST:PORT   address to bind (default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8080)
              --max-connections N  connections open at once, 1...4096 (default 128); one more is answered 503 and
                                   closed, except GET /healthz, which 8 reserved slots still answer
              --max-client-connections N
                                   connections one client IP address may hold, 1...max-connections (default 16);
                                   one more is answered 503 and closed. Clients behind one proxy share its address.

            Limits: a request head must arrive within 5 s of its first byte (of accept on a new connection), the
            whole request within 10 s (else 408 and close; a slow-trickling client is cut off); an idle keep-alive
            connection closes after 15 s. Every database statement of a request is bounded: lock_timeout 2 s
            (a webhook whose connection row stays locked answers 409 with Retry-After), statement_timeout 5 s and
            5 s to get one of the 4 pooled connections (else 503 with Retry-After). /healthz uses a connection of its
            own, checks at most once a second and answers within 2 s. After a PostgreSQL restart, stale pooled
            connections are replaced without an error answer.

            Environment: DATABASE_URL; NEXJOBS_WEBHOOK_SECRET (at least 32 characters; webhooks answer 503 without it);
            NEXJOBS_METRICS_TOKEN (32 to 512 characters; /metrics answers 503 without it); NEXJOBS_TOKEN_KEYS (the
            reauthorized webhook answers 503 without it); NEXJOBS_CONSOLE_TOKENS (comma-separated, 16...512
            characters each; the console answers 503 without it), NEXJOBS_CONSOLE_LOGIN_INTERVAL (least time between
            two login attempts from one address, 100ms...1h, default 1s; sooner is 429), NEXJOBS_CONSOLE_SECURE_COOKIE
            (0 or 1); NEXJOBS_SYNC_QUEUE_TIKTOK|SNAPCHAT (the queue a resync webhook's job goes to).
            Signatures are lowercase hex. /metrics is computed at most once per 5 s; request bodies are limited to
            16 KiB. The signature covers timestamp and body, not the path. A captured signed resync request can be
            replayed within its 5 minutes, and a reauthorized body sent to /webhooks/resync is accepted as a resync
            of that connection: either only enqueues a resync, which the unique key keeps to one pending at a time.
            A reauthorized request is applied at most once (a replay answers 409).
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("serve takes no positional arguments") }
    try checkSettingsEnvironment()  // the resync webhook routes by NEXJOBS_SYNC_QUEUE_*
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

    let maxConnections = try a.int("max-connections", range: 1...4096) ?? 128
    let maxPerClient = try a.int("max-client-connections", range: 1...maxConnections) ?? min(16, maxConnections)

    let logger = Logger(label: "serve")
    // Every request's statements are bounded (session settings of serve's own pool), so a webhook waiting on a
    // locked row or a slow query answers instead of hanging, and a busy pool answers 503 after 5 s.
    let pool = try PGPool(
        url: openPool(maxConnections: 4).config.connectionString, maxConnections: 4, acquireTimeout: .seconds(5),
        applicationName: "nexjobs-serve", statementTimeout: .seconds(5), lockTimeout: .seconds(2))
    var service = WebService(pool: pool, webhookSecret: secret, logger: logger)
    service.platformQueues = SyncSettings.fromEnvironment(ProcessInfo.processInfo.environment).syncQueuesByName
    // POST /webhooks/reauthorized opens sealed tokens with the token key ring; unset, that webhook answers 503.
    // Set but malformed is a start-up error (exit 2), not a webhook that quietly answers 503.
    if let keys = env[KeyRing.environmentVariable], !keys.isEmpty {
        do {
            service.tokenStore = ConnectionStore(
                vault: TokenVault(keyRing: try KeyRing.fromEnvironment(environment: env)))
        } catch {
            throw UsageError("\(error)")
        }
    }
    do { service.consoleAccess = try ConsoleAccess.from(environment: env) } catch let e as WebServiceError {
        throw UsageError(e.description)
    }
    service.metricsToken = metricsToken
    let router = service.router()
    // Webhook bodies are tiny: a small body limit and connection caps bound what an anonymous caller can cost.
    var limits = HTTPServerLimits()
    limits.maxBodyBytes = 16 * 1024
    limits.maxConnections = maxConnections
    limits.maxConnectionsPerClient = maxPerClient
    limits.headerTimeout = .seconds(5)
    limits.readTimeout = .seconds(10)
    limits.idleTimeout = .seconds(15)
    limits.reservedPaths = ["/healthz"]
    limits.reservedConnections = 8
    let server = HTTPServer(host: host, port: port, limits: limits) { request in await router.handle(request) }
    let bound: Int
    do {
        bound = try server.start()
    } catch {
        await pool.close()
        await service.close()
        printErr("error: cannot listen on \(listen): \(error)")
        return Exit.failure
    }
    logger.info(
        "serving", ("address", "\(host):\(bound)"), ("webhooks", secret == nil ? "disabled" : "enabled"),
        ("metrics", metricsToken == nil ? "disabled" : "enabled"))
    let signals = SignalHandler(signals: [SIGTERM, SIGINT]) { sig in
        logger.info("signal received; shutting down", ("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"))
        Task { await server.stop(grace: .seconds(5)) }
    }
    defer { signals.cancel() }
    try await server.run()
    await pool.close()
    await service.close()
    logger.info("stopped")
    return Exit.ok
}
