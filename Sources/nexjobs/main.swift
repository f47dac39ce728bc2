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
      privacy      list | show | retry | request GDPR requests (30-day deadlines)

    Environment:
      DATABASE_URL         libpq URI or conninfo (TLS options such as sslmode pass through)
      NEXJOBS_LOG_FORMAT   logfmt (default) or json
      NEXJOBS_LOG_LEVEL    debug, info (default), warning, error
      NEXJOBS_TOKEN_KEYS   token key ring id:base64key[,id2:base64key2] (first encrypts, all decrypt)
      NEXJOBS_TIKTOK_APP_ID, NEXJOBS_TIKTOK_SECRET, NEXJOBS_TIKTOK_BASE_URL, NEXJOBS_SNAP_CLIENT_ID,
      NEXJOBS_SNAP_CLIENT_SECRET, NEXJOBS_SNAP_API_BASE_URL, NEXJOBS_SNAP_TOKEN_URL
                           ad-platform credentials and base URLs of the sync jobs
      NEXJOBS_WEBHOOK_SECRET  shared secret of signed webhooks (nexjobs serve), at least 32 characters
      NEXJOBS_METRICS_TOKEN   bearer token of /metrics (nexjobs serve), 32 to 512 characters
      NEXJOBS_DIRECT_DATABASE_URL  PostgreSQL itself when DATABASE_URL is PgBouncer (transaction mode): the
                           worker's LISTEN connection and the scheduler's leader lease use it

    Exit codes: 0 ok, 1 operational failure, 2 usage or invalid input, 3 not found / not allowed in this state.
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
    } catch let e as PGError {
        printErr("error: \(e)")
        code = Exit.failure
    } catch {
        printErr("error: \(error)")
        code = Exit.failure
    }
}
exit(code)
