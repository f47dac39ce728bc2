import Foundation
import Postgres
import Queue
import Runtime

let topHelp = """
    nexjobs: PostgreSQL job queue and ad-platform sync workers

    Usage: nexjobs <command> [options]     (every command takes --help)

    Commands:
      migrate      apply sql/NNN_*.sql migrations (safe to run twice or concurrently)
      worker       claim and run jobs
      scheduler    run the scheduler (leader election, cron schedules, due work)
      schedules    list | add | enable | disable | remove cron schedules
      enqueue      enqueue a job and print its id
      jobs         list | show | retry | cancel jobs
      stats        job counts by queue and state, oldest due job, throughput
      serve        HTTP: /healthz, Prometheus /metrics, signed webhooks that trigger resyncs
      sandbox      serve the local fake TikTok and Snapchat APIs
      orgs         add an organization
      connections  add (tokens on stdin) | list ad-platform connections
      keys         rotate: re-encrypt stored tokens under the active key
      privacy      list | show | retry | request | download GDPR requests (30-day deadlines)

    Environment:
      DATABASE_URL         libpq URI or conninfo (TLS options such as sslmode pass through)
      NEXJOBS_LOG_FORMAT   logfmt (default) or json
      NEXJOBS_LOG_LEVEL    debug, info (default), warning, error
      NEXJOBS_TOKEN_KEYS   token key ring id:base64key[,id2:base64key2] (first encrypts, all decrypt)
      NEXJOBS_TIKTOK_APP_ID, NEXJOBS_TIKTOK_SECRET, NEXJOBS_TIKTOK_BASE_URL, NEXJOBS_SNAP_CLIENT_ID,
      NEXJOBS_SNAP_CLIENT_SECRET, NEXJOBS_SNAP_API_BASE_URL, NEXJOBS_SNAP_TOKEN_URL
                           ad-platform credentials and base URLs of the sync jobs
      NEXJOBS_WEBHOOK_SECRET  shared secret of signed webhooks (nexjobs serve), at least 32 characters
      NEXJOBS_SYNC_LOOKBACK_TIKTOK, NEXJOBS_SYNC_LOOKBACK_SNAPCHAT   days re-fetched each sync, 0...365
      NEXJOBS_SYNC_RETENTION_FREE, NEXJOBS_SYNC_RETENTION_PRO, NEXJOBS_SYNC_RETENTION_ENTERPRISE
                           days of history a first sync fetches, 1...36500
      NEXJOBS_SYNC_RATE_LIMIT_SNOOZE  seconds a rate-limited job waits, 0.001...86400
      NEXJOBS_SYNC_TRANSIENT_RETRIES  in-job retries of transient platform errors, 0...10
      NEXJOBS_SYNC_ENTITY_REFRESH     seconds the stored entity lists are reused, 0...604800 (default 21600)
      NEXJOBS_SYNC_RECONCILE          0, 1, true or false (default: on)
      NEXJOBS_SYNC_CALL_PLAN          lean (default) or per-level (the plan before issue 14, for comparison)
      NEXJOBS_RATE_LIMIT_RPS          requests per second per ad account, 0.01...10000
      NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK, NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT
                           requests per second per app, all workers together, 0...10000 (0 = unlimited;
                           defaults: TikTok 10 = Basic tier, Snapchat unlimited)
      NEXJOBS_SYNC_QUEUE_TIKTOK, NEXJOBS_SYNC_QUEUE_SNAPCHAT
                           queue of each platform's sync jobs (sync_connection, sync_ad_account),
                           1-128 of A-Z a-z 0-9 _ . : -
                           (default: the default queue); pair with nexjobs worker --queues
                           default,sync.tiktok=8,sync.snapchat=8 so neither platform takes every slot
                           (worker, scheduler and serve exit 2 at start when one is out of range)
      NEXJOBS_METRICS_TOKEN   bearer token of /metrics (nexjobs serve), 32 to 512 characters
      NEXJOBS_CONSOLE_TOKENS, NEXJOBS_CONSOLE_LOGIN_INTERVAL, NEXJOBS_CONSOLE_SECURE_COOKIE   console (serve --help)
      NEXJOBS_DIRECT_DATABASE_URL  PostgreSQL itself when DATABASE_URL is PgBouncer (transaction mode): the
                           worker's LISTEN connection and the scheduler's leader lease use it

    Exit codes: 0 ok, 1 operational failure, 2 usage or invalid input (nothing changed; includes values the
    database refuses as data: SQLSTATE classes 22 and 54), 3 not found / not allowed in this state.
    Every number, duration, id and timestamp has a documented range (each command's --help, README.md).
    """

let argv = Array(CommandLine.arguments.dropFirst())
let code: Int32
if argv.isEmpty || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help" {
    print(topHelp)
    code = argv.isEmpty ? Exit.usage : Exit.ok
} else {
    let rest = Array(argv.dropFirst())
    do {
        switch argv[0] {
        case "migrate": code = try await migrateCommand(rest)
        case "worker": code = try await workerCommand(rest)
        case "enqueue": code = try await enqueueCommand(rest)
        case "jobs": code = try await jobsCommand(rest)
        case "stats": code = try await statsCommand(rest)
        case "scheduler": code = try await schedulerCommand(rest)
        case "schedules": code = try await schedulesCommand(rest)
        case "serve": code = try await serveCommand(rest)
        case "sandbox": code = try await sandboxCommand(rest)
        case "orgs": code = try await orgsCommand(rest)
        case "connections": code = try await connectionsCommand(rest)
        case "keys": code = try await keysCommand(rest)
        case "privacy": code = try await privacyCommand(rest)
        default: throw UsageError("unknown command '\(argv[0])'")
        }
    } catch let e as UsageError {
        printErr("error: \(e.message)\nRun 'nexjobs \(argv[0]) --help' for usage.")
        code = Exit.usage
    } catch let e as QueueError {
        printErr("error: \(e)")
        switch e {
        case .invalidInput: code = Exit.usage
        case .notFound, .conflict: code = Exit.notFound
        }
    } catch let e as InputError {
        printErr("error: \(e.message)\nRun 'nexjobs \(argv[0]) --help' for usage.")
        code = Exit.usage
    } catch let e as PGError {
        printErr("error: \(e)")
        // The server refused the input itself (class 22 data exception: a value out of range or malformed; class
        // 54 program limit: e.g. a key too large for its index): invalid input, nothing changed.
        if let state = e.sqlState, state.hasPrefix("22") || state.hasPrefix("54") {
            code = Exit.usage
        } else {
            code = Exit.failure
        }
    } catch {
        printErr("error: \(error)")
        code = Exit.failure
    }
}
exit(code)
