import Foundation
import Postgres

/// Options of one enqueue; every field has a documented default.
public struct JobOptions: Sendable, Equatable {
    /// 1-128 of `A-Z a-z 0-9 _ . : -`. Default `default`.
    public var queue: String
    /// -32768...32767; smaller runs first. Default 0.
    public var priority: Int
    /// 1...1000. Default 20.
    public var maxAttempts: Int
    /// nil: now.
    public var runAt: Date?
    /// A live job with the same key makes the enqueue return that job instead (1...1000 bytes). Default none.
    public var uniqueKey: String?

    public init(
        queue: String = "default", priority: Int = 0, maxAttempts: Int = 20, runAt: Date? = nil,
        uniqueKey: String? = nil
    ) {
        self.queue = queue
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.runAt = runAt
        self.uniqueKey = uniqueKey
    }
}

/// The typed args of one job kind: the one way Swift code enqueues (`JobClient.enqueue(_:options:on:)`).
///
/// The type names its kind and its default options, and checks its documented ranges in `check()` (from
/// `CheckedArgs`), which runs before the insert and again before the handler runs. A handler whose `Args` is a
/// `JobArgs` type takes its kind from it, so a new kind is one file (args + handler) and one registry line.
public protocol JobArgs: Codable, Sendable, CheckedArgs {
    static var kind: String { get }
    /// Queue, priority and attempts used when the caller gives no options. Default: `JobOptions()`.
    static var defaultOptions: JobOptions { get }
    /// The unique key of this job when the caller's options name none (e.g. `sync_connection:<id>`, so a pending
    /// job is not queued twice). Default none.
    var uniqueKey: String? { get }
}

extension JobArgs {
    public static var defaultOptions: JobOptions { JobOptions() }
    public var uniqueKey: String? { nil }
    public func check() throws {}
}

extension JobHandler where Args: JobArgs {
    public static var kind: String { Args.kind }
}

extension NewJob {
    /// The untyped job for `args`: JSON-encoded (keys sorted, so equal args give equal text) and range-checked.
    public init<A: JobArgs>(_ args: A, options: JobOptions? = nil) throws {
        try args.check()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let o = options ?? A.defaultOptions
        self.init(
            kind: A.kind, args: String(decoding: try encoder.encode(args), as: UTF8.self), queue: o.queue,
            priority: o.priority, runAt: o.runAt, uniqueKey: o.uniqueKey ?? args.uniqueKey, maxAttempts: o.maxAttempts)
    }
}

extension JobClient {
    /// Enqueues a job of `A.kind` with `options` (default `A.defaultOptions`); a live job with the same unique key
    /// is returned instead, flagged `duplicate`.
    @discardableResult
    public func enqueue<A: JobArgs>(_ args: A, options: JobOptions? = nil, on connection: PGConnection? = nil)
        async throws -> EnqueueResult
    {
        try await enqueue(NewJob(args, options: options), on: connection)
    }

    /// Enqueues many jobs in bulk (one statement per 5,000); jobs whose unique key is held by a live job are
    /// skipped. `options(args)` gives each job's options (default: its type's defaults).
    @discardableResult
    public func enqueueMany<A: JobArgs>(
        _ args: [A], options: (A) -> JobOptions? = { _ in nil }, on connection: PGConnection? = nil
    ) async throws -> [Int64] {
        try await enqueueMany(args.map { try NewJob($0, options: options($0)) }, on: connection)
    }
}
