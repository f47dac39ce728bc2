import Queue

/// Every job kind this build of NexJobs runs.
public func defaultRegistry() -> JobRegistry {
    var r = JobRegistry()
    r.register(NoopHandler())
    return r
}
