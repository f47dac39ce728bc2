import XCTest

final class SyncPlaceholder: XCTestCase {}
