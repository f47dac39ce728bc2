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
      enqueue      enqueue a job and print its id
      jobs         list | show | retry | cancel jobs
      stats        job counts by queue and state, oldest due job, throughput
      sandbox      serve the local fake TikTok and Snapchat APIs

    Environment:
      DATABASE_URL         libpq URI or conninfo (TLS options such as sslmode pass through)
      NEXJOBS_LOG_FORMAT   logfmt (default) or json
      NEXJOBS_LOG_LEVEL    debug, info (default), warning, error

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
        case "sandbox": code = try await sandboxCommand(rest)
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
