import Foundation
import Logs
import Queue

/// How one attempt ended, as the completer records it.
enum Disposition: Equatable {
    /// The handler returned: mark completed.
    case completed
    /// The handler completed the job itself (`JobContext.complete(on:)`): nothing to write.
    case alreadyCompleted
    /// Retry with backoff (or fail when no attempt is left).
    case retry(String)
    /// Fail now.
    case discard(String)
    /// Run again after the delay without charging the attempt.
    case snooze(Duration, String)
    /// Shutdown: hand the job back at once without charging the attempt.
    case handBack
    /// The job is no longer this worker's (cancelled, rescued, lease lost): write nothing.
    case drop(String)
}

/// One attempt's outcome, keyed by (id, attempt) for the fenced write.
struct Outcome {
    var id: Int64
    var attempt: Int
    var maxAttempts: Int
    var disposition: Disposition
}

/// Runs one attempt of one job: a function of (handler, job, context) to the attempt's disposition, with no
/// database access of its own and no shared state (what the handler does with `context.pool` is its business).
///
/// The runtime around it supplies two facts it cannot know: whether the attempt was cancelled because it timed
/// out, and whether the worker is stopping (a cancellation then hands the job back). Unit-tested without a
/// database (Tests/RuntimeTests/ExecutorTests.swift).
enum JobExecutor {
    /// Why the runtime cancelled an attempt, asked after the handler threw.
    struct Signals: Sendable {
        /// True once the attempt passed its kind's timeout (the timeout loop then cancels it).
        var timedOut: @Sendable () -> Bool = { false }
        /// True once the worker is shutting down.
        var stopping: @Sendable () -> Bool = { false }
    }

    /// Runs `handler` on `job` and classifies how it ended; logs the end at the job's logger.
    ///
    /// - `handler` nil (a kind this worker does not run): discard, naming the kinds it runs (`knownKinds`).
    /// - returned: completed (or already completed when the handler completed the job in its own transaction);
    /// - threw after its timeout: retry with `JobTimedOut`; `JobSnooze`: snooze; `JobDiscard`: discard;
    ///   `JobLeaseLost`: drop; `CancellationError` while stopping: hand back; anything else: retry.
    static func execute(
        handler: AnyJobHandler?, job: ClaimedJob, context: JobContext, knownKinds: [String] = [],
        signals: Signals = Signals()
    ) async -> Disposition {
        guard let handler else {
            return .discard("unknown job kind '\(job.kind)'; this worker runs: \(knownKinds.joined(separator: ", "))")
        }
        let disposition: Disposition
        let clock = ContinuousClock()
        let began = clock.now
        do {
            try await handler.run(argsJSON: job.args, context: context)
            disposition = context.completedByHandler ? .alreadyCompleted : .completed
        } catch  where signals.timedOut() {
            // Whatever the handler throws once its attempt was cancelled for a timeout, it timed out.
            disposition = .retry(JobTimedOut(timeout: handler.timeout).description)
        } catch let e as JobSnooze {
            disposition = .snooze(e.delay, e.reason)
        } catch let e as JobDiscard {
            disposition = .discard(e.message)
        } catch is JobLeaseLost {
            disposition = .drop("lease lost")
        } catch is CancellationError where signals.stopping() {
            disposition = .handBack
        } catch {
            disposition = .retry(String(describing: error))
        }
        log(disposition, took: clock.now - began, logger: context.logger)
        return disposition
    }

    private static func log(_ disposition: Disposition, took: Duration, logger: Logger) {
        // Formatted only when logged: String(format:) per job was ~5 % of a worker's CPU draining no-ops.
        func elapsed() -> String {
            let c = took.components
            return String(format: "%.3f", Double(c.seconds) + Double(c.attoseconds) / 1e18)
        }
        switch disposition {
        case .completed, .alreadyCompleted:
            if logger.minimum <= .debug { logger.debug("job completed", ("duration_s", elapsed())) }
        case .retry(let m), .discard(let m):
            logger.warning("job failed", ("error", m), ("duration_s", elapsed()))
        case .snooze(let d, let r): logger.info("job snoozed", ("reason", r), ("delay", "\(d)"))
        case .handBack: logger.info("job handed back", ("duration_s", elapsed()))
        case .drop(let r): logger.info("job dropped", ("reason", r))
        }
    }
}

/// The attempt ran past its kind's timeout.
public struct JobTimedOut: Error, CustomStringConvertible {
    public var timeout: Duration
    public var description: String { "timed out after \(timeout)" }
}
