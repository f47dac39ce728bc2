import XCTest

final class QueuePlaceholder: XCTestCase {}
